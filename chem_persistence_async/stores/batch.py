"""What both stores do before and after the database: validate input, encode it, decode rows.

Sharing this is what keeps the two backends' observable behaviour identical: bad input is refused
here, before either backend writes anything, and both decode stored payloads the same way.
"""

from __future__ import annotations

import gc
import json
import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from itertools import repeat
from operator import itemgetter
from typing import Any, cast
from uuid import UUID, SafeUUID

from pydantic import BaseModel, ValidationError

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
    KIND_CLASSES,
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

    def events_at(self, base: int, rows: Sequence[Any]) -> list[FlowEvent]:
        """This batch's events stored at versions ``base + 1, base + 2, ...``, from one
        ``(flow_version, seq, ts)`` row each (any order): no event ids to read back and match."""
        count = len(rows)
        if count != len(self.events):
            raise ValueError(f"{count} rows for {len(self.events)} events")
        versions = range(base + 1, base + count + 1)
        if any(row[0] != version for row, version in zip(rows, versions, strict=True)):
            rows = sorted(rows, key=_version_first)
        with _collector_paused() if count > _PAUSE_GC_WRITING_ABOVE else nullcontext():
            return _build_events(
                count,
                map(_row_seq, rows),
                repeat(self.flow_id, count),
                versions,
                map(_row_ts, rows),
                [e.kind for e in self.events],
                [e.event_id for e in self.events],
            )


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


_version_first = itemgetter(0)
_row_seq = itemgetter(1)
_row_ts = itemgetter(2)

_PAUSE_GC_WRITING_ABOVE = 500
"""Prepare or pair more events than this with the cyclic garbage collector paused: validation
builds (and drops) a model per event and none of it forms a cycle, while the collections that
allocation sets off scan the whole young heap each time (see ``decode_events``)."""


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
    if type(kinds) is list and len(kinds) > _PAUSE_GC_WRITING_ABOVE and gc.isenabled():
        with _collector_paused():
            return prepare_append(
                flow_id,
                kinds,
                artifacts=artifacts,
                expected_version=expected_version,
                event_ids=event_ids,
                limits=limits,
            )
    fid = flow_id if type(flow_id) is UUID else to_flow_id(flow_id)
    expected = None if expected_version is None else check_expected_version(expected_version)
    if type(kinds) is not list and (isinstance(kinds, str | bytes) or not isinstance(kinds, Sequence)):
        raise InvalidEventError("kinds must be a sequence of FlowEventKind")
    if event_ids is not None:
        if len(event_ids) != len(kinds) or not all(isinstance(e, UUID) for e in event_ids):
            raise InvalidInputError("event_ids must be one UUID per kind")
        if len(set(event_ids)) != len(event_ids):
            raise InvalidInputError("event_ids must be distinct")

    payloads: list[bytes] = []
    max_bytes = limits.max_payload_bytes
    for index, kind in enumerate(kinds):
        if type(kind) not in _EXACT_KINDS and not is_event_kind(kind):
            raise InvalidEventError(
                f"expected a FlowEventKind (FlowInitialized, StepStarted, ...), got {type(kind).__name__}"
            )
        payload = kind_to_payload(kind)  # type: ignore[arg-type]
        if len(payload) > max_bytes:
            _check_size(payload, f"event {index} ({kind.event_type})", limits)  # type: ignore[attr-defined]
        payloads.append(payload)
    _check_decodable(payloads, kinds)

    events: list[PreparedEvent] = []
    listed: dict[str, int] = {}
    ids = new_event_ids(len(kinds)) if event_ids is None else event_ids
    valid: Sequence[FlowEventKind] = kinds  # type: ignore[assignment]  # checked above
    for index, kind in enumerate(valid):
        error = None
        cls = type(kind)
        exact = cls in _EXACT_KINDS  # ``isinstance`` on a pydantic class is an ABC check: slow
        if cls is StepFailed or (not exact and isinstance(kind, StepFailed)):
            failed = cast(StepFailed, kind)
            error = ErrorRow(
                step_id=failed.step_id,
                attempt_number=failed.attempt,
                error_class=failed.error.error_class.value,
                error_message=failed.error.message,
                details=None if failed.error.details is None else canonical_json(failed.error.details),
                retry_count=failed.retry_count,
                max_retries=failed.max_retries,
            )
        elif cls is StepFinished or (not exact and isinstance(kind, StepFinished)):
            for output in cast(StepFinished, kind).outputs:
                listed.setdefault(output, index + 1)
        events.append(PreparedEvent(ids[index], kind, kind.event_type, payloads[index], error))

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

    store_artifacts = limits.store_artifacts
    unpassed = tuple(h for h in listed if h not in prepared) if listed and store_artifacts else ()
    return AppendBatch(
        fid,
        tuple(events),
        tuple(prepared.values()) if prepared and store_artifacts else (),
        unpassed,
        expected,
    )


_EXACT_KINDS: frozenset[type] = frozenset(KIND_CLASSES)
"""The kind classes themselves (not subclasses): validated by their own validator when alone."""


def new_event_ids(count: int) -> list[UUID]:
    """``count`` random (version 4) UUIDs from one read of the OS random source: ``uuid4()`` reads
    it once per id, and ``UUID.__init__`` costs as much again."""
    if count == 1:
        one = object.__new__(UUID)
        _SET_UUID_INT(one, int.from_bytes(os.urandom(16)) & _UUID4_CLEAR | _UUID4_SET)
        _SET_UUID_SAFE(one, _SAFE_UNKNOWN)
        return [one]
    data = os.urandom(16 * count)
    ints = [int.from_bytes(data[i : i + 16]) & _UUID4_CLEAR | _UUID4_SET for i in range(0, 16 * count, 16)]
    ids = list(map(object.__new__, repeat(UUID, count)))
    deque(map(_SET_UUID_INT, ids, ints), maxlen=0)
    deque(map(_SET_UUID_SAFE, ids, repeat(_SAFE_UNKNOWN, count)), maxlen=0)
    return ids


_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (4 << 76) | (0x8000 << 48)
"""What ``UUID(bytes=..., version=4)`` does to the random bits: version 4, RFC 4122 variant."""
_SET_UUID_INT = UUID.__dict__["int"].__set__
_SET_UUID_SAFE = UUID.__dict__["is_safe"].__set__
_SAFE_UNKNOWN = SafeUUID.unknown


def _hash_matches(artifact: Artifact, payload: bytes) -> bool:
    """``artifact.content_matches()`` from its canonical payload bytes, without normalising twice:
    the canonical JSON of ``{"kind": k, "payload": p}`` is these pieces in this (sorted) order."""
    document = b'{"kind":' + canonical_json(artifact.kind) + b',"payload":' + payload + b"}"
    return sha256_hex(document) == artifact.hash


def _check_decodable(payloads: list[bytes], kinds: Sequence[object]) -> None:
    """Validate what would be stored: ``model_construct`` and subclasses skip validation, and a row
    that cannot be read back must never be written. One validator call: the kind's own for one
    event of a kind class, else the list adapter that reading uses."""
    if not payloads:
        return
    alone = len(payloads) == 1 and type(kinds[0]) in _EXACT_KINDS
    try:
        if alone:
            model: type[BaseModel] = type(kinds[0])  # type: ignore[assignment]  # an exact kind class
            model.__pydantic_validator__.validate_json(payloads[0])
        else:
            kinds_from_json(payloads)
    except ValidationError as exc:
        error = exc.errors()[0]
        index = 0 if alone else error["loc"][0] if error["loc"] else "?"
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
    """Decode stored rows (``EventRow`` shaped), ``_DECODE_CHUNK`` rows per validator call; name the
    seq of a bad row.

    More rows than one chunk are decoded with the cyclic garbage collector's automatic runs paused.
    Each event allocates three tracked objects (the event, its kind, the kind's set of fields) and
    no cycle, yet the heap a large batch grows sets off full collections, each over the whole heap,
    that cost more than the decoding itself (100,000 events: 5.2 µs per event with them, 2.1
    without). The two young generations are still collected after each chunk, the work the
    collector does on any new objects (left for later, it would be one cold pass over all of them);
    only the full collection they make due is left for later, once, as after any burst of allocation.
    """
    count = len(rows)
    if count <= _DECODE_CHUNK:
        return _decode_chunk(flow_id, rows) if count else []
    events: list[FlowEvent] = []
    with _collector_paused() as paused:
        for start in range(0, count, _DECODE_CHUNK):
            events += _decode_chunk(flow_id, rows[start : start + _DECODE_CHUNK])
            if paused:
                gc.collect(1)
    return events


@contextmanager
def _collector_paused() -> Iterator[bool]:
    """Pause the cyclic garbage collector's automatic runs, if it is on, for a burst of acyclic
    allocations; yields whether it paused it (a collector the user switched off stays off)."""
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        yield paused
    finally:
        if paused:
            gc.enable()


def _build_events(count: int, *columns: Iterable[Any]) -> list[FlowEvent]:
    """``count`` ``FlowEvent``s from one column per slot, in slot order (seq, flow_id, flow_version,
    ts, kind, event_id). ``FlowEvent`` is a frozen slotted dataclass with no ``__post_init__``:
    filling its slots through their descriptors, a column at a time, builds the same objects at a
    third of the cost of its ``__init__``."""
    events: list[FlowEvent] = list(map(object.__new__, repeat(FlowEvent, count)))
    for setter, column in zip(_EVENT_SLOT_SETTERS, columns, strict=True):
        deque(map(setter, events, column), maxlen=0)
    return events


_DECODE_CHUNK = 1000
"""Rows per validator call: one call per row is several times slower, and one call for 100,000
rows is slower than chunks whose JSON and objects stay in the CPU caches."""

_payload_of = itemgetter(4)
_seq_of = itemgetter(0)
_event_id_of = itemgetter(1)
_version_of = itemgetter(2)
_ts_of = itemgetter(3)

_EVENT_SLOT_SETTERS = tuple(
    getattr(FlowEvent, name).__set__ for name in ("seq", "flow_id", "flow_version", "ts", "kind", "event_id")
)
if FlowEvent.__slots__ != ("seq", "flow_id", "flow_version", "ts", "kind", "event_id") or hasattr(
    FlowEvent, "__post_init__"
):  # pragma: no cover - a guard for whoever changes FlowEvent
    raise RuntimeError("decode_events fills FlowEvent's slots by hand: update it with FlowEvent")


def _decode_chunk(flow_id: UUID, rows: Sequence[Any]) -> list[FlowEvent]:
    """Up to ``_DECODE_CHUNK`` rows in one validator call; row by row when that fails, so that the
    error names the first bad row."""
    count = len(rows)
    try:
        kinds = kinds_from_json(list(map(_payload_of, rows)))
    except ValueError:  # a ValidationError, or bytes that are not JSON
        kinds = []
    if len(kinds) != count:
        kinds = [_decode_one(row) for row in rows]
    return _build_events(
        count,
        map(_seq_of, rows),
        repeat(flow_id, count),
        map(_version_of, rows),
        map(_ts_of, rows),
        kinds,
        map(_event_id_of, rows),
    )


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
