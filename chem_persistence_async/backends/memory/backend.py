"""``InMemoryBackend``: one in-memory event store, queue and registry, as a ``Backend``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import TypeVar

from chem_persistence_async.backends.memory.checkpoints import InMemoryCheckpoints
from chem_persistence_async.backends.memory.definitions import InMemoryDefinitionRegistry
from chem_persistence_async.backends.memory.event_store import InMemoryEventStore
from chem_persistence_async.backends.memory.records import InMemoryWorkflowRecords
from chem_persistence_async.backends.memory.transaction import memory_transaction, run_in_memory_transaction
from chem_persistence_async.backends.memory.work_queue import InMemoryWorkQueue
from chem_persistence_async.ports.unit_of_work import Transaction

T = TypeVar("T")


class InMemoryBackend:
    """Everything a worker needs, in one process's memory (tests, notebooks, parity runs)."""

    def __init__(self) -> None:
        self._store = InMemoryEventStore()
        self._queue = InMemoryWorkQueue()
        self._registry = InMemoryDefinitionRegistry()
        self._records = InMemoryWorkflowRecords()
        self._checkpoints = InMemoryCheckpoints()

    def event_store(self) -> InMemoryEventStore:
        return self._store

    def work_queue(self) -> InMemoryWorkQueue:
        return self._queue

    def definition_registry(self) -> InMemoryDefinitionRegistry:
        return self._registry

    def checkpoints(self) -> InMemoryCheckpoints:
        return self._checkpoints

    def workflow_records(self) -> InMemoryWorkflowRecords:
        return self._records

    def listener(self, on_wake: Callable[[str | None], None]) -> None:
        """No other process shares this memory: local enqueues wake workers directly."""
        return None

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        return memory_transaction()

    async def run_in_transaction(self, fn: Callable[[Transaction], Awaitable[T]]) -> T:
        return await run_in_memory_transaction(fn)

    def __repr__(self) -> str:
        return f"<InMemoryBackend {self._store!r} {self._queue!r}>"
