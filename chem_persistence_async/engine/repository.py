"""Repositories: load a flow from a store and replay it. Both use the one ``replay`` function."""

from __future__ import annotations

from typing import Protocol
from uuid import UUID

from chem_persistence_async.domain.failures import StepExecutionError
from chem_persistence_async.domain.flow import FlowDefinition, FlowInstance
from chem_persistence_async.domain.ids import to_flow_id
from chem_persistence_async.errors import ErrorRecordMismatchError
from chem_persistence_async.ports.event_store import AsyncEventStore
from chem_persistence_async.replay import replay


class FlowRepository(Protocol):
    async def load(
        self, store: AsyncEventStore, flow_id: UUID | str, definition: FlowDefinition
    ) -> FlowInstance: ...


class InMemoryFlowRepository:
    """Replays the flow's events; nothing else."""

    async def load(
        self, store: AsyncEventStore, flow_id: UUID | str, definition: FlowDefinition
    ) -> FlowInstance:
        fid = to_flow_id(flow_id)
        return replay(fid, await store.list(fid), definition)


class PgFlowRepository:
    """Replays the flow's events and checks the ``step_execution_errors`` rows against them.

    The rows are written in the same statement as their ``StepFailed`` events, so any difference
    means the database was changed behind the library's back: that is raised, never ignored.
    """

    async def load(
        self, store: AsyncEventStore, flow_id: UUID | str, definition: FlowDefinition
    ) -> FlowInstance:
        fid = to_flow_id(flow_id)
        instance = replay(fid, await store.list(fid), definition)
        rows: tuple[StepExecutionError, ...] = tuple(await store.list_errors(fid))
        from_events = instance.errors
        if rows != from_events:
            raise ErrorRecordMismatchError(
                f"flow {fid}: {len(rows)} step_execution_errors rows disagree with "
                f"{len(from_events)} stepfailed events" + _first_difference(rows, from_events)
            )
        return instance


def _first_difference(rows: tuple[object, ...], events: tuple[object, ...]) -> str:
    for index, (row, event) in enumerate(zip(rows, events, strict=False)):
        if row != event:
            return f"; first difference at #{index}: row {row!r} vs event {event!r}"
    return ""
