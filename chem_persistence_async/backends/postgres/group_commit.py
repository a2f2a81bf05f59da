"""Group commit: appends from concurrent tasks coalesced into one statement, so one commit.

A lone caller never waits for company: while fewer than ``max_inflight`` writes are in flight and
nobody is queued, an append is written at once, exactly as without group commit. Only appends that
arrive while the writers are busy queue up; each time a write finishes, the queue leaves as one
group (one statement, one transaction, one WAL flush for all of it). PostgreSQL's commit latency
is then shared instead of paid per event, which is what lets many tasks go several times faster
than one commit per event.

Each caller still awaits its own durable commit and gets its own result or its own exception
(``ConcurrencyConflict``, a refused event id). A group never holds two appends to the same flow,
and a flow with a write in flight is not grouped again until that write is done, so groups cannot
race each other for a flow's next version. If a group's statement fails as a whole (a writer
outside this store took a version it was about to use, the connection was lost past the retries,
anything), every member falls back to writing alone, through the same idempotent path a lone
caller uses: a group that did commit after all is then found by its event ids, never written twice.

This module knows nothing about SQL: the store gives it ``write_one`` and ``write_group``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Generic, TypeVar

B = TypeVar("B")
R = TypeVar("R")


class Fallback:
    """The member's group did not decide its fate: the member writes alone."""

    def __repr__(self) -> str:
        return "FALLBACK"


FALLBACK = Fallback()
"""What ``write_group`` returns for a member it could not settle (and what a failed group gives all)."""


@dataclass
class GroupCommitStats:
    """What group commit did, for tuning and for tests (``PgEventStore.group_commit_stats``)."""

    alone: int = 0
    """Appends written at once, with no group (the lone-caller path)."""
    groups: int = 0
    """Group statements sent (each holds two appends or more)."""
    grouped: int = 0
    """Appends written as members of a group."""
    largest_group: int = 0
    fallbacks: int = 0
    """Appends whose group could not settle them, written alone afterwards."""
    failed_groups: int = 0
    """Group statements that failed as a whole (every member then fell back)."""

    def snapshot(self) -> dict[str, int]:
        return asdict(self)


@dataclass(eq=False)
class _Waiter(Generic[B, R]):
    batch: B
    key: Hashable
    size: int
    future: asyncio.Future[R | Fallback] = field(repr=False)


class GroupCommitter(Generic[B, R]):
    """Coalesce concurrent writes of batches ``B`` into groups; see the module docstring.

    ``key`` names what must not be written twice in one group or by two writes at once (the flow);
    ``size`` counts a batch's events against ``max_group_events``.
    """

    def __init__(
        self,
        write_one: Callable[[B], Awaitable[R]],
        write_group: Callable[[Sequence[B]], Awaitable[Sequence[R | BaseException | Fallback]]],
        *,
        key: Callable[[B], Hashable],
        size: Callable[[B], int],
        max_inflight: int = 2,
        max_group_events: int = 1000,
    ) -> None:
        if max_inflight < 1:
            raise ValueError("max_inflight must be >= 1")
        if max_group_events < 1:
            raise ValueError("max_group_events must be >= 1")
        self._write_one = write_one
        self._write_group = write_group
        self._key = key
        self._size = size
        self._max_inflight = max_inflight
        self._max_group_events = max_group_events
        self._inflight = 0
        self._busy: dict[Hashable, int] = {}
        """Writes in flight per key (a plain dict: ``Counter``'s missing-key hook is Python code)."""
        self._queue: deque[_Waiter[B, R]] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self.stats = GroupCommitStats()

    async def submit(self, batch: B) -> R:
        """Write ``batch``, alone if the writers are idle, else in the next group."""
        key = self._key(batch)
        if not self._queue and self._inflight < self._max_inflight and key not in self._busy:
            self.stats.alone += 1
            return await self._alone(batch, key)
        waiter: _Waiter[B, R] = _Waiter(
            batch, key, self._size(batch), asyncio.get_running_loop().create_future()
        )
        self._queue.append(waiter)
        self._dispatch()
        try:
            outcome = await waiter.future
        except asyncio.CancelledError:
            with contextlib.suppress(ValueError):  # still queued: it will not be written
                self._queue.remove(waiter)
            raise
        if isinstance(outcome, Fallback):
            self.stats.fallbacks += 1
            return await self._alone(batch, key)
        return outcome

    async def _alone(self, batch: B, key: Hashable) -> R:
        self._inflight += 1
        busy = self._busy
        busy[key] = busy.get(key, 0) + 1
        try:
            return await self._write_one(batch)
        finally:
            self._release([key])

    def _release(self, keys: Sequence[Hashable]) -> None:
        self._inflight -= 1
        busy = self._busy
        for key in keys:
            left = busy[key] - 1
            if left:
                busy[key] = left
            else:
                del busy[key]
        if self._queue:
            self._dispatch()

    def _dispatch(self) -> None:
        """Send queued waiters off as groups while there is room for another write."""
        while self._queue and self._inflight < self._max_inflight:
            group = self._take_group()
            if not group:
                return  # every queued flow has a write in flight: the next release dispatches
            self._inflight += 1
            busy = self._busy
            for waiter in group:
                busy[waiter.key] = busy.get(waiter.key, 0) + 1
            task = asyncio.get_running_loop().create_task(self._flush(group))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _take_group(self) -> list[_Waiter[B, R]]:
        group: list[_Waiter[B, R]] = []
        keys: set[Hashable] = set()
        events = 0
        kept: deque[_Waiter[B, R]] = deque()
        queue = self._queue
        while queue:
            waiter = queue.popleft()
            if waiter.future.done():  # cancelled while queued
                continue
            fits = not group or events + waiter.size <= self._max_group_events
            if fits and waiter.key not in keys and waiter.key not in self._busy:
                group.append(waiter)
                keys.add(waiter.key)
                events += waiter.size
            else:
                kept.append(waiter)
        self._queue = kept
        return group

    async def _flush(self, group: list[_Waiter[B, R]]) -> None:
        try:
            if len(group) == 1:
                await self._flush_one(group[0])
            else:
                await self._flush_group(group)
        finally:
            # The writer's slot is freed one loop turn later, after the members just woken have run:
            # a member that appends again at once then joins the next group instead of taking the
            # free slot alone and leaving everyone else queued behind a one-event statement.
            asyncio.get_running_loop().call_soon(self._release, [waiter.key for waiter in group])

    async def _flush_one(self, waiter: _Waiter[B, R]) -> None:
        self.stats.alone += 1
        try:
            result = await self._write_one(waiter.batch)
        except BaseException as exc:
            _settle(waiter.future, exc)
            if not isinstance(exc, Exception):
                raise
        else:
            _settle(waiter.future, result)

    async def _flush_group(self, group: list[_Waiter[B, R]]) -> None:
        stats = self.stats
        stats.groups += 1
        stats.grouped += len(group)
        stats.largest_group = max(stats.largest_group, len(group))
        try:
            outcomes = await self._write_group([waiter.batch for waiter in group])
            if len(outcomes) != len(group):  # pragma: no cover - a broken write_group
                raise RuntimeError("write_group returned the wrong number of outcomes")
        except BaseException as exc:
            stats.failed_groups += 1
            for waiter in group:
                _settle(waiter.future, FALLBACK)
            if not isinstance(exc, Exception):
                raise
            return
        for waiter, outcome in zip(group, outcomes, strict=True):
            _settle(waiter.future, outcome)

    async def aclose(self) -> None:
        """Wait for the groups in flight (their members are awaiting them anyway)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _settle(future: asyncio.Future[R | Fallback], outcome: R | BaseException | Fallback) -> None:
    if future.done():  # the caller was cancelled: nobody is listening
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
