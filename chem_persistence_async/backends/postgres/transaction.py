"""``PgTransaction``: a unit of work on one pooled connection, inside ``BEGIN ... COMMIT``.

Stores given ``tx=`` run their statements on ``tx.connection`` with no retry and no group commit:
a failed statement poisons a PostgreSQL transaction, so the stores' statements inside one never
fail on purpose (conflicts come back as row counts, see ``sql/events.py``). Your own SQL runs on
the same connection: ``await tx.execute(...)``, ``tx.fetch(...)``, or ``tx.connection`` itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg

from chem_persistence_async.errors import TransactionError
from chem_persistence_async.ports.unit_of_work import Transaction


class PgTransaction:
    """One open unit of work of a ``Database`` (build it with ``db.transaction()``)."""

    __slots__ = ("_after", "_broken", "_conn", "_db_id", "_state")

    def __init__(self, conn: asyncpg.Connection, db_id: int) -> None:
        self._conn = conn
        self._db_id = db_id
        self._after: list[Callable[[], None]] = []
        self._state = "open"
        self._broken: str | None = None

    @property
    def active(self) -> bool:
        return self._state == "open"

    @property
    def connection(self) -> asyncpg.Connection:
        """The connection the unit of work runs on (valid only inside its ``async with``)."""
        self.require_open()
        return self._conn

    def on_commit(self, callback: Callable[[], None]) -> None:
        self.require_open()
        self._after.append(callback)

    def mark_broken(self, reason: str) -> None:
        """A store found the transaction holding something it must not commit (half a batch after a
        race): the unit of work can only roll back now."""
        self._broken = reason

    def require_open(self) -> None:
        if self._state != "open":
            raise TransactionError(f"this unit of work is {self._state}: open a new one")
        if self._broken is not None:
            raise TransactionError(f"this unit of work must roll back: {self._broken}")

    async def execute(self, query: str, *args: Any) -> str:
        return str(await self.connection.execute(query, *args))

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        return list(await self.connection.fetch(query, *args))

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        return await self.connection.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await self.connection.fetchval(query, *args)

    def _finish(self, state: str) -> list[Callable[[], None]]:
        self._state = state
        after, self._after = self._after, []
        return after if state == "committed" else []

    def __repr__(self) -> str:
        return f"<PgTransaction {self._state}>"


def pg_tx(tx: Transaction | None, db_id: int) -> PgTransaction | None:
    """``tx`` as this database's open ``PgTransaction``, or a ``TransactionError``."""
    if tx is None:
        return None
    if not isinstance(tx, PgTransaction):
        raise TransactionError(f"a PostgreSQL store cannot run in {type(tx).__name__}")
    if tx._db_id != db_id:
        raise TransactionError("this unit of work belongs to another Database")
    tx.require_open()
    return tx
