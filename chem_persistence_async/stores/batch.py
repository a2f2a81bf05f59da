"""What both stores do before and after the database: validate input, encode it, decode rows.

Sharing this is what keeps the two backends' observable behaviour identical: bad input is refused
here, before either backend writes anything, and both decode stored payloads the same way.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from pydantic import ValidationError

from chem_persistence_async.domain.artifacts import Artifact
from chem_persistence_async.domain.canonical import canonical_json, sha256_hex
from chem_persistence_async.domain.errors import (
    ArtifactHashMismatchError,
    CorruptEventError,
    InvalidEventError,
    InvalidExpectedVersionError,
    InvalidFlowIdError,
    InvalidInputError,
    MissingArtifactError,
    PayloadTooLargeError,
    UnlistedArtifactError,
)
from chem_persistence_async.domain.events import (
    FlowEvent,
    FlowEventKind,
    StepFailed,
    StepFinished,
    is_event_kind,
    kind_from_json,
    kind_to_payload,
    kinds_from_json,
)
from chem_persistence_async.domain.failures import ErrorClass, StepExecutionError

DEFAULT_MAX_PAYLOAD_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class StoreLimits:
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    store_artifacts: bool = True


@dataclass(frozen=True, slots=True)
class ErrorRow:
    step_id: str
    attempt_number: int
    error_class: str
    error_message: str
    details: bytes | None
    retry_count: int
    max_retries: int


@dataclass(frozen=True, slots=True)
class PreparedEvent:
    event_id: UUID
    kind: FlowEventKind
    event_type: str
    payload: bytes
    error: ErrorRow | None


@dataclass(frozen=True, slots=True)
class PreparedArtifact:
    ordinal: int
    """1-based position in the batch of the StepFinished that lists it."""
    artifact: Artifact
    payload: bytes
    metadata: bytes | None


@dataclass(frozen=True, slots=True)
class AppendBatch:
    flow_id: UUID
    events: tuple[PreparedEvent, ...]
    artifacts: tuple[PreparedArtifact, ...]
    unpassed_outputs: tuple[str, ...]
    """Output hashes listed with no artifact passed: they must be stored already."""
    expected_version: int | None

    def refuse_missing(self, missing: Sequence[str]) -> None:
        """Raise if any output listed with no artifact passed is not stored either."""
        if missing:
            raise MissingArtifactError(
                "outputs listed with no artifact passed and none stored: "
                + ", ".join(h[:16] + "…" for h in missing)
            )

    def refuse_reused_ids(self, stored_flow_ids: Sequence[UUID]) -> None:
        """Raise unless the already-stored events found for these ids are exactly this batch's."""
        if len(stored_flow_ids) != len(self.events) or any(f != self.flow_id for f in stored_flow_ids):
            raise InvalidInputError(
                f"some of these event ids are already stored with other events ({len(stored_flow_ids)} of "
                f"{len(self.events)} found): event ids must not be reused"
            )

    def events_for(self, rows: Iterable[tuple[UUID, int, int, datetime]]) -> list[FlowEvent]:
        """Pair stored ``(event_id, seq, flow_version, ts)`` rows with this batch's kinds."""
        fid = self.flow_id
        if len(self.events) == 1:
            event = self.events[0]
            return [FlowEvent(seq, fid, version, ts, event.kind, eid) for eid, seq, version, ts in rows]
        kinds = {event.event_id: event.kind for event in self.events}
        events = [FlowEvent(seq, fid, version, ts, kinds[eid], eid) for eid, seq, version, ts in rows]
        events.sort(key=lambda e: e.flow_version)
        return events


def to_flow_id(value: object) -> UUID:
    if isinstance(value, UUID):
        return value
    if isinstance(value, str):
        try:
            return UUID(value)
        except ValueError:
            pass
    raise InvalidFlowIdError(f"flow id must be a UUID, got {type(value).__name__} {value!r:.60}")


def check_expected_version(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidExpectedVersionError(f"expected_version must be None or an int >= 0, got {value!r:.40}")
    return value


def prepare_append(
    flow_id: object,
    kinds: Sequence[object],
    *,
    artifacts: Iterable[object],
    expected_version: object,
    event_ids: Sequence[UUID] | None,
    limits: StoreLimits,
) -> AppendBatch:
    """Validate and encode one append; raises an ``InvalidInputError`` before anything is written."""
    fid = to_flow_id(flow_id)
    expected = check_expected_version(expected_version)
    if isinstance(kinds, str | bytes) or not isinstance(kinds, Sequence):
        raise InvalidEventError("kinds must be a sequence of FlowEventKind")
    if event_ids is not None:
        if len(event_ids) != len(kinds) or not all(isinstance(e, UUID) for e in event_ids):
            raise InvalidInputError("event_ids must be one UUID per kind")
        if len(set(event_ids)) != len(event_ids):
            raise InvalidInputError("event_ids must be distinct")

    events: list[PreparedEvent] = []
    listed: dict[str, int] = {}
    payloads: list[bytes] = []
    for index, kind in enumerate(kinds):
        if not is_event_kind(kind):
            raise InvalidEventError(
                f"expected a FlowEventKind (FlowInitialized, StepStarted, ...), got {type(kind).__name__}"
            )
        payload = kind_to_payload(kind)  # type: ignore[arg-type]
        _check_size(payload, f"event {index} ({kind.event_type})", limits)  # type: ignore[attr-defined]
        payloads.append(payload)
    _check_decodable(payloads)
    for index, (kind, payload) in enumerate(zip(kinds, payloads, strict=True)):
        error = None
        if isinstance(kind, StepFailed):
            error = ErrorRow(
                step_id=kind.step_id,
                attempt_number=kind.attempt,
                error_class=kind.error.error_class.value,
                error_message=kind.error.message,
                details=None if kind.error.details is None else canonical_json(kind.error.details),
                retry_count=kind.retry_count,
                max_retries=kind.max_retries,
            )
        elif isinstance(kind, StepFinished):
            for output in kind.outputs:
                listed.setdefault(output, index + 1)
        events.append(
            PreparedEvent(
                event_id=event_ids[index] if event_ids is not None else uuid4(),
                kind=kind,  # type: ignore[arg-type]
                event_type=kind.event_type,  # type: ignore[attr-defined]
                payload=payload,
                error=error,
            )
        )

    prepared: dict[str, PreparedArtifact] = {}
    for artifact in artifacts:
        if not isinstance(artifact, Artifact):
            raise InvalidInputError(f"artifacts must be Artifact objects, got {type(artifact).__name__}")
        payload = canonical_json(artifact.payload)
        if not _hash_matches(artifact, payload):
            raise ArtifactHashMismatchError(
                f"artifact {artifact.hash[:16]}… does not match its content (kind {artifact.kind!r})"
            )
        if artifact.hash not in listed:
            raise UnlistedArtifactError(
                f"artifact {artifact.hash[:16]}… is not listed in the outputs of any StepFinished here"
            )
        if artifact.hash in prepared:
            continue
        metadata = None if artifact.metadata is None else canonical_json(artifact.metadata)
        _check_size(payload, f"artifact {artifact.hash[:16]}…", limits, extra=len(metadata or b""))
        prepared[artifact.hash] = PreparedArtifact(listed[artifact.hash], artifact, payload, metadata)

    unpassed = tuple(h for h in listed if h not in prepared) if limits.store_artifacts else ()
    return AppendBatch(
        flow_id=fid,
        events=tuple(events),
        artifacts=tuple(prepared.values()) if limits.store_artifacts else (),
        unpassed_outputs=unpassed,
        expected_version=expected,
    )


def _hash_matches(artifact: Artifact, payload: bytes) -> bool:
    """``artifact.content_matches()`` from its canonical payload bytes, without normalising twice:
    the canonical JSON of ``{"kind": k, "payload": p}`` is these pieces in this (sorted) order."""
    document = b'{"kind":' + canonical_json(artifact.kind) + b',"payload":' + payload + b"}"
    return sha256_hex(document) == artifact.hash


def _check_decodable(payloads: list[bytes]) -> None:
    """Validate what would be stored, in one call: ``model_construct`` and subclasses skip validation,
    and a row that cannot be read back must never be written."""
    if not payloads:
        return
    try:
        kinds_from_json(payloads)
    except ValidationError as exc:
        error = exc.errors()[0]
        index = error["loc"][0] if error["loc"] else "?"
        raise InvalidEventError(f"event {index} is malformed: {error['msg']}") from None


def _check_size(payload: bytes, what: str, limits: StoreLimits, extra: int = 0) -> None:
    size = len(payload) + extra
    if size > limits.max_payload_bytes:
        raise PayloadTooLargeError(
            f"{what} is {size} bytes; the limit is {limits.max_payload_bytes} (max_payload_bytes)"
        )


EventRow = tuple[int, UUID, int, datetime, bytes]
"""``(seq, event_id, flow_version, ts, payload)`` as both backends keep it."""


def decode_events(flow_id: UUID, rows: Sequence[Any]) -> list[FlowEvent]:
    """Decode stored rows (``EventRow`` shaped) in one validator call; name the seq of a bad row."""
    if not rows:
        return []
    try:
        kinds = kinds_from_json([row[4] for row in rows])
    except (ValidationError, ValueError):
        kinds = [_decode_one(row) for row in rows]
    # ``FlowEvent`` is a frozen slotted dataclass with no ``__post_init__``: filling its slots
    # through their descriptors builds the same object at half the cost of its ``__init__``.
    new = object.__new__
    set_seq, set_flow, set_version, set_ts, set_kind, set_id = _EVENT_SLOT_SETTERS
    events: list[FlowEvent] = []
    append = events.append
    for row, kind in zip(rows, kinds, strict=True):
        event = new(FlowEvent)
        set_seq(event, row[0])
        set_flow(event, flow_id)
        set_version(event, row[2])
        set_ts(event, row[3])
        set_kind(event, kind)
        set_id(event, row[1])
        append(event)
    return events


_EVENT_SLOT_SETTERS = tuple(
    getattr(FlowEvent, name).__set__ for name in ("seq", "flow_id", "flow_version", "ts", "kind", "event_id")
)
if FlowEvent.__slots__ != ("seq", "flow_id", "flow_version", "ts", "kind", "event_id") or hasattr(
    FlowEvent, "__post_init__"
):  # pragma: no cover - a guard for whoever changes FlowEvent
    raise RuntimeError("decode_events fills FlowEvent's slots by hand: update it with FlowEvent")


def _decode_one(row: Any) -> FlowEventKind:
    try:
        return kind_from_json(row[4])
    except (ValidationError, ValueError) as exc:
        first = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
        raise CorruptEventError(row[0], first) from None


ErrorRecordRow = tuple[UUID, str, int, str, str | None, bytes | None, int, int, datetime, int | None]
"""``(flow_id, step_id, attempt_number, error_class, error_message, details, retry_count,
max_retries, ts, event_seq)``."""


def decode_error(row: Any) -> StepExecutionError:
    details = row[5]
    return StepExecutionError(
        flow_id=row[0],
        step_id=row[1],
        attempt_number=row[2],
        error_class=ErrorClass(row[3]),
        error_message=row[4],
        details=None if details is None else json.loads(details),
        retry_count=row[6],
        max_retries=row[7],
        ts=row[8],
        event_seq=row[9],
    )


def timeline_order(errors: Iterable[StepExecutionError]) -> list[StepExecutionError]:
    """Attempt order, then time; ties keep insertion order (``sorted`` is stable)."""
    return sorted(errors, key=lambda e: (e.attempt_number, e.ts))


def count_by_step_and_class(errors: Iterable[StepExecutionError]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for error in errors:
        per_step = counts.setdefault(error.step_id, {})
        per_step[error.error_class.value] = per_step.get(error.error_class.value, 0) + 1
    return counts
