"""The repository: load a flow from any store and replay it with the one ``replay`` function.

``FlowRepository`` reads the flow's events and its ``step_execution_errors`` rows in one snapshot
(``store.read_flow``) and checks one against the other: the rows are written in the same statement
as their ``StepFailed`` events, so any difference means the database was changed behind the
library's back, and that is raised, never ignored. ``PgFlowRepository`` and
``InMemoryFlowRepository`` are names for it kept from before every store could read both at once.
"""

from __future__ import annotations

from typing import Protocol
from uuid import UUID

from chem_persistence_async.codec.fast import collector_paused
from chem_persistence_async.domain.failures import StepExecutionError
from chem_persistence_async.domain.flow import FlowDefinition, FlowInstance
from chem_persistence_async.domain.ids import to_flow_id
from chem_persistence_async.errors import ErrorRecordMismatchError
from chem_persistence_async.ports.event_store import AsyncEventStore, FlowRecord
from chem_persistence_async.ports.unit_of_work import Transaction
from chem_persistence_async.replay import replay


class FlowLoader(Protocol):
    """What the engine needs of a repository."""

    async def load(
        self,
        store: AsyncEventStore,
        flow_id: UUID | str,
        definition: FlowDefinition,
        *,
        tx: Transaction | None = None,
        record: FlowRecord | None = None,
    ) -> FlowInstance:
        """The flow replayed; from ``record`` when given (read already, ``store.read_flows``)."""
        ...


class FlowRepository:
    """Replays a flow read from any store, checking its error rows against its events."""

    async def load(
        self,
        store: AsyncEventStore,
        flow_id: UUID | str,
        definition: FlowDefinition,
        *,
        tx: Transaction | None = None,
        record: FlowRecord | None = None,
    ) -> FlowInstance:
        fid = to_flow_id(flow_id)
        if record is None:
            record = await store.read_flow(fid, tx=tx)
        with collector_paused():  # the events are dropped once replayed: let them die young
            instance = replay(fid, record.events, definition)
        rows: tuple[StepExecutionError, ...] = tuple(record.errors)
        from_events = instance.errors
        if rows != from_events:
            raise ErrorRecordMismatchError(
                f"flow {fid}: {len(rows)} step_execution_errors rows disagree with "
                f"{len(from_events)} stepfailed events" + _first_difference(rows, from_events)
            )
        return instance


PgFlowRepository = FlowRepository
InMemoryFlowRepository = FlowRepository


def _first_difference(rows: tuple[object, ...], events: tuple[object, ...]) -> str:
    for index, (row, event) in enumerate(zip(rows, events, strict=False)):
        if row != event:
            return f"; first difference at #{index}: row {row!r} vs event {event!r}"
    return ""
