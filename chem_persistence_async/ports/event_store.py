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
from typing import NamedTuple, Protocol, TypeVar, runtime_checkable
from uuid import UUID

from chem_persistence_async.domain.artifacts import Artifact
from chem_persistence_async.domain.events import FlowEvent, FlowEventKind
from chem_persistence_async.domain.failures import StepExecutionError
from chem_persistence_async.ports.unit_of_work import Transaction

T = TypeVar("T")


class FlowMark(NamedTuple):
    """Where a reader's copy of a flow ends: its last event, the ``seq`` of its first (a flow
    deleted and started again under the same id has new ones: sequences are never rewound), and
    how many error rows it holds (a row added behind the library's back changes that)."""

    version: int
    event_id: UUID
    seq: int
    first_seq: int
    errors: int

    @classmethod
    def of(cls, events: Sequence[FlowEvent], errors: int, first_seq: int | None = None) -> FlowMark:
        """The mark after ``events`` (the flow's last ones; its first unless ``first_seq``) and
        ``errors`` error rows."""
        last = events[-1]
        first = events[0].seq if first_seq is None else first_seq
        return cls(last.flow_version, last.event_id, last.seq, first, errors)


@dataclass(frozen=True, slots=True)
class FlowRecord:
    """A flow's events and its ``step_execution_errors`` rows, read in one snapshot."""

    events: list[FlowEvent]
    errors: list[StepExecutionError]
    since: int = 0
    """The version the events follow: 0 for the whole flow, ``after.version`` for the part after a
    ``FlowMark`` the flow still has (``read_flow(after=...)``)."""


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

    async def read_flow(
        self, flow_id: UUID | str, *, after: FlowMark | None = None, tx: Transaction | None = None
    ) -> FlowRecord:
        """The flow's events and error rows in one snapshot. With ``after`` (a copy held already),
        only the events after ``after.version`` and the error rows after ``after.seq``, if the flow
        still has ``after``'s last and first events and ``after.errors`` rows up to it (``since``
        says so); else the whole flow."""
        ...

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
