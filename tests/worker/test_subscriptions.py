"""Subscriptions (SPEC 8.5): batches in the global order, each event's effect committed exactly once
with the checkpoint, across failures and several runners of one name. Every backend."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

import pytest

from chem_persistence_async import InvalidInputError, PositionedEvent, StepSignal, Subscriptions
from chem_persistence_async.ports.backend import Backend
from chem_persistence_async.ports.unit_of_work import Transaction
from tests.factories import started
from tests.support.harness import Harness
from tests.support.waiting import until

SINK = uuid.UUID(int=1)
"""The flow the test handlers write their effects to, through the batch's unit of work: one
``StepSignal`` per event handled, naming the event (so a batch committed twice shows)."""


class Sink:
    """A handler that records each event it handles as an event of ``SINK`` (in the batch's unit of
    work), and can be told to fail."""

    def __init__(self, backend: Backend, *, fail_on_call: set[int] | None = None) -> None:
        self.store = backend.event_store()
        self.calls = 0
        self.fail_on_call = fail_on_call or set()

    async def __call__(self, events: Sequence[PositionedEvent], tx: Transaction) -> None:
        self.calls += 1
        for event in events:
            if event.flow_id == SINK:
                continue
            await self.store.append_kind(
                SINK, StepSignal(step_index=0, step_id="sink", signal=str(event.event_id), data={}), tx=tx
            )
        if self.calls in self.fail_on_call:
            raise Boom(f"call {self.calls}")

    async def handled(self) -> list[str]:
        return [e.kind.signal for e in await self.store.list(SINK)]


class Boom(Exception):
    pass


async def _events(backend: Backend, n: int) -> list[str]:
    store = backend.event_store()
    return [str((await store.append_kind(uuid.uuid4(), started())).event_id) for _ in range(n)]


async def test_catch_up_hands_every_event_once_in_order_and_saves_where_it_stopped(backend: Backend) -> None:
    subs = Subscriptions(backend)
    written = await _events(backend, 7)
    sink = Sink(backend)
    # The sink's own events (one per event handled, committed batch by batch) come after them,
    # and are read (and skipped) by the same catch-up: 7 + 7 events in batches of 3. A catch-up
    # stops at the read horizon: any transaction the horizon cannot place in another database
    # (say, one of another test's that ended as the horizon was read) holds back what committed
    # after it began, and a later catch-up hands that. So: catch-ups until all 14 are in.
    handled = [await subs.catch_up("audit", sink, batch_size=3)]

    async def all_in() -> bool:
        if sum(handled) < 14:
            handled.append(await subs.catch_up("audit", sink, batch_size=3))
        return sum(handled) >= 14

    await until(all_in, 30, "every event and the sink's own handed by catch-ups")
    assert sum(handled) == 14
    assert sink.calls >= 5  # (5 batches of at most 3, more when the horizon cut one short)
    assert await sink.handled() == written
    assert await subs.position("audit") == (await backend.event_store().read_all())[-1].position
    assert await subs.catch_up("audit", sink, batch_size=3) == 0
    assert await sink.handled() == written


async def test_a_failed_batch_commits_nothing_and_is_handed_again(backend: Backend) -> None:
    subs = Subscriptions(backend)
    written = await _events(backend, 5)
    sink = Sink(backend, fail_on_call={2})
    assert await subs.step("audit", sink, batch_size=2) == 2
    with pytest.raises(Boom):
        await subs.step("audit", sink, batch_size=2)
    assert await sink.handled() == written[:2]
    await subs.catch_up("audit", sink, batch_size=2)
    assert await sink.handled() == written


async def test_two_runners_of_one_name_hand_each_event_once(backend: Backend) -> None:
    written = await _events(backend, 40)
    sink = Sink(backend)
    first, second = Subscriptions(backend), Subscriptions(backend)
    counts = await asyncio.gather(
        first.catch_up("audit", sink, batch_size=3), second.catch_up("audit", sink, batch_size=3)
    )
    handled = await sink.handled()
    assert sorted(handled) == sorted(written)
    assert handled == written
    assert sum(counts) >= 40


async def test_subscriptions_of_other_names_read_on_their_own(backend: Backend) -> None:
    subs = Subscriptions(backend)
    await _events(backend, 3)
    seen: dict[str, int] = {"a": 0, "b": 0}

    def counting(name: str) -> Any:
        async def handler(events: Sequence[PositionedEvent], tx: Transaction) -> None:
            seen[name] += len(events)

        return handler

    await subs.catch_up("a", counting("a"))
    await _events(backend, 2)
    await subs.catch_up("a", counting("a"))
    await subs.catch_up("b", counting("b"))
    assert seen == {"a": 5, "b": 5}


async def test_reset_reads_again_from_a_position_or_the_start(backend: Backend) -> None:
    subs = Subscriptions(backend)
    await _events(backend, 4)
    read: list[PositionedEvent] = []

    async def keep(events: Sequence[PositionedEvent], tx: Transaction) -> None:
        read.extend(events)

    await subs.catch_up("r", keep)
    await subs.reset("r", read[1].position)
    await subs.catch_up("r", keep)
    await subs.reset("r")
    assert await subs.position("r") is None
    await subs.catch_up("r", keep)
    ids = [e.event_id for e in read]
    assert ids == ids[:4] + ids[2:4] + ids[:4]


async def test_run_catches_up_then_follows_live_until_stopped(backend: Backend) -> None:
    subs = Subscriptions(backend, poll_interval=0.02)
    before = await _events(backend, 3)
    sink = Sink(backend)
    stop = asyncio.Event()
    running = asyncio.create_task(subs.run("live", sink, batch_size=2, stop=stop))
    try:
        await until(lambda: _has(sink, 3), 10, "the events written before")
        after = await _events(backend, 4)
        subs.wake()
        await until(lambda: _has(sink, 7), 10, "the events written while it ran")
    finally:
        stop.set()
        await asyncio.wait_for(running, 10)
    assert await sink.handled() == before + after


async def _has(sink: Sink, count: int) -> bool:
    return len(await sink.handled()) >= count


class Counting:
    """A checkpoint store that counts its calls (``hold``: a unit of work that locks)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: dict[str, int] = {"hold": 0, "get": 0, "save": 0}

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            return await method(*args, **kwargs)

        return counted


async def test_an_idle_subscription_only_reads(backend: Backend) -> None:
    """Once caught up, a look with nothing to read is a read: no unit of work holds (locks) or
    saves the checkpoint until something arrives."""
    subs = Subscriptions(backend, poll_interval=0.005)
    await _events(backend, 2)
    counting = subs._checkpoints = Counting(backend.checkpoints())  # type: ignore[assignment]
    stop = asyncio.Event()
    handled: list[PositionedEvent] = []

    async def keep(events: Sequence[PositionedEvent], tx: Transaction) -> None:
        handled.extend(events)

    running = asyncio.create_task(subs.run("idle", keep, stop=stop))

    async def polled() -> bool:
        return counting.calls["get"] >= 20

    await until(polled, 10, "twenty idle looks", every=0.005)
    stop.set()
    await asyncio.wait_for(running, 10)
    assert len(handled) == 2
    assert counting.calls["save"] == 1  # the two events' batch
    assert counting.calls["hold"] == 1  # that batch (shorter than batch_size: caught up)


@pytest.mark.parametrize("name", ["", "x" * 201, "a\x00b", 7, None])
async def test_a_bad_name_is_refused(backend: Backend, name: Any) -> None:
    subs = Subscriptions(backend)
    await _events(backend, 1)
    sink = Sink(backend)
    with pytest.raises(InvalidInputError):
        await subs.catch_up(name, sink)
    assert sink.calls == 0


@pytest.mark.parametrize("batch_size", [0, -1, 100_001, 2.0, True])
async def test_a_bad_batch_size_is_refused(backend: Backend, batch_size: Any) -> None:
    with pytest.raises(InvalidInputError, match="batch_size"):
        await Subscriptions(backend).catch_up("s", Sink(backend), batch_size=batch_size)


@pytest.mark.parametrize("poll_interval", [0, -1, float("nan"), float("inf"), "1", True])
def test_a_bad_poll_interval_is_refused(backend: Backend, poll_interval: Any) -> None:
    with pytest.raises(InvalidInputError, match="poll_interval"):
        Subscriptions(backend, poll_interval=poll_interval)


async def test_a_handler_that_is_not_callable_is_refused(backend: Backend) -> None:
    await _events(backend, 1)
    subs = Subscriptions(backend)
    with pytest.raises(InvalidInputError, match="handler"):
        await subs.catch_up("s", "not a handler")  # type: ignore[arg-type]
    assert await subs.position("s") is None


async def test_a_malformed_reset_position_is_refused(backend: Backend) -> None:
    subs = Subscriptions(backend)
    with pytest.raises(InvalidInputError, match="position"):
        await subs.reset("s", "somewhere")
    assert await subs.position("s") is None


async def test_a_connection_killed_mid_batch_commits_each_effect_once(
    harness: Harness, backend: Backend
) -> None:
    """The server drops the batch's connection after the handler wrote: the unit of work is run
    again from the start (a transient failure whose outcome is known: nothing committed)."""
    harness.require("sql")
    written = await _events(backend, 6)
    killed: list[int] = []

    class Killing(Sink):
        async def __call__(self, events: Sequence[PositionedEvent], tx: Transaction) -> None:
            await super().__call__(events, tx)
            if not killed:
                pid = await tx.connection.fetchval("SELECT pg_backend_pid()")  # type: ignore[attr-defined]
                killed.append(pid)
                await harness.conn.execute("SELECT pg_terminate_backend($1)", pid)  # type: ignore[attr-defined]

    sink = Killing(backend)
    await Subscriptions(backend).catch_up("killed", sink, batch_size=4)
    assert killed
    assert await sink.handled() == written
