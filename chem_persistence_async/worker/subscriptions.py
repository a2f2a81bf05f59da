"""``Subscriptions``: named readers of the global order that handle each event exactly once
(SPEC 8.5).

``run(name, handler)`` calls ``await handler(events, tx)`` with batches in ``read_all``'s order,
from where the subscription's checkpoint says it stopped (the start, the first time), and saves the
checkpoint in the same unit of work as whatever the handler wrote through ``tx``: a batch and its
checkpoint commit together or not at all, so across crashes, transient failures (the unit of work
runs again from the start) and several runners of one name (they take turns: ``hold``), each
event's effect commits once. What a handler does outside ``tx`` (a message sent, a file written)
is at least once.

Catch-up, then live: once caught up, it looks again every ``poll_interval`` seconds (a look with
nothing to read is read-only: no transaction is written while idle), and at once after
``wake()``. The wait comes after every catch-up, busy or not: the events a poll's interval
brings are handled as one batch (a flow appended to several times in it is handled once), where
looking again at once would hand them over one append at a time. It runs on any ``Backend`` and
imports none.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

from chem_persistence_async.domain.ids import check_batch_size, check_name
from chem_persistence_async.domain.positions import Position, PositionedEvent
from chem_persistence_async.errors import InvalidInputError
from chem_persistence_async.ports.backend import Backend
from chem_persistence_async.ports.global_reads import GlobalReader
from chem_persistence_async.ports.unit_of_work import Transaction

Handler = Callable[[Sequence[PositionedEvent], Transaction], Awaitable[Any]]
"""``await handler(events, tx)``: write the batch's effects through ``tx``; raising rolls the batch
back (nothing of it is saved, the checkpoint included)."""


class Subscriptions:
    """Named subscriptions over one backend's event store and checkpoints."""

    def __init__(self, backend: Backend, *, poll_interval: float = 0.5) -> None:
        if (
            isinstance(poll_interval, bool)
            or not isinstance(poll_interval, int | float)
            or not math.isfinite(poll_interval)
            or poll_interval <= 0
        ):
            raise InvalidInputError(f"poll_interval must be a number of seconds > 0, got {poll_interval!r}")
        store = backend.event_store()
        if not isinstance(store, GlobalReader):
            raise InvalidInputError(f"{type(store).__name__} has no read_all: it cannot be subscribed to")
        self._backend = backend
        self._reader = cast(GlobalReader, store)
        self._checkpoints = backend.checkpoints()
        self._poll_interval = float(poll_interval)
        self._woken = asyncio.Event()

    def wake(self) -> None:
        """Look again at once (for example after this process appended events)."""
        self._woken.set()

    async def step(self, name: str, handler: Handler, *, batch_size: int = 1000) -> int:
        """Handle one batch (at most ``batch_size`` events) in one unit of work; how many there were."""
        return await self._step(*_checked(name, handler, batch_size))

    async def catch_up(self, name: str, handler: Handler, *, batch_size: int = 1000) -> int:
        """Handle batches until there is nothing more to read; how many events were handled."""
        return await self._catch_up(*_checked(name, handler, batch_size))

    async def run(
        self, name: str, handler: Handler, *, batch_size: int = 1000, stop: asyncio.Event | None = None
    ) -> None:
        """Catch up, then follow live until ``stop`` is set (or the task is cancelled)."""
        name, handler, batch_size = _checked(name, handler, batch_size)
        while stop is None or not stop.is_set():
            await self._catch_up(name, handler, batch_size)
            # Caught up: wait before looking again even if more has come meanwhile, so that a busy
            # log is read in batches of a poll's worth of events, not one small batch per append.
            while not await self._pause(stop):
                if await self._more(name):
                    break
            else:
                return

    async def _step(self, name: str, handler: Handler, batch_size: int) -> int:
        async def one(tx: Transaction) -> int:
            after = await self._checkpoints.hold(name, tx=tx)
            events = await self._reader.read_all(after, limit=batch_size, tx=tx)
            if events:
                await handler(events, tx)
                await self._checkpoints.save(name, events[-1].position, tx=tx)
            return len(events)

        return await self._backend.run_in_transaction(one)

    async def _catch_up(self, name: str, handler: Handler, batch_size: int) -> int:
        handled = 0
        while True:
            count = await self._step(name, handler, batch_size)
            handled += count
            if count < batch_size:
                return handled

    async def _more(self, name: str) -> bool:
        """Whether there is anything after the checkpoint (a read, no lock, no transaction)."""
        after = await self._checkpoints.get(name)
        return bool(await self._reader.read_all(after, limit=1))

    async def _pause(self, stop: asyncio.Event | None) -> bool:
        """Wait ``poll_interval``, or less if woken or stopped; True when stopped."""
        waits = [asyncio.ensure_future(self._woken.wait())]
        if stop is not None:
            waits.append(asyncio.ensure_future(stop.wait()))
        try:
            await asyncio.wait(waits, timeout=self._poll_interval, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
        self._woken.clear()
        return stop is not None and stop.is_set()

    async def position(self, name: str) -> Position | None:
        """Where the subscription has read up to (``None``: nothing yet)."""
        return await self._checkpoints.get(name)

    async def reset(self, name: str, position: Position | str | None = None) -> None:
        """Read again from after ``position`` (``None``: from the start)."""
        await self._checkpoints.reset(name, position)

    def __repr__(self) -> str:
        return f"Subscriptions({self._backend!r})"


def _checked(name: str, handler: Handler, batch_size: int) -> tuple[str, Handler, int]:
    """The arguments of ``step``, ``catch_up`` and ``run``, checked once per call."""
    name, batch_size = check_name(name, "subscription name"), check_batch_size(batch_size)
    if not callable(handler):
        raise InvalidInputError(f"handler must be an async callable(events, tx): {type(handler).__name__}")
    return name, handler, batch_size
