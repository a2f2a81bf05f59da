"""``DefinitionRegistry``: the definition registry on PostgreSQL (``flow_definitions``), cached."""

from __future__ import annotations

import builtins
import json
from typing import Any

from chem_persistence_async.backends.postgres.database import Database
from chem_persistence_async.backends.postgres.sql import definitions as sql
from chem_persistence_async.backends.postgres.sql.query import Query
from chem_persistence_async.domain.canonical import canonical_json
from chem_persistence_async.domain.definitions import DefinitionRecord
from chem_persistence_async.domain.flow import FlowDefinition
from chem_persistence_async.domain.ids import check_name
from chem_persistence_async.errors import DefinitionError, UnknownDefinitionError

_REGISTER_ROUNDS = 10


class DefinitionRegistry:
    """Every flow definition workers may run, by name and hash, with an in-process cache."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._cache: dict[tuple[str, str], DefinitionRecord] = {}

    async def _fetch(self, q: Query, operation: str, **values: Any) -> builtins.list[Any]:
        return await self._db.fetch(q, values, operation=operation)

    async def register(self, definition: FlowDefinition) -> DefinitionRecord:
        if not isinstance(definition, FlowDefinition):
            raise DefinitionError(f"expected a FlowDefinition, got {type(definition).__name__}")
        cached = self._cache.get((definition.name, definition.hash))
        if cached is not None:
            return cached
        steps = canonical_json(definition.describe())
        for _ in range(_REGISTER_ROUNDS):
            rows = await self._fetch(
                sql.REGISTER, "register_definition", name=definition.name, hash=definition.hash, steps=steps
            )
            if rows:  # (none: registered concurrently after this statement's snapshot: look again)
                return self._remember(rows[0])
        raise UnknownDefinitionError(f"definition {definition.name!r} could not be registered")

    async def get(self, name: str, hash: str) -> DefinitionRecord:
        key = (check_name(name, "name"), check_name(hash, "hash", max_length=64))
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        rows = await self._fetch(sql.GET, "get_definition", name=key[0], hash=key[1])
        if not rows:
            raise UnknownDefinitionError(f"no definition {name!r} with hash {hash[:12]}… is registered")
        return self._remember(rows[0])

    async def list(self, name: str | None = None) -> builtins.list[DefinitionRecord]:
        rows = await self._fetch(
            sql.LIST, "list_definitions", name=None if name is None else check_name(name, "name")
        )
        return [self._remember(row) for row in rows]

    async def preload(self) -> int:
        return len(await self.list())

    def clear_cache(self) -> None:
        self._cache.clear()

    def _remember(self, row: Any) -> DefinitionRecord:
        record = DefinitionRecord(row[0], row[1], json.loads(row[2]), row[3])
        self._cache[(record.name, record.hash)] = record
        return record

    def __repr__(self) -> str:
        return f"<DefinitionRegistry {self._db!r} cached={len(self._cache)}>"
