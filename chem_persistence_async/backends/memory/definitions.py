"""``InMemoryDefinitionRegistry``: the definition registry's reference semantics, in memory."""

from __future__ import annotations

import builtins
import json
from collections.abc import Callable
from datetime import UTC, datetime

from chem_persistence_async.domain.canonical import canonical_json
from chem_persistence_async.domain.definitions import DefinitionRecord
from chem_persistence_async.domain.flow import FlowDefinition
from chem_persistence_async.domain.ids import check_name
from chem_persistence_async.errors import DefinitionError, UnknownDefinitionError


class InMemoryDefinitionRegistry:
    def __init__(self, *, clock: Callable[[], datetime] | None = None) -> None:
        self._clock = clock or (lambda: datetime.now(UTC))
        self._records: dict[tuple[str, str], DefinitionRecord] = {}

    async def register(self, definition: FlowDefinition) -> DefinitionRecord:
        if not isinstance(definition, FlowDefinition):
            raise DefinitionError(f"expected a FlowDefinition, got {type(definition).__name__}")
        key = (definition.name, definition.hash)
        if key not in self._records:
            steps = json.loads(canonical_json(definition.describe()))
            self._records[key] = DefinitionRecord(definition.name, definition.hash, steps, self._clock())
        return self._records[key]

    async def get(self, name: str, hash: str) -> DefinitionRecord:
        key = (check_name(name, "name"), check_name(hash, "hash", max_length=64))
        record = self._records.get(key)
        if record is None:
            raise UnknownDefinitionError(f"no definition {name!r} with hash {hash[:12]}… is registered")
        return record

    async def list(self, name: str | None = None) -> builtins.list[DefinitionRecord]:
        wanted = None if name is None else check_name(name, "name")
        return sorted(
            (r for r in self._records.values() if wanted is None or r.name == wanted),
            key=lambda r: (r.name, r.created_at, r.hash),
        )

    async def preload(self) -> int:
        return len(self._records)

    def clear_cache(self) -> None:
        """Nothing to clear: memory is the registry itself."""
