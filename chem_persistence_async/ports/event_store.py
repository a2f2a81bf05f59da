"""``AsyncEventStore``: the event store contract every backend meets (one shared test suite).

Every method takes ``tx=``: ``None`` runs it on its own (retried on transient failures, appends
possibly grouped with other callers' into one commit); a ``Transaction`` from ``transaction()`` runs
it inside that unit of work, to commit or roll back with everything else done there.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol, TypeVar, runtime_checkable
from uuid import UUID

from chem_persistence_async.domain.artifacts import Artifact
from chem_persistence_async.domain.events import FlowEvent, FlowEventKind
from chem_persistence_async.domain.failures import StepExecutionError
from chem_persistence_async.ports.unit_of_work import Transaction

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class FlowRecord:
    """A flow's events and its ``step_execution_errors`` rows, read in one snapshot."""

    events: list[FlowEvent]
    errors: list[StepExecutionError]


@runtime_checkable
class AsyncEventStore(Protocol):
    async def append_kind(
        self,
        flow_id: UUID | str,
        kind: FlowEventKind,
        *,
        artifacts: Iterable[Artifact] = (),
        expected_version: int | None = None,
        event_id: UUID | None = None,
        tx: Transaction | None = None,
    ) -> FlowEvent: ...

    async def append_many(
        self,
        flow_id: UUID | str,
        kinds: Sequence[FlowEventKind],
        *,
        artifacts: Iterable[Artifact] = (),
        expected_version: int | None = None,
        event_ids: Sequence[UUID] | None = None,
        tx: Transaction | None = None,
    ) -> list[FlowEvent]: ...

    async def list(
        self, flow_id: UUID | str, *, tx: Transaction | None = None
    ) -> builtins.list[FlowEvent]: ...

    def stream(self, flow_id: UUID | str, *, batch_size: int = 1000) -> AsyncIterator[FlowEvent]: ...

    async def read_flow(self, flow_id: UUID | str, *, tx: Transaction | None = None) -> FlowRecord: ...

    async def read_flows(
        self, flow_ids: Iterable[UUID | str], *, tx: Transaction | None = None
    ) -> dict[UUID, FlowRecord]:
        """``read_flow`` of several flows in ONE snapshot (on PostgreSQL one statement): a worker
        that claimed a batch of flow jobs reads them all in one round trip. A flow with no events
        maps to an empty record."""
        ...

    async def flow_version(self, flow_id: UUID | str, *, tx: Transaction | None = None) -> int: ...

    async def get_artifacts(
        self, hashes: Iterable[str], *, tx: Transaction | None = None
    ) -> dict[str, Artifact]: ...

    async def list_errors(
        self, flow_id: UUID | str, step_id: str | None = None, *, tx: Transaction | None = None
    ) -> builtins.list[StepExecutionError]: ...

    async def count_errors_by_flow(
        self, flow_id: UUID | str, *, tx: Transaction | None = None
    ) -> dict[str, dict[str, int]]: ...

    async def get_error_timeline(
        self, flow_id: UUID | str, step_id: str | None = None, *, tx: Transaction | None = None
    ) -> builtins.list[StepExecutionError]: ...

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """A unit of work on this store's backend."""
        ...

    async def run_in_transaction(self, fn: Callable[[Transaction], Awaitable[T]]) -> T: ...
