"""``InMemoryCheckpoints``: where each subscription has read up to, in memory (SPEC 8.5)."""

from __future__ import annotations

import asyncio

from chem_persistence_async.backends.memory.transaction import MemoryTransaction, memory_tx
from chem_persistence_async.domain.ids import check_name
from chem_persistence_async.domain.positions import Position, to_position
from chem_persistence_async.errors import TransactionError
from chem_persistence_async.ports.unit_of_work import Transaction


class InMemoryCheckpoints:
    """A position per subscription name; ``hold`` takes the name's lock until the unit of work
    ends (committed or rolled back), as PostgreSQL's row lock lasts until the transaction's end."""

    def __init__(self) -> None:
        self._positions: dict[str, Position | None] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def hold(self, name: str, *, tx: Transaction) -> Position | None:
        name = check_name(name, "subscription name")
        journal = _journal(tx)
        lock = self._locks.setdefault(name, asyncio.Lock())
        await lock.acquire()
        if not journal.active:  # (it ended while this waited)
            lock.release()
            raise TransactionError("the unit of work ended while it waited for the subscription")
        journal.on_commit(lock.release)
        journal.record_undo(lock.release)
        return self._positions.get(name)

    async def save(self, name: str, position: Position, *, tx: Transaction) -> None:
        name = check_name(name, "subscription name")
        self._set(name, Position(position), _journal(tx))

    async def get(self, name: str, *, tx: Transaction | None = None) -> Position | None:
        memory_tx(tx)
        return self._positions.get(check_name(name, "subscription name"))

    async def reset(
        self, name: str, position: Position | str | None = None, *, tx: Transaction | None = None
    ) -> None:
        name = check_name(name, "subscription name")
        self._set(name, to_position(position), memory_tx(tx))

    def _set(self, name: str, position: Position | None, journal: MemoryTransaction | None) -> None:
        known, before = name in self._positions, self._positions.get(name)
        self._positions[name] = position
        if journal is not None:

            def undo() -> None:
                if known:
                    self._positions[name] = before
                else:
                    self._positions.pop(name, None)

            journal.record_undo(undo)

    def __repr__(self) -> str:
        return f"<InMemoryCheckpoints subscriptions={len(self._positions)}>"


def _journal(tx: Transaction) -> MemoryTransaction:
    journal = memory_tx(tx)
    if journal is None:
        raise TransactionError("a subscription's checkpoint is held and saved inside a unit of work (tx=)")
    return journal
