"""``Backend``: what a worker is given: one backend's stores, queue, registry and wake-ups.

A PostgreSQL ``Database`` is one (``Worker(db, ...)``); ``InMemoryBackend()`` is the in-memory
one. The worker reaches every store through it, so it never imports a backend itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol, TypeVar

from chem_persistence_async.ports.definitions import DefinitionRegistryPort
from chem_persistence_async.ports.event_store import AsyncEventStore
from chem_persistence_async.ports.global_reads import CheckpointStore
from chem_persistence_async.ports.records import WorkflowRecordsPort
from chem_persistence_async.ports.unit_of_work import Transaction
from chem_persistence_async.ports.work_queue import WorkQueuePort

T = TypeVar("T")


class WakeListener(Protocol):
    """Wakes a worker when another process enqueues (PostgreSQL's LISTEN connection)."""

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...


class Backend(Protocol):
    def event_store(self) -> AsyncEventStore:
        """The backend's shared event store (one per backend: one version cache, one group commit)."""
        ...

    def work_queue(self) -> WorkQueuePort: ...

    def definition_registry(self) -> DefinitionRegistryPort: ...

    def checkpoints(self) -> CheckpointStore:
        """Where the backend's subscriptions have read up to (``Subscriptions``)."""
        ...

    def workflow_records(self) -> WorkflowRecordsPort:
        """The backend's shared workflow records (a ``Worker`` keeps its flows' runs there)."""
        ...

    def listener(self, on_wake: Callable[[str | None], None]) -> WakeListener | None:
        """A cross-process wake-up source, or ``None`` where there is none (memory)."""
        ...

    def transaction(self) -> AbstractAsyncContextManager[Transaction]: ...

    async def run_in_transaction(self, fn: Callable[[Transaction], Awaitable[T]]) -> T:
        """``fn(tx)`` in one unit of work, run again from the start on a transient failure."""
        ...
