"""``DefinitionRegistryPort``: every flow definition workers may run, by name and hash (SPEC 8.2).

Old and new versions of a definition live side by side during a rolling deploy: a worker
registers what it runs and claims only jobs of definitions it knows by name and hash.
"""

from __future__ import annotations

import builtins
from typing import Protocol

from chem_persistence_async.domain.definitions import DefinitionRecord
from chem_persistence_async.domain.flow import FlowDefinition


class DefinitionRegistryPort(Protocol):
    async def register(self, definition: FlowDefinition) -> DefinitionRecord:
        """Record ``definition`` (idempotent: registering it again changes nothing)."""
        ...

    async def get(self, name: str, hash: str) -> DefinitionRecord:
        """The registered definition; ``UnknownDefinitionError`` if there is none. Cached."""
        ...

    async def list(self, name: str | None = None) -> builtins.list[DefinitionRecord]: ...

    async def preload(self) -> int:
        """Fill the cache with every registered definition; returns how many."""
        ...

    def clear_cache(self) -> None: ...
