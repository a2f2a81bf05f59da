"""``Checkpoints``: where each subscription has read up to, on PostgreSQL (SPEC 8.5)."""

from __future__ import annotations

from typing import Any

from chem_persistence_async.backends.postgres.database import Database
from chem_persistence_async.backends.postgres.sql import subscriptions as sql
from chem_persistence_async.backends.postgres.sql.query import Query
from chem_persistence_async.backends.postgres.transaction import pg_tx
from chem_persistence_async.domain.ids import check_name
from chem_persistence_async.domain.positions import Position, to_position
from chem_persistence_async.ports.unit_of_work import Transaction


class Checkpoints:
    """``subscription_checkpoints``: one row per subscription name, locked by the runner that
    holds it for the length of its unit of work."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def _fetch(self, q: Query, tx: Transaction | None, operation: str, **values: Any) -> list[Any]:
        return await self._db.fetch(q, values, tx=pg_tx(tx, id(self._db)), operation=operation)

    async def hold(self, name: str, *, tx: Transaction) -> Position | None:
        name = check_name(name, "subscription name")
        rows = await self._fetch(sql.HOLD, tx, "hold_checkpoint", name=name)
        if not rows:
            await self._fetch(sql.ADD, tx, "hold_checkpoint", name=name)
            rows = await self._fetch(sql.HOLD, tx, "hold_checkpoint", name=name)
        return _position(rows)

    async def save(self, name: str, position: Position, *, tx: Transaction) -> None:
        name = check_name(name, "subscription name")
        await self._fetch(sql.SAVE, tx, "save_checkpoint", name=name, position=Position(position))

    async def get(self, name: str, *, tx: Transaction | None = None) -> Position | None:
        name = check_name(name, "subscription name")
        return _position(await self._fetch(sql.GET, tx, "get_checkpoint", name=name))

    async def reset(
        self, name: str, position: Position | str | None = None, *, tx: Transaction | None = None
    ) -> None:
        name = check_name(name, "subscription name")
        await self._fetch(sql.SAVE, tx, "reset_checkpoint", name=name, position=to_position(position))

    def __repr__(self) -> str:
        return f"Checkpoints({self._db!r})"


def _position(rows: list[Any]) -> Position | None:
    value = rows[0][0] if rows else None
    return None if value is None else Position(value)
