"""Global ordered reads and their checkpoints (SPEC 8.5): the ports ``Subscriptions`` runs on."""

from __future__ import annotations

import builtins
from typing import Protocol, runtime_checkable

from chem_persistence_async.domain.positions import Position, PositionedEvent
from chem_persistence_async.ports.unit_of_work import Transaction


@runtime_checkable
class GlobalReader(Protocol):
    """An event store that reads every flow's events in one order into which no later commit can
    insert (both built-in stores)."""

    async def read_all(
        self, after: Position | str | None = None, *, limit: int = 1000, tx: Transaction | None = None
    ) -> builtins.list[PositionedEvent]:
        """Up to ``limit`` events after ``after`` (``None``: from the start), in position order. A
        reader that has seen position p never later sees an event at or before p: an event
        still uncommitted when a later one is read holds the read back until it has ended."""
        ...


class CheckpointStore(Protocol):
    """Where each named subscription has read up to."""

    async def hold(self, name: str, *, tx: Transaction) -> Position | None:
        """The subscription's position (``None``: it has read nothing), holding ``name`` for
        ``tx``: another unit of work that holds it waits until ``tx`` ends, then sees what ``tx``
        saved. The handler's batch and its checkpoint are one unit of work, one runner at a time."""
        ...

    async def save(self, name: str, position: Position, *, tx: Transaction) -> None:
        """Where the subscription has read up to, written in ``tx`` (with what its handler wrote)."""
        ...

    async def get(self, name: str, *, tx: Transaction | None = None) -> Position | None: ...

    async def reset(
        self, name: str, position: Position | str | None = None, *, tx: Transaction | None = None
    ) -> None:
        """Move the subscription back (or on) to ``position``; ``None`` forgets it: it reads from the
        start again."""
        ...
