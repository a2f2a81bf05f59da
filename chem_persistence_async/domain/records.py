"""Workflow records (SPEC 9.1): what an operator reads about runs, stages, logs and artifacts.

The vocabulary of reference design 004 in snake_case: ``Status``, ``LogLevel``, ``ArtifactType``
and the record types. Every value a caller passes is checked here, once, for every backend, before
anything is written (``check_*``, ``run_changes``, ``stage_changes``); and the rules that merge a
projection of the event log into stored rows (``merge_run``, ``merge_stage``) live here too, so the
in-memory backend applies them as written and the PostgreSQL statement mirrors them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final, TypeVar
from uuid import UUID

from chem_persistence_async.domain.canonical import dumps_normalized, normalize_json
from chem_persistence_async.domain.ids import (
    BIGINT_MAX,
    INT_MAX,
    check_aware,
    check_int,
    check_name,
    text_argument,
)
from chem_persistence_async.errors import (
    InvalidInputError,
    PayloadTooLargeError,
    UnknownStatusError,
    ValueOutOfRangeError,
)

MAX_WORKFLOW_ID_LENGTH: Final = 500
MAX_ARTIFACT_KEY_LENGTH: Final = 500
"""The ``workflow_artifacts.key`` column's limit (a CHECK): longer keys are refused before writing."""
DEFAULT_MAX_JSON_BYTES: Final = 8 * 1024 * 1024
"""The default limit of one JSON value (an artifact's data, a run's input...), as the event store's."""


class _UpperEnum(StrEnum):
    """A ``StrEnum`` of upper-case values that also takes its values in any case (``"failed"``)."""

    @classmethod
    def _missing_(cls, value: object) -> Any:
        if isinstance(value, str):
            return cls.__members__.get(value.upper())
        return None


class Status(_UpperEnum):
    """One status for runs and stages (reference design 004's unified ``Status``)."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUSPENDED = "SUSPENDED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    SKIPPED = "SKIPPED"


TERMINAL_STATUSES: Final = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED, Status.SKIPPED})
"""Statuses with a completion time; a projected row in any other status has none."""


class LogLevel(_UpperEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARN = "WARN"
    ERROR = "ERROR"


class ArtifactType(_UpperEnum):
    STAGE_OUTPUT = "STAGE_OUTPUT"
    ARTIFACT = "ARTIFACT"
    METADATA = "METADATA"


E = TypeVar("E", bound=_UpperEnum)


def check_enum(enum: type[E], value: object, what: str) -> E:
    """``value`` as a member of ``enum`` (a member, or its value in any case), else
    ``UnknownStatusError`` listing the valid values."""
    if isinstance(value, enum):
        return value
    if isinstance(value, str):
        try:
            return enum(value)
        except ValueError:
            pass
    valid = ", ".join(member.value for member in enum)
    raise UnknownStatusError(f"{what} must be one of {valid}; got {value!r:.60}")


def check_status(value: object, what: str = "status") -> Status:
    return check_enum(Status, value, what)


# --- records ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkflowRunRecord:
    """A run (design 004's ``WorkflowRunRecord``). For a flow run by the engine, ``id`` is the flow
    id and ``flow_version`` the last event the record reflects (``None`` for runs made by hand)."""

    id: UUID
    created_at: datetime
    updated_at: datetime
    workflow_id: str
    workflow_name: str
    workflow_type: str
    status: Status
    started_at: datetime | None
    completed_at: datetime | None
    duration: int | None
    """Milliseconds from ``started_at`` to ``completed_at``."""
    input: Any
    output: Any
    config: Any
    total_cost: float
    total_tokens: int
    priority: int
    flow_version: int | None = None


@dataclass(frozen=True, slots=True)
class WorkflowStageRecord:
    """A stage of a run (design 004's ``WorkflowStageRecord``); ``id`` is the record's own id,
    ``stage_id`` the stage's name within its run (a step id for the engine's flows)."""

    id: UUID
    created_at: datetime
    updated_at: datetime
    workflow_run_id: UUID
    stage_id: str
    stage_name: str
    stage_number: int
    execution_group: int
    status: Status
    started_at: datetime | None
    completed_at: datetime | None
    duration: int | None
    input_data: Any
    output_data: Any
    config: Any
    suspended_state: Any
    resume_data: Any
    next_poll_at: datetime | None
    poll_interval: int | None
    max_wait_until: datetime | None
    metrics: Any
    embedding_info: Any
    error_message: str | None


@dataclass(frozen=True, slots=True)
class WorkflowLogRecord:
    id: UUID
    created_at: datetime
    workflow_run_id: UUID | None
    workflow_stage_id: UUID | None
    level: LogLevel
    message: str
    metadata: Any


@dataclass(frozen=True, slots=True)
class WorkflowArtifactRecord:
    id: UUID
    created_at: datetime
    updated_at: datetime
    workflow_run_id: UUID
    workflow_stage_id: UUID | None
    key: str
    type: ArtifactType
    data: Any
    size: int
    """Bytes of the canonical JSON of ``data`` (what is stored)."""
    metadata: Any


def stage_order(stage: WorkflowStageRecord) -> tuple[int, int, datetime, UUID]:
    """How stages of a run are listed: execution group, then stage number (then creation, id)."""
    return (stage.execution_group, stage.stage_number, stage.created_at, stage.id)


def run_order(run: WorkflowRunRecord) -> tuple[datetime, UUID]:
    """How ``get_runs_by_status`` lists runs: oldest first, then by id."""
    return (run.created_at, run.id)


# --- checking what callers pass ---------------------------------------------------------------


class Unset:
    """The default of every optional update field: "leave it as it is" (``None`` sets NULL)."""

    _instance: Unset | None = None

    def __new__(cls) -> Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Final = Unset()


@dataclass(frozen=True, slots=True)
class Json:
    """A JSON value checked for storage: ``value`` as the database gives it back, ``data`` its
    canonical bytes (what is written; its length is an artifact's ``size``)."""

    value: Any
    data: bytes

    @classmethod
    def of(cls, value: Any, what: str, *, max_bytes: int = DEFAULT_MAX_JSON_BYTES) -> Json:
        normalized = normalize_json(value)
        data = dumps_normalized(normalized)
        if len(data) > max_bytes:
            raise PayloadTooLargeError(f"{what} is {len(data)} bytes of JSON; the limit is {max_bytes}")
        return cls(normalized, data)


def check_json(value: Any, what: str, *, max_bytes: int = DEFAULT_MAX_JSON_BYTES) -> Json:
    return Json.of(value, what, max_bytes=max_bytes)


def check_optional_json(value: Any, what: str, *, max_bytes: int = DEFAULT_MAX_JSON_BYTES) -> Json | None:
    """``None`` stays SQL NULL (not JSON ``null``), as in the design's optional JSON fields."""
    return None if value is None else Json.of(value, what, max_bytes=max_bytes)


def check_cost(value: object, what: str = "total_cost") -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInputError(f"{what} must be a number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ValueOutOfRangeError(f"{what} must be a finite number >= 0, got {value!r}")
    return number


def check_uuid(value: object, what: str) -> UUID:
    if isinstance(value, UUID):
        return value
    if isinstance(value, str):
        try:
            return UUID(value)
        except ValueError:
            pass
    raise InvalidInputError(f"{what} must be a UUID, got {type(value).__name__} {value!r:.60}")


def check_message(value: object, what: str, *, max_bytes: int = DEFAULT_MAX_JSON_BYTES) -> str:
    text = text_argument(value, what)
    if len(text) > max_bytes:
        raise PayloadTooLargeError(f"{what} is {len(text)} characters; the limit is {max_bytes}")
    return text


def _optional(check: Any) -> Any:
    def checked(value: object, what: str, **options: Any) -> Any:
        return None if value is None else check(value, what, **options)

    return checked


_RUN_FIELDS: Final[dict[str, Any]] = {
    "status": lambda v, w, **_: check_status(v, w),
    "started_at": lambda v, w, **_: _optional(check_aware)(v, w),
    "completed_at": lambda v, w, **_: _optional(check_aware)(v, w),
    "duration": lambda v, w, **_: _optional(check_int)(v, w, maximum=BIGINT_MAX),
    "output": lambda v, w, **o: check_optional_json(v, w, **o),
    "total_cost": lambda v, w, **_: check_cost(v, w),
    "total_tokens": lambda v, w, **_: check_int(v, w, maximum=BIGINT_MAX),
}
RUN_UPDATE_FIELDS: Final = tuple(_RUN_FIELDS)

_STAGE_FIELDS: Final[dict[str, Any]] = {
    "status": lambda v, w, **_: check_status(v, w),
    "started_at": lambda v, w, **_: _optional(check_aware)(v, w),
    "completed_at": lambda v, w, **_: _optional(check_aware)(v, w),
    "duration": lambda v, w, **_: _optional(check_int)(v, w, maximum=BIGINT_MAX),
    "output_data": lambda v, w, **o: check_optional_json(v, w, **o),
    "config": lambda v, w, **o: check_optional_json(v, w, **o),
    "suspended_state": lambda v, w, **o: check_optional_json(v, w, **o),
    "resume_data": lambda v, w, **o: check_optional_json(v, w, **o),
    "next_poll_at": lambda v, w, **_: _optional(check_aware)(v, w),
    "poll_interval": lambda v, w, **_: _optional(check_int)(v, w),
    "max_wait_until": lambda v, w, **_: _optional(check_aware)(v, w),
    "metrics": lambda v, w, **o: check_optional_json(v, w, **o),
    "embedding_info": lambda v, w, **o: check_optional_json(v, w, **o),
    "error_message": lambda v, w, **o: _optional(check_message)(v, w, **o),
}
STAGE_UPDATE_FIELDS: Final = tuple(_STAGE_FIELDS)


def _changes(
    table: Mapping[str, Any], fields: Mapping[str, Any], kind: str, max_bytes: int
) -> dict[str, Any]:
    unknown = sorted(set(fields) - set(table))
    if unknown:
        raise InvalidInputError(f"unknown {kind} field(s): {', '.join(unknown)}; known: {', '.join(table)}")
    return {
        name: table[name](value, name, max_bytes=max_bytes)
        for name, value in fields.items()
        if value is not UNSET
    }


def run_changes(fields: Mapping[str, Any], *, max_bytes: int = DEFAULT_MAX_JSON_BYTES) -> dict[str, Any]:
    """``update_run``'s fields, checked: column -> value (``Json`` for JSON columns); UNSET ones
    are left out (unchanged)."""
    return _changes(_RUN_FIELDS, fields, "run", max_bytes)


def stage_changes(fields: Mapping[str, Any], *, max_bytes: int = DEFAULT_MAX_JSON_BYTES) -> dict[str, Any]:
    """``update_stage``'s fields, checked (see ``run_changes``)."""
    return _changes(_STAGE_FIELDS, fields, "stage", max_bytes)


@dataclass(frozen=True, slots=True)
class NewRun:
    """``create_run``'s arguments, checked."""

    id: UUID
    workflow_id: str
    workflow_name: str
    workflow_type: str
    input: Json
    config: Json
    priority: int

    @classmethod
    def checked(
        cls,
        *,
        id: object,
        workflow_id: object,
        workflow_name: object,
        workflow_type: object,
        input: object,
        config: object,
        priority: object,
        max_bytes: int = DEFAULT_MAX_JSON_BYTES,
    ) -> NewRun:
        return cls(
            check_uuid(id, "id"),
            check_name(workflow_id, "workflow_id", max_length=MAX_WORKFLOW_ID_LENGTH),
            check_name(workflow_name, "workflow_name"),
            check_name(workflow_type, "workflow_type"),
            check_json(input, "input", max_bytes=max_bytes),
            check_json({} if config is None else config, "config", max_bytes=max_bytes),
            check_int(priority, "priority", minimum=-INT_MAX - 1),
        )


@dataclass(frozen=True, slots=True)
class NewStage:
    """``create_stage``'s and ``upsert_stage``'s arguments, checked. ``status``, ``started_at``,
    ``config`` and ``input_data`` may be UNSET: defaults on create, unchanged on upsert."""

    workflow_run_id: UUID
    stage_id: str
    stage_name: str
    stage_number: int
    execution_group: int
    status: Status | Unset
    started_at: datetime | Unset | None
    config: Json | Unset | None
    input_data: Json | Unset | None

    @classmethod
    def checked(
        cls,
        *,
        workflow_run_id: object,
        stage_id: object,
        stage_name: object,
        stage_number: object,
        execution_group: object,
        status: object = UNSET,
        started_at: object = UNSET,
        config: object = UNSET,
        input_data: object = UNSET,
        max_bytes: int = DEFAULT_MAX_JSON_BYTES,
    ) -> NewStage:
        return cls(
            check_uuid(workflow_run_id, "workflow_run_id"),
            check_name(stage_id, "stage_id"),
            check_name(stage_name, "stage_name"),
            check_int(stage_number, "stage_number"),
            check_int(execution_group, "execution_group"),
            UNSET if status is UNSET else check_status(status),
            UNSET if started_at is UNSET else _optional(check_aware)(started_at, "started_at"),
            UNSET if config is UNSET else check_optional_json(config, "config", max_bytes=max_bytes),
            UNSET
            if input_data is UNSET
            else check_optional_json(input_data, "input_data", max_bytes=max_bytes),
        )

    def given(self) -> dict[str, Any]:
        """The optional fields that were given (column -> value)."""
        fields = {
            "status": self.status,
            "started_at": self.started_at,
            "config": self.config,
            "input_data": self.input_data,
        }
        return {name: value for name, value in fields.items() if value is not UNSET}


@dataclass(frozen=True, slots=True)
class NewLog:
    workflow_run_id: UUID | None
    workflow_stage_id: UUID | None
    level: LogLevel
    message: str
    metadata: Json | None

    @classmethod
    def checked(
        cls,
        *,
        level: object,
        message: object,
        workflow_run_id: object = None,
        workflow_stage_id: object = None,
        metadata: object = None,
        max_bytes: int = DEFAULT_MAX_JSON_BYTES,
    ) -> NewLog:
        return cls(
            None if workflow_run_id is None else check_uuid(workflow_run_id, "workflow_run_id"),
            None if workflow_stage_id is None else check_uuid(workflow_stage_id, "workflow_stage_id"),
            check_enum(LogLevel, level, "level"),
            check_message(message, "message", max_bytes=max_bytes),
            check_optional_json(metadata, "metadata", max_bytes=max_bytes),
        )


@dataclass(frozen=True, slots=True)
class NewArtifact:
    workflow_run_id: UUID
    key: str
    type: ArtifactType
    data: Json
    workflow_stage_id: UUID | None
    metadata: Json | None

    @property
    def size(self) -> int:
        return len(self.data.data)

    @classmethod
    def checked(
        cls,
        *,
        workflow_run_id: object,
        key: object,
        type: object,
        data: object,
        workflow_stage_id: object = None,
        metadata: object = None,
        max_bytes: int = DEFAULT_MAX_JSON_BYTES,
    ) -> NewArtifact:
        return cls(
            check_uuid(workflow_run_id, "workflow_run_id"),
            check_artifact_key(key),
            check_enum(ArtifactType, type, "type"),
            check_json(data, "artifact data", max_bytes=max_bytes),
            None if workflow_stage_id is None else check_uuid(workflow_stage_id, "workflow_stage_id"),
            check_optional_json(metadata, "metadata", max_bytes=max_bytes),
        )


def check_artifact_key(value: object) -> str:
    return check_name(value, "artifact key", max_length=MAX_ARTIFACT_KEY_LENGTH)


def stage_output_key(run_id: UUID, workflow_type: str, stage_id: str) -> str:
    """Where ``save_stage_output`` keeps a stage's output (the design's key layout)."""
    return f"workflow-v2/{workflow_type}/{run_id}/{stage_id}/output.json"


def check_limit(value: object, what: str = "limit") -> int:
    return check_int(value, what, minimum=1, maximum=1_000_000)


# --- merging a projection into stored rows -------------------------------------------------------


def duration_ms(started: datetime | None, completed: datetime | None) -> int | None:
    """Whole milliseconds from ``started`` to ``completed`` (floored), as the database computes it
    (``chem_duration_ms``); None when either is missing or ``completed`` precedes ``started`` (a
    time moved by hand: a flow's next append must not fail on a negative duration)."""
    if started is None or completed is None or completed < started:
        return None
    return (completed - started) // timedelta(milliseconds=1)


def merged_times(
    status: Status,
    old_started: datetime | None,
    old_completed: datetime | None,
    new_started: datetime | None,
    new_completed: datetime | None,
    *,
    replace: bool,
) -> tuple[datetime | None, datetime | None, int | None]:
    """Start, completion and duration of a row after a projection of some events is merged in.

    A projection of a few new events knows only the times those events carry: the first start is
    kept once known, the completion is the terminal event's time (kept while the status stays
    terminal, cleared when it is not). With ``replace`` (a projection of the whole log) the new
    values stand as they are. ``WorkflowRecords`` writes the same rules in SQL.
    """
    started = new_started if replace else (old_started if old_started is not None else new_started)
    if status not in TERMINAL_STATUSES:
        completed = None
    elif replace:
        completed = new_completed
    else:
        completed = new_completed if new_completed is not None else old_completed
    return started, completed, duration_ms(started, completed)
