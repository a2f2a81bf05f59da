"""The repository: load a flow from any store and replay it with the one ``replay`` function.

``FlowRepository`` reads the flow's events and its ``step_execution_errors`` rows in one snapshot
(``store.read_flow``) and checks one against the other: the rows are written in the same statement
as their ``StepFailed`` events, so any difference means the database was changed behind the
library's back, and that is raised, never ignored. ``PgFlowRepository`` and
``InMemoryFlowRepository`` are names for it kept from before every store could read both at once.

``load_after`` extends a replayed copy the caller holds (the engine's cache of replayed flows) by
the events after it, read with ``read_flow(after=...)``, when the store proves the flow is still the
one the copy was read from; else it replays the whole flow.
"""

from __future__ import annotations

from collections import Counter
from typing import NamedTuple, Protocol, runtime_checkable
from uuid import UUID

from chem_persistence_async.codec.fast import collector_paused
from chem_persistence_async.domain.events import FlowEvent, StepFailed
from chem_persistence_async.domain.failures import StepExecutionError
from chem_persistence_async.domain.flow import FlowDefinition, FlowInstance
from chem_persistence_async.domain.ids import to_flow_id
from chem_persistence_async.errors import ErrorRecordMismatchError
from chem_persistence_async.ports.event_store import AsyncEventStore, FlowMark, FlowRecord
from chem_persistence_async.ports.unit_of_work import Transaction
from chem_persistence_async.replay import apply_events, initial_instance


class Replayed(NamedTuple):
    """A replayed flow and the mark of the events it was replayed from (``None``: no events)."""

    instance: FlowInstance
    mark: FlowMark | None


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


@runtime_checkable
class FlowExtender(FlowLoader, Protocol):
    """A repository that can extend a replayed copy by the events after it (the engine's cache)."""

    async def load_after(
        self,
        store: AsyncEventStore,
        flow_id: UUID,
        definition: FlowDefinition,
        held: Replayed | None,
        *,
        tx: Transaction | None = None,
        record: FlowRecord | None = None,
    ) -> Replayed:
        """The flow replayed: ``held`` extended by the events after its mark when the store still
        has that mark, else the whole flow; from ``record`` when given (a whole flow, read
        already)."""
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
        return (
            await self.load_after(store, to_flow_id(flow_id), definition, None, tx=tx, record=record)
        ).instance

    async def load_after(
        self,
        store: AsyncEventStore,
        flow_id: UUID,
        definition: FlowDefinition,
        held: Replayed | None,
        *,
        tx: Transaction | None = None,
        record: FlowRecord | None = None,
    ) -> Replayed:
        mark = None if held is None else held.mark
        if record is None:
            record = await store.read_flow(flow_id, after=mark, tx=tx)
        elif mark is not None and _holds(record, mark):  # (a batch's read: cut here)
            newer = [e for e in record.errors if (e.event_seq or 0) > mark.seq]
            record = FlowRecord(record.events[mark.version :], newer, mark.version)
        if held is not None and mark is not None and record.since == mark.version:
            base = held.instance
        else:
            mark, base = None, initial_instance(flow_id, definition)
        events = record.events
        if held is not None and mark is not None and not events and not record.errors:
            return held  # nothing new: the very state held
        with collector_paused():  # the events are dropped once replayed: let them die young
            instance = apply_events(base, events, definition)
        rows: tuple[StepExecutionError, ...] = tuple(record.errors)
        from_events = instance.errors if mark is None else _new_errors(instance, events)
        if rows != from_events:
            raise ErrorRecordMismatchError(
                f"flow {flow_id}: {len(rows)} step_execution_errors rows disagree with "
                f"{len(from_events)} stepfailed events" + _first_difference(rows, from_events)
            )
        if not events:
            return Replayed(instance, mark)
        if mark is None:
            return Replayed(instance, FlowMark.of(events, len(rows)))
        return Replayed(instance, FlowMark.of(events, mark.errors + len(rows), mark.first_seq))


def _holds(record: FlowRecord, mark: FlowMark) -> bool:
    """Whether a whole flow's record still holds the mark's last and first events, and its error
    rows up to it."""
    events = record.events
    if not 1 <= mark.version <= len(events) or events[0].seq != mark.first_seq:
        return False
    upto = sum(1 for e in record.errors if e.event_seq is None or e.event_seq <= mark.seq)
    if upto != mark.errors:
        return False
    last = events[mark.version - 1]
    return last.flow_version == mark.version and last.event_id == mark.event_id and last.seq == mark.seq


def _new_errors(instance: FlowInstance, events: list[FlowEvent]) -> tuple[StepExecutionError, ...]:
    """The failed attempts ``events`` (the last ones replayed into ``instance``) added, in the
    order of their events: the last of each slot's errors, not every error of the flow."""
    failed = Counter(e.kind.step_index for e in events if type(e.kind) is StepFailed)
    if not failed:
        return ()
    steps = instance.steps
    new = [error for index, count in failed.items() for error in steps[index].errors[-count:]]
    return tuple(sorted(new, key=_seq_of))


def _seq_of(error: StepExecutionError) -> int:
    return error.event_seq or 0


PgFlowRepository = FlowRepository
InMemoryFlowRepository = FlowRepository


def _first_difference(rows: tuple[object, ...], events: tuple[object, ...]) -> str:
    for index, (row, event) in enumerate(zip(rows, events, strict=False)):
        if row != event:
            return f"; first difference at #{index}: row {row!r} vs event {event!r}"
    return ""
