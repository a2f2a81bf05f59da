"""The ``AsyncEventStore`` contract that every backend meets (checked by one shared test suite)."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Protocol, runtime_checkable
from uuid import UUID

from chem_persistence_async.domain.artifacts import Artifact
from chem_persistence_async.domain.events import FlowEvent, FlowEventKind
from chem_persistence_async.domain.failures import StepExecutionError


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
    ) -> FlowEvent: ...

    async def append_many(
        self,
        flow_id: UUID | str,
        kinds: Sequence[FlowEventKind],
        *,
        artifacts: Iterable[Artifact] = (),
        expected_version: int | None = None,
        event_ids: Sequence[UUID] | None = None,
    ) -> list[FlowEvent]: ...

    async def list(self, flow_id: UUID | str) -> builtins.list[FlowEvent]: ...

    def stream(self, flow_id: UUID | str, *, batch_size: int = 1000) -> AsyncIterator[FlowEvent]: ...

    async def flow_version(self, flow_id: UUID | str) -> int: ...

    async def get_artifacts(self, hashes: Iterable[str]) -> dict[str, Artifact]: ...

    async def list_errors(
        self, flow_id: UUID | str, step_id: str | None = None
    ) -> builtins.list[StepExecutionError]: ...

    async def count_errors_by_flow(self, flow_id: UUID | str) -> dict[str, dict[str, int]]: ...

    async def get_error_timeline(
        self, flow_id: UUID | str, step_id: str | None = None
    ) -> builtins.list[StepExecutionError]: ...
