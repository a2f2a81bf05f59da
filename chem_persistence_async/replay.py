"""Replay: the one pure function that turns a flow's events into its ``FlowInstance``.

Every repository and every backend calls this, so a flow read from PostgreSQL equals the same flow
read from memory by construction.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from itertools import chain
from operator import attrgetter
from typing import Any, cast
from uuid import UUID

from chem_persistence_async.codec.fast import COLUMNS_FROM as _COLUMNS_FROM
from chem_persistence_async.codec.fast import column_builder, object_builder
from chem_persistence_async.domain.events import (
    FlowCompleted,
    FlowEvent,
    FlowInitialized,
    PropertyPreferenceAssigned,
    RetryScheduled,
    StepFailed,
    StepFinished,
    StepSignal,
    StepStarted,
    StepSuspended,
)
from chem_persistence_async.domain.failures import StepExecutionError
from chem_persistence_async.domain.flow import (
    FlowDefinition,
    FlowInstance,
    ReceivedSignal,
    StepSlot,
    StepStatus,
)
from chem_persistence_async.errors import DefinitionMismatchError, ReplayError


class _SlotState:
    __slots__ = (
        "attempts",
        "errors",
        "fingerprint",
        "lease_until",
        "not_before",
        "outputs",
        "resumable",
        "retry_count",
        "started_version",
        "status",
        "suspended_until",
        "waiting_for",
    )

    def __init__(self, slot: StepSlot) -> None:
        self.status = slot.status
        self.outputs = slot.outputs
        self.fingerprint = slot.fingerprint
        self.retry_count = slot.retry_count
        self.errors: list[StepExecutionError] = list(slot.errors)
        self.attempts = slot.attempts
        self.not_before: datetime | None = slot.not_before
        self.lease_until: datetime | None = slot.lease_until
        self.suspended_until: datetime | None = slot.suspended_until
        self.waiting_for: str | None = slot.waiting_for
        self.resumable = slot.resumable
        self.started_version = slot.started_version


def initial_instance(flow_id: UUID, definition: FlowDefinition) -> FlowInstance:
    """A flow with no events: every step pending, version 0."""
    return FlowInstance(
        flow_id=flow_id,
        definition_hash=definition.hash,
        completed=False,
        cursor=0,
        steps=_pending_steps(definition),
        fingerprint=None,
        version=0,
    )


def _pending_steps(definition: FlowDefinition) -> tuple[StepSlot, ...]:
    """Every step of ``definition`` pending. ``StepSlot``s are immutable, so one tuple serves every
    flow of a definition: kept per definition hash (which covers the step ids), a few at a time. A
    load built one slot per step each time (a quarter of a large flow's replay)."""
    steps = _PENDING.get(definition.hash)
    if steps is None:
        steps = tuple(StepSlot(step_id=step_id) for step_id in definition.step_ids)
        if len(_PENDING) >= _PENDING_KEPT:
            del _PENDING[next(iter(_PENDING))]  # the oldest
        _PENDING[definition.hash] = steps
    return steps


_PENDING: dict[str, tuple[StepSlot, ...]] = {}
_PENDING_KEPT = 64


def replay(flow_id: UUID, events: Iterable[FlowEvent], definition: FlowDefinition) -> FlowInstance:
    """Rebuild a flow from its events (in ``seq`` order) for ``definition``.

    Raises ``DefinitionMismatchError`` when the flow was started with another definition and
    ``ReplayError`` when the events cannot be a run of it.
    """
    return apply_events(initial_instance(flow_id, definition), events, definition)


def apply_events(
    instance: FlowInstance, events: Iterable[FlowEvent], definition: FlowDefinition
) -> FlowInstance:
    """The state after ``events`` (the flow's next ones, in order) on top of ``instance``.

    ``replay`` is this fold from the empty flow; the engine also uses it to apply the events it has
    just appended, instead of reading back what it wrote.
    """
    if instance.definition_hash != definition.hash:
        raise DefinitionMismatchError(
            f"flow {instance.flow_id} was replayed with definition {instance.definition_hash[:12]}…, "
            f"not {definition.name!r} ({definition.hash[:12]}…)"
        )
    flow_id = instance.flow_id
    step_ids = definition.step_ids
    before = instance.steps
    # Only the slots the events name are copied and rebuilt (the engine applies each append to the
    # flow it holds: copying every slot made an append O(steps), a long flow's run quadratic).
    slots: list[_SlotState | None] = [None] * len(before)
    touched: list[int] = []
    signals: list[tuple[str, str, Any]] = []
    """The fold's new signals (and below, signals received): the flow's own are not copied, so an
    append costs nothing per signal the flow holds already."""
    completed = instance.completed
    flow_fp: str | None = instance.fingerprint
    version = instance.version
    initialized = version > 0
    inputs = instance.inputs
    received: list[ReceivedSignal] = []
    last_received: dict[str, int] | None = None
    """The version at which each signal name last arrived: built at the first suspension of a
    fold, so a suspension asks it once instead of walking every signal received."""
    waiting: dict[str, list[int]] | None = None
    """Slots that may be suspended for a signal, by signal: built at the first delivered signal,
    so a delivery looks at those slots alone, not at every slot of a long flow."""

    steps_known = len(step_ids)
    codes = _CODES
    for event in events:
        kind = event.kind
        code = codes.get(type(kind))
        if code is None:
            code = _code_of(kind)
        if event.flow_version != version + 1:
            raise ReplayError(f"flow {flow_id}: version {event.flow_version} follows version {version}")
        version = event.flow_version
        if not initialized:
            if code != _INITIALIZED:
                raise ReplayError(f"flow {flow_id}: first event is {kind.event_type}, not flowinitialized")
            # Casts, not asserts, below: an ``isinstance`` per event is what the dispatch saves.
            kind = cast(FlowInitialized, kind)
            if kind.definition_hash != definition.hash or kind.definition_name != definition.name:
                raise DefinitionMismatchError(
                    f"flow {flow_id} was started with definition {kind.definition_name!r} "
                    f"({kind.definition_hash[:12]}…), not {definition.name!r} ({definition.hash[:12]}…)"
                )
            initialized = True
            inputs = kind.inputs
            continue
        if code >= _INITIALIZED:  # not a step's event
            if code == _INITIALIZED:
                raise ReplayError(f"flow {flow_id}: flowinitialized again at version {version}")
            if completed:
                raise ReplayError(f"flow {flow_id}: {kind.event_type} after flowcompleted")
            if code == _COMPLETED:
                completed = True
                flow_fp = kind.flow_fingerprint  # type: ignore[union-attr]
            continue
        if completed:
            raise ReplayError(f"flow {flow_id}: {kind.event_type} after flowcompleted")

        index = kind.step_index  # type: ignore[union-attr]
        if index >= steps_known or step_ids[index] != kind.step_id:  # type: ignore[union-attr]
            raise ReplayError(
                f"flow {flow_id}: event at version {version} names step {kind.step_id!r} "  # type: ignore[union-attr]
                f"at index {index}, which the definition does not have"
            )
        slot = slots[index]
        if slot is None:
            slot = slots[index] = _SlotState(before[index])
            touched.append(index)
        if code == _STARTED:
            slot.status = StepStatus.RUNNING
            slot.attempts += 1
            slot.not_before = None
            slot.lease_until = kind.lease_until  # type: ignore[union-attr]
            slot.suspended_until = slot.waiting_for = None
            slot.resumable = False
            slot.started_version = version
        elif code == _FINISHED:
            slot.status = StepStatus.FINISHED
            slot.outputs = kind.outputs  # type: ignore[union-attr]
            slot.fingerprint = kind.fingerprint  # type: ignore[union-attr]
        elif code == _FAILED:
            kind = cast(StepFailed, kind)
            slot.status = StepStatus.FAILED
            slot.errors.append(
                StepExecutionError(
                    flow_id=flow_id,
                    step_id=kind.step_id,
                    attempt_number=kind.attempt,
                    error_class=kind.error.error_class,
                    error_message=kind.error.message,
                    details=kind.error.details,
                    retry_count=kind.retry_count,
                    max_retries=kind.max_retries,
                    ts=event.ts,
                    event_seq=event.seq,
                )
            )
        elif code == _RETRY:
            slot.status = StepStatus.PENDING
            slot.retry_count = kind.retry_index  # type: ignore[union-attr]
            slot.not_before = kind.not_before  # type: ignore[union-attr]
        elif code == _SIGNAL:
            kind = cast(StepSignal, kind)
            signals.append((kind.step_id, kind.signal, kind.data))
            if kind.send_id is not None:
                received.append(ReceivedSignal(kind.signal, kind.data, kind.send_id, index, version))
                if last_received is not None:
                    last_received[kind.signal] = version
                if waiting is None:
                    waiting = _waiting_by_signal(slots, before)
                waiting[kind.signal] = _wake_waiting(
                    waiting.get(kind.signal, ()), slots, before, touched, kind.signal
                )
        elif code == _SUSPENDED:
            kind = cast(StepSuspended, kind)
            slot.status = StepStatus.SUSPENDED
            slot.suspended_until = kind.until
            slot.waiting_for = kind.signal
            if waiting is not None and kind.signal is not None:
                waiting.setdefault(kind.signal, []).append(index)
            # A signal that arrived while this attempt ran (it could not see it) wakes it at once.
            if kind.signal is None:
                slot.resumable = False
            else:
                if last_received is None:
                    last_received = {r.name: r.version for r in chain(instance.received, received)}
                slot.resumable = last_received.get(kind.signal, 0) > slot.started_version

    steps = list(before)
    if touched:
        for index, built in zip(touched, _build_slots(step_ids, touched, slots), strict=True):
            steps[index] = built
    finished = StepStatus.FINISHED
    if completed and any(step.status is not finished for step in steps):
        raise ReplayError(f"flow {flow_id}: flowcompleted with unfinished steps")

    # Every step before the instance's cursor was finished, and only touched ones changed.
    first = min(instance.cursor, min(touched)) if touched else instance.cursor
    cursor, end = first, len(steps)
    while cursor < end and steps[cursor].status is finished:
        cursor += 1
    return new_instance(
        flow_id,
        definition.hash,
        completed,
        cursor,
        tuple(steps),
        flow_fp,
        version,
        (*instance.signals, *signals) if signals else instance.signals,
        inputs,
        (*instance.received, *received) if received else instance.received,
    )


def _waiting_by_signal(slots: list[_SlotState | None], before: tuple[StepSlot, ...]) -> dict[str, list[int]]:
    """The suspended slots by the signal they wait for, as the fold stands (one pass over them)."""
    waiting: dict[str, list[int]] = {}
    for index, old in enumerate(before):
        state: _SlotState | StepSlot = slots[index] or old
        if state.status is StepStatus.SUSPENDED and state.waiting_for is not None:
            waiting.setdefault(state.waiting_for, []).append(index)
    return waiting


def _wake_waiting(
    candidates: Iterable[int],
    slots: list[_SlotState | None],
    before: tuple[StepSlot, ...],
    touched: list[int],
    signal: str,
) -> list[int]:
    """A delivered signal makes a step suspended for it runnable again (``candidates``: the slots
    that may wait for it). Returns the candidates still suspended for it: the others (started
    again since) are dropped, so a long flow's deliveries do not walk its whole history."""
    still: list[int] = []
    for index in candidates:
        slot = slots[index]
        if slot is None:
            old = before[index]
            if old.status is not StepStatus.SUSPENDED or old.waiting_for != signal:
                continue
            still.append(index)
            if old.resumable:
                continue
            slot = slots[index] = _SlotState(old)
            touched.append(index)
        if slot.status is StepStatus.SUSPENDED and slot.waiting_for == signal:
            slot.resumable = True
            if not still or still[-1] != index:
                still.append(index)
    return still


_STARTED, _FINISHED, _FAILED, _RETRY, _SIGNAL, _SUSPENDED, _INITIALIZED, _COMPLETED, _PREFERENCE = range(9)
"""What each kind does to the fold; the flow's own events (``_INITIALIZED`` and after) last."""

_CODES: dict[type, int] = {
    StepStarted: _STARTED,
    StepFinished: _FINISHED,
    StepFailed: _FAILED,
    RetryScheduled: _RETRY,
    StepSignal: _SIGNAL,
    StepSuspended: _SUSPENDED,
    FlowInitialized: _INITIALIZED,
    FlowCompleted: _COMPLETED,
    PropertyPreferenceAssigned: _PREFERENCE,
}
"""The fold dispatches on the kind's exact class, one dict lookup: an ``isinstance`` chain cost up
to eight ``ABCMeta`` checks per event (pydantic's models are ABCs)."""


def _code_of(kind: object) -> int:
    """The code of a kind that is an instance of a kind class without being one (a subclass: never
    what a store decodes), as the ``isinstance`` chain would take it."""
    for cls, code in _CODES.items():
        if isinstance(kind, cls):
            return code
    raise ReplayError(f"not a flow event kind: {type(kind).__name__}")


_SLOT_FIELDS = (
    "step_id",
    "status",
    "outputs",
    "fingerprint",
    "retry_count",
    "errors",
    "attempts",
    "not_before",
    "lease_until",
    "suspended_until",
    "waiting_for",
    "resumable",
    "started_version",
)
_new_slots = column_builder(StepSlot, _SLOT_FIELDS)
"""``StepSlot``s filled column by column through their slot descriptors (``codec.fast``): the
slots a load rebuilds (every step of the flow) at about half the cost of ``StepSlot(...)``."""
_new_slot = object_builder(StepSlot, _SLOT_FIELDS)
"""One ``StepSlot`` (an append's changed slot) at half the cost of ``StepSlot(...)``."""
new_instance = object_builder(
    FlowInstance,
    (
        "flow_id",
        "definition_hash",
        "completed",
        "cursor",
        "steps",
        "fingerprint",
        "version",
        "signals",
        "inputs",
        "received",
    ),
)
"""``FlowInstance(...)`` from every field, positionally, at half the cost of its ``__init__``."""
_state_columns = tuple(attrgetter(name) for name in _SLOT_FIELDS[1:])


def _build_slots(
    step_ids: tuple[str, ...], touched: list[int], slots: list[_SlotState | None]
) -> list[StepSlot]:
    """The touched slots' new ``StepSlot``s, in ``touched`` order; what only holds in one status is
    cleared in the others first (a lease while running, the wait while suspended)."""
    states: list[_SlotState] = []
    running, suspended = StepStatus.RUNNING, StepStatus.SUSPENDED
    for index in touched:
        state = slots[index]
        assert state is not None
        status = state.status
        if status is not running:
            state.lease_until = None
        if status is not suspended:
            state.suspended_until = state.waiting_for = None
            state.resumable = False
        state.errors = tuple(state.errors)  # type: ignore[assignment]
        states.append(state)
    count = len(states)
    if count < _COLUMNS_FROM:  # an engine's append touches one slot or two: no columns for those
        return [
            _new_slot(
                step_ids[index],
                s.status,
                s.outputs,
                s.fingerprint,
                s.retry_count,
                s.errors,  # (a tuple now)
                s.attempts,
                s.not_before,
                s.lease_until,
                s.suspended_until,
                s.waiting_for,
                s.resumable,
                s.started_version,
            )
            for index, s in zip(touched, states, strict=True)
        ]
    return _new_slots(
        count,
        [step_ids[index] for index in touched],
        *[map(column, states) for column in _state_columns],
    )
