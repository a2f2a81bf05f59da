"""The records of an engine flow as a pure projection of its event log (SPEC 9.1).

``project_flow(instance, definition, events)`` turns a replayed flow and the events behind it into
its run and stage rows. The engine's recorder calls it after every append with the events just
appended (the store merges them in with ``records.merge_run``/``merge_stage``'s rules);
``records rebuild`` calls it with all of the flow's events and replaces what is stored. Every
value comes from the instance, the definition or an event (times are events' ``ts``), never from
a clock, so the two give the same rows.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, NamedTuple
from uuid import UUID, uuid5

from chem_persistence_async.domain.canonical import dumps_normalized, normalize_json
from chem_persistence_async.domain.definitions import DefinitionRecord, definition_ref
from chem_persistence_async.domain.events import (
    FlowCompleted,
    FlowEvent,
    FlowInitialized,
    RetryScheduled,
    StepFailed,
    StepFinished,
    StepSignal,
    StepStarted,
    StepSuspended,
)
from chem_persistence_async.domain.flow import FlowDefinition, FlowInstance, StepSlot, StepStatus
from chem_persistence_async.domain.frozen import FrozenDict
from chem_persistence_async.domain.records import Json, Status
from chem_persistence_async.errors import DefinitionError

_STATUS_CHANGES = (StepStarted, StepFinished, StepFailed, RetryScheduled, StepSuspended)
"""The events that change a step's status (a ``StepSignal`` does not)."""

_SLOT_STATUS = {
    StepStatus.FINISHED: Status.COMPLETED,
    StepStatus.FAILED: Status.FAILED,
    StepStatus.RUNNING: Status.RUNNING,
    StepStatus.PENDING: Status.PENDING,
    StepStatus.SUSPENDED: Status.SUSPENDED,
}
"""SPEC 9.1's mapping: a step waiting for a retry is ``pending`` again, a step that failed for good
is ``failed``, a step waiting for a time or a signal is ``suspended``."""


class RunProjection(NamedTuple):
    """A run's row as projected. The projections are named tuples, not frozen dataclasses: one is
    made per run and per stage at every recorded append, and a frozen dataclass costs ~7x to build
    (5.5 vs 0.8 µs for a stage, measured)."""

    run_id: UUID
    workflow_id: str
    """``name@hash`` of the definition: which version of the workflow ran."""
    workflow_name: str
    workflow_type: str
    status: Status
    input: Json
    output: Json | None
    config: Json
    flow_version: int
    created_at: datetime | None
    """The ``FlowInitialized``'s time, when these events hold it."""
    started_at: datetime | None
    """The first ``StepStarted``'s time among these events."""
    completed_at: datetime | None
    """The ``FlowCompleted``'s (or the failing ``StepFailed``'s) time, when among these events."""
    previous_version: int = 0
    """The flow's version before these events: records stored at it need only the touched stages."""
    stored: bool = False
    """Whether the writer knows the stored records are at ``previous_version`` (its own last
    append left them there): the run and every stage row exist, so a store may update just what
    can change (``project_flow``'s ``named_only``)."""


class StageProjection(NamedTuple):
    id: UUID
    """Made from the flow id and step id (``stage_record_id``): a rebuild finds the same ids."""
    stage_id: str
    stage_name: str
    stage_number: int
    status: Status
    config: Json
    output_data: Json | None
    metrics: Json
    error_message: str | None
    next_poll_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    touched: bool = True
    """Whether the events name this step (or start the flow): only such stages can have changed,
    so only they are written, unless the stored records are behind these events."""

    @property
    def execution_group(self) -> int:
        """The engine runs one step after the other: each step is its own group."""
        return self.stage_number


class FlowProjection(NamedTuple):
    run: RunProjection
    stages: tuple[StageProjection, ...]


APPEND_TIME = datetime(1, 1, 1, tzinfo=UTC)
"""Stands for the time of an append not yet made, in a projection computed before it: the events'
``ts`` come from the store when they are written (one time for the whole append), so the engine
projects provisional events carrying this instead, and the store puts in the time it wrote them at."""


def at_append_time(projection: FlowProjection, ts: datetime) -> FlowProjection:
    """``projection`` (computed on provisional events) with ``APPEND_TIME`` replaced by ``ts``."""

    def at(value: datetime | None) -> datetime | None:
        return ts if value == APPEND_TIME else value

    run = projection.run
    return FlowProjection(
        run._replace(
            created_at=at(run.created_at),
            started_at=at(run.started_at),
            completed_at=at(run.completed_at),
        ),
        tuple(
            stage._replace(started_at=at(stage.started_at), completed_at=at(stage.completed_at))
            if APPEND_TIME in (stage.started_at, stage.completed_at)
            else stage  # (most stages: the append did not touch them)
            for stage in projection.stages
        ),
    )


@lru_cache(maxsize=16_384)
def stage_record_id(flow_id: UUID, step_id: str) -> UUID:
    """The id of an engine stage's record: the same for every writer and every rebuild (cached:
    every append of a flow projects all of its stages, and a uuid5 costs a hash)."""
    return uuid5(flow_id, step_id)


def run_status(instance: FlowInstance) -> Status:
    """A flow's run status: completed, failed for good, under way (a step started), or pending."""
    if instance.completed:
        return Status.COMPLETED
    if instance.failed:
        return Status.FAILED
    if instance.suspended:
        return Status.SUSPENDED
    if any(slot.attempts or slot.status is not StepStatus.PENDING for slot in instance.steps):
        return Status.RUNNING
    return Status.PENDING


def project_flow(
    instance: FlowInstance,
    definition: FlowDefinition,
    events: Sequence[FlowEvent],
    *,
    named_only: bool = False,
) -> FlowProjection:
    """The run and stage rows of ``instance`` (the flow right after ``events``): what the state
    says, and the times ``events`` carry (all of the log's for a rebuild, the new ones otherwise).

    With ``named_only``, only the stages ``events`` name (for a writer that knows the stored
    records are at the version before ``events``: the others are stored as they are, and
    projecting every stage at every append made a long flow's records quadratic)."""
    flow_id = instance.flow_id
    created_at: datetime | None = None
    flow_completed_at: datetime | None = None
    first_start: dict[int, datetime] = {}
    last_change: dict[int, datetime] = {}
    named: set[int] = set()
    for event in events:
        kind = event.kind
        if isinstance(kind, _STATUS_CHANGES):
            index = kind.step_index
            if isinstance(kind, StepStarted) and index not in first_start:
                first_start[index] = event.ts
            last_change[index] = event.ts
            named.add(index)
        elif isinstance(kind, FlowInitialized):
            created_at = event.ts
        elif isinstance(kind, FlowCompleted):
            flow_completed_at = event.ts
        elif isinstance(kind, StepSignal):
            named.add(kind.step_index)
    everything = created_at is not None

    shape = _shape(definition)
    stages = []
    failed_at: datetime | None = None
    for index, slot in enumerate(instance.steps):
        if named_only and not everything and index not in named:
            continue
        status = _SLOT_STATUS[slot.status]
        completed = last_change.get(index) if status in (Status.COMPLETED, Status.FAILED) else None
        if status is Status.FAILED and failed_at is None:
            failed_at = completed
        name, config = shape[index]
        stages.append(
            StageProjection(
                id=stage_record_id(flow_id, slot.step_id),
                stage_id=slot.step_id,
                stage_name=name,
                stage_number=index,
                status=status,
                config=config,
                output_data=_output(slot),
                metrics=_metrics(slot.attempts, slot.retry_count, _waiting_for(slot)),
                error_message=slot.errors[-1].error_message if slot.errors else None,
                next_poll_at=_next_poll(slot),
                started_at=first_start.get(index),
                completed_at=completed,
                touched=everything or index in named,
            )
        )

    status = run_status(instance)
    output = None
    if instance.completed:
        last = instance.steps[-1].outputs if instance.steps else ()
        output = _json({"fingerprint": instance.fingerprint, "artifacts": list(last)})
    run = RunProjection(
        run_id=flow_id,
        workflow_id=definition_ref(definition),
        workflow_name=definition.name,
        workflow_type=definition.name,
        status=status,
        input=_input_json(instance.inputs),
        output=output,
        config=_run_config(definition),
        flow_version=instance.version,
        created_at=created_at,
        started_at=min(first_start.values(), default=None),
        completed_at=flow_completed_at if status is Status.COMPLETED else failed_at,
        previous_version=instance.version - len(events),
        stored=named_only and not everything,
    )
    return FlowProjection(run, tuple(stages))


def _waiting_for(slot: StepSlot) -> str | None:
    return slot.waiting_for if slot.status is StepStatus.SUSPENDED else None


@lru_cache(maxsize=1024)
def _metrics(attempts: int, retry_count: int, waiting_for: str | None) -> Json:
    """A stage's metrics (few distinct ones: cached, as every append projects every stage)."""
    metrics: dict[str, Any] = {"attempts": attempts, "retry_count": retry_count}
    if waiting_for is not None:
        metrics["waiting_for"] = waiting_for
    return _json(metrics)


def _next_poll(slot: StepSlot) -> datetime | None:
    """When the stage may run again: its retry's time, or the end of its suspension."""
    if slot.status is StepStatus.PENDING:
        return slot.not_before
    if slot.status is StepStatus.SUSPENDED:
        return slot.suspended_until
    return None


def _output(slot: StepSlot) -> Json | None:
    if slot.status is not StepStatus.FINISHED:
        return None
    return _finished_output(slot.outputs, slot.fingerprint)


@lru_cache(maxsize=4096)
def _finished_output(outputs: tuple[str, ...], fingerprint: str | None) -> Json:
    """A finished stage's output (cached: it is projected again with every later append)."""
    return _json({"artifacts": list(outputs), "fingerprint": fingerprint})


_INPUTS_KEPT = 64
_inputs_json: OrderedDict[int, tuple[FrozenDict, Json]] = OrderedDict()


def _input_json(inputs: Mapping[str, Any]) -> Json:
    """A run's input as JSON, made once per flow rather than at every append (a 120 KB input cost
    2.6 ms per append, measured). Only a ``FrozenDict`` is remembered: deeply read-only, it is the
    engine's kept flows' own, carried from one state of a flow to the next by identity. Entries
    are found by ``id`` and hold their inputs, so an id cannot be reused while remembered; the
    oldest of ``_INPUTS_KEPT`` is forgotten first."""
    if type(inputs) is not FrozenDict:
        return _json(dict(inputs))
    key = id(inputs)
    kept = _inputs_json.get(key)
    if kept is not None and kept[0] is inputs:
        return kept[1]
    made = _json(dict(inputs))
    _inputs_json[key] = (inputs, made)
    while len(_inputs_json) > _INPUTS_KEPT:
        _inputs_json.popitem(last=False)
    return made


def _json(value: Any) -> Json:
    normalized = normalize_json(value)
    return Json(normalized, dumps_normalized(normalized))


@lru_cache(maxsize=256)
def _run_config(definition: FlowDefinition) -> Json:
    return _json({"definition_hash": definition.hash, "steps": len(definition.steps)})


@lru_cache(maxsize=256)
def _shape(definition: FlowDefinition) -> tuple[tuple[str, Json], ...]:
    """Per step: its stage name (the step's class) and its config (its params), computed once per
    definition object."""
    return tuple((str(step["type"]), _json(step["params"])) for step in definition.describe())


# --- definitions known only by their record ---------------------------------------------------


async def _never_run(self: Any, ctx: Any) -> Any:
    raise DefinitionError(f"step {self.id!r} is known from the definition registry only: it cannot run")


def definition_from_record(record: DefinitionRecord) -> FlowDefinition:
    """A ``FlowDefinition`` equal to the registered one in name, step ids, types and params (so in
    hash): enough to replay and project the flows it ran, never to run a step. Raises
    ``DefinitionError`` when the record does not rebuild to its own hash."""
    steps = []
    for described in record.steps:
        type_name = str(described.get("type", "Step"))
        cls: type = type(type_name.rsplit(".", 1)[-1], (), {"run": _never_run})
        cls.__qualname__ = type_name
        step: Any = cls()
        step.id = described.get("id")
        step.params = described.get("params") or {}
        steps.append(step)
    definition = FlowDefinition(record.name, steps)
    if definition.hash != record.hash:
        raise DefinitionError(
            f"definition {record.name!r} ({record.hash[:12]}…) does not rebuild to its hash from its record"
        )
    return definition


DefinitionLookup = Callable[[str, str], FlowDefinition | None]
"""``(name, hash) -> definition`` (or ``None`` when unknown)."""
