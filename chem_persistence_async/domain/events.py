"""Flow events: the ``FlowEventKind`` discriminated union and the ``FlowEvent`` record.

Variants are frozen pydantic models (validated once, on the way in); ``FlowEvent`` is a slotted
dataclass because reading is a hot path and the kind inside it is already validated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    TypeAdapter,
)
from pydantic_core import PydanticSerializationError

from chem_persistence_async.domain.canonical import already_normal, dumps_normalized, encodable
from chem_persistence_async.domain.failures import StepErrorInfo
from chem_persistence_async.domain.ids import INT_MAX
from chem_persistence_async.errors import InvalidEventError

Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
StepId = Annotated[str, StringConstraints(min_length=1, max_length=200)]
NonNegativeInt = Annotated[int, Field(ge=0, le=INT_MAX)]
PositiveInt = Annotated[int, Field(ge=1, le=INT_MAX)]
"""Every integer field of an event fits PostgreSQL's ``INT`` (attempt numbers, retry counts and
versions are ``INT`` columns, and the others are compared with them): its model refuses one that
does not, as it refuses one below its lower bound (see ``ValueOutOfRangeError``)."""


class _Kind(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    code: ClassVar[str]


class FlowInitialized(_Kind):
    code: ClassVar[str] = "I"
    event_type: Literal["flowinitialized"] = "flowinitialized"
    definition_name: str
    definition_hash: Sha256Hex
    step_count: NonNegativeInt
    inputs: dict[str, JsonValue] = Field(default_factory=dict)
    """The flow's inputs (``ctx.flow_inputs``); non-empty ones enter the flow fingerprint."""


class StepStarted(_Kind):
    code: ClassVar[str] = "S"
    event_type: Literal["stepstarted"] = "stepstarted"
    step_index: NonNegativeInt
    step_id: StepId
    attempt: PositiveInt
    lease_until: AwareDatetime | None = None
    """The starter's claim on the attempt: until then it is in progress, after it (with no outcome)
    it is lost. Never part of a fingerprint."""


class StepFinished(_Kind):
    code: ClassVar[str] = "F"
    event_type: Literal["stepfinished"] = "stepfinished"
    step_index: NonNegativeInt
    step_id: StepId
    outputs: tuple[Sha256Hex, ...] = ()
    fingerprint: Sha256Hex


class StepFailed(_Kind):
    code: ClassVar[str] = "X"
    event_type: Literal["stepfailed"] = "stepfailed"
    step_index: NonNegativeInt
    step_id: StepId
    attempt: PositiveInt
    error: StepErrorInfo
    retry_count: NonNegativeInt
    max_retries: NonNegativeInt
    fingerprint: Sha256Hex


class StepSignal(_Kind):
    code: ClassVar[str] = "G"
    event_type: Literal["stepsignal"] = "stepsignal"
    step_index: NonNegativeInt
    step_id: StepId
    signal: str
    data: JsonValue = None
    send_id: str | None = None
    """Set on a signal sent to the flow from outside (``engine.signal``); ``None`` on one a step
    emitted with its output."""


class StepSuspended(_Kind):
    """A step's attempt ended by waiting: until ``until``, or until the signal ``signal`` arrives,
    whichever comes first. Not a failure: it uses no retry."""

    code: ClassVar[str] = "W"
    event_type: Literal["stepsuspended"] = "stepsuspended"
    step_index: NonNegativeInt
    step_id: StepId
    attempt: PositiveInt
    until: AwareDatetime | None = None
    signal: str | None = None


class PropertyPreferenceAssigned(_Kind):
    code: ClassVar[str] = "P"
    event_type: Literal["propertypreferenceassigned"] = "propertypreferenceassigned"
    property_key: str
    policy_id: str
    params_hash: str
    rationale: str | None = None


class RetryScheduled(_Kind):
    code: ClassVar[str] = "R"
    event_type: Literal["retryscheduled"] = "retryscheduled"
    step_index: NonNegativeInt
    step_id: StepId
    retry_index: PositiveInt
    reason: str
    not_before: AwareDatetime | None = None


class FlowCompleted(_Kind):
    code: ClassVar[str] = "C"
    event_type: Literal["flowcompleted"] = "flowcompleted"
    flow_fingerprint: Sha256Hex


FlowEventKind = Annotated[
    FlowInitialized
    | StepStarted
    | StepFinished
    | StepFailed
    | StepSignal
    | PropertyPreferenceAssigned
    | RetryScheduled
    | FlowCompleted
    | StepSuspended,
    Field(discriminator="event_type"),
]

KIND_CLASSES: tuple[type[_Kind], ...] = (
    FlowInitialized,
    StepStarted,
    StepFinished,
    StepFailed,
    StepSignal,
    PropertyPreferenceAssigned,
    RetryScheduled,
    FlowCompleted,
    StepSuspended,
)
EVENT_TYPES: frozenset[str] = frozenset(cls.model_fields["event_type"].default for cls in KIND_CLASSES)

_KIND_ADAPTER: TypeAdapter[FlowEventKind] = TypeAdapter(FlowEventKind)
_KIND_LIST_ADAPTER: TypeAdapter[list[FlowEventKind]] = TypeAdapter(list[FlowEventKind])


def is_event_kind(value: object) -> bool:
    return isinstance(value, KIND_CLASSES)


_PLAIN_KINDS: frozenset[type[_Kind]] = frozenset(
    {StepStarted, StepFinished, PropertyPreferenceAssigned, RetryScheduled, FlowCompleted, StepSuspended}
)
"""Kinds with no free-form JSON (and no float) field: pydantic's own serialiser gives their stored form."""

_ESCAPED_NUL = b"\\u0000"


def kind_to_json(kind: _Kind) -> bytes:
    """The JSON of a kind: what is stored as the payload and what replay reads back.

    Kinds without free-form JSON are dumped from pydantic's serialiser directly; free-form JSON
    (``FlowInitialized.inputs``, ``StepSignal.data``, ``StepFailed.error.details``) goes through
    ``normalize_json`` so both backends normalise it as PostgreSQL would. Either way the bytes are
    canonical (sorted keys, compact separators, UTF-8). Anything PostgreSQL cannot store
    (``\\u0000``, a lone surrogate) takes the canonical path, which rejects it.
    """
    return _fast_json(kind, _serialize) or _canonical_kind(kind)


def _canonical_kind(kind: _Kind) -> bytes:
    """The canonical path. Free-form JSON is taken as the caller gave it, not from pydantic's JSON
    mode, which turns a lone surrogate in a key into U+FFFD and raises a builtin error for an int
    too long to print: each is refused here with the rule for every JSON value, and the nesting
    limit counts from the free-form value itself, not from the event around it."""
    free: tuple[str, ...] = ()
    exclude: Any = None
    value: Any = None
    if isinstance(kind, StepSignal):
        free, exclude, value = ("data",), {"data"}, kind.data
    elif isinstance(kind, FlowInitialized) and kind.inputs:
        free, exclude, value = ("inputs",), {"inputs"}, kind.inputs
    elif isinstance(kind, StepFailed) and kind.error.details is not None:
        free, exclude, value = ("error", "details"), {"error": {"details"}}, kind.error.details
    try:
        dumped = kind.__pydantic_serializer__.to_python(kind, mode="json", warnings=False, exclude=exclude)
    except PydanticSerializationError as exc:  # only a kind built without validation gets here
        raise InvalidEventError(f"{type(kind).__name__} cannot be serialised: {exc}") from None
    envelope = encodable(dumped)  # fresh dicts either way: pydantic built them
    if free:
        parent = envelope
        for name in free[:-1]:
            parent = parent[name]
        parent[free[-1]] = encodable(value, "$." + ".".join(free))
    return dumps_normalized(envelope)


def kind_to_payload(kind: _Kind) -> bytes:
    """What the stores write for a kind: ``kind_to_json`` up to key order, several times cheaper.

    A payload is never hashed and both backends store these same bytes (PostgreSQL's JSONB orders
    keys its own way anyway), so the sorting is skipped for kinds without free-form JSON; those
    with free-form JSON, and anything unusual, get ``kind_to_json``'s canonical form and checks.
    """
    return _fast_json(kind, _serialize_unsorted) or kind_to_json(kind)


def _fast_json(kind: _Kind, serialize: Callable[[_Kind], bytes]) -> bytes | None:
    """``serialize(kind)`` when its free-form JSON, if any, is already what JSONB gives back (a walk
    that copies nothing) and the result is storable, else None (the canonical path decides)."""
    cls = type(kind)
    if not (
        cls in _PLAIN_KINDS
        or (cls is FlowInitialized and _free_is_normal(kind.inputs))  # type: ignore[attr-defined]
        or (cls is StepFailed and _free_is_normal(kind.error.details))  # type: ignore[attr-defined]
        or (cls is StepSignal and (_plain_scalar(kind.data) or already_normal(kind.data)))  # type: ignore[attr-defined]
    ):
        return None
    try:
        data = serialize(kind)
    except (PydanticSerializationError, ValueError):  # UnicodeEncodeError is a ValueError
        return None
    return None if _ESCAPED_NUL in data else data


def _serialize(kind: _Kind) -> bytes:
    # Canonical (sorted keys, compact), without ``normalize_json``'s walk: these kinds hold only
    # validated strings, ints, datetimes and hashes. A NUL or a lone surrogate raises or is seen
    # by the caller, and the canonical path then rejects it with its clear message.
    return dumps_normalized(kind.__pydantic_serializer__.to_python(kind, mode="json", warnings=False))


def _serialize_unsorted(kind: _Kind) -> bytes:
    return kind.__pydantic_serializer__.to_json(kind, warnings=False)


def _free_is_normal(value: object) -> bool:
    return not value or already_normal(value)


def _plain_scalar(value: object) -> bool:
    t = type(value)
    return value is None or t is str or t is bool or (t is int and _INT64_LOW <= value <= _INT64_HIGH)  # type: ignore[operator]


_INT64_LOW, _INT64_HIGH = -(1 << 63), (1 << 63) - 1
"""A longer int goes to the canonical path, which counts its digits."""


def kind_from_json(data: bytes | str) -> FlowEventKind:
    return _KIND_ADAPTER.validate_json(data)


def kinds_from_json(payloads: Sequence[bytes] | Sequence[str]) -> list[FlowEventKind]:
    """Decode many payloads (all bytes, or all text) with one validator call (much faster than one
    call per row)."""
    if payloads and type(payloads[0]) is str:
        return _KIND_LIST_ADAPTER.validate_json("[" + ",".join(payloads) + "]")  # type: ignore[arg-type]
    return _KIND_LIST_ADAPTER.validate_json(b"[" + b",".join(payloads) + b"]")  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class FlowEvent:
    """One stored event. ``seq`` is global; ``flow_version`` counts 1, 2, 3... within the flow."""

    seq: int
    flow_id: UUID
    flow_version: int
    ts: datetime
    kind: FlowEventKind
    event_id: UUID

    @property
    def code(self) -> str:
        return self.kind.code

    @property
    def event_type(self) -> str:
        return self.kind.event_type
