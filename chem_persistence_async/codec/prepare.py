"""Preparing an append: validate what the caller passed, encode it, and hand the backend one batch.

Every backend appends through ``prepare_append``, so what is refused, and how, cannot differ
between them: bad input is refused here, before any backend writes anything.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from itertools import repeat
from operator import itemgetter
from typing import Any, cast
from uuid import UUID

from pydantic import BaseModel, ValidationError

from chem_persistence_async.codec.fast import build_events, collector_paused, object_builder
from chem_persistence_async.codec.ids import new_event_ids
from chem_persistence_async.domain.artifacts import Artifact, artifact_hash_of, encoded_payload, kind_json
from chem_persistence_async.domain.canonical import canonical_json
from chem_persistence_async.domain.events import (
    KIND_CLASSES,
    FlowEvent,
    FlowEventKind,
    StepFailed,
    StepFinished,
    is_event_kind,
    kind_to_payload,
    kinds_from_json,
)
from chem_persistence_async.domain.ids import check_expected_version, to_flow_id
from chem_persistence_async.domain.jobs import JobWrite
from chem_persistence_async.domain.projection import FlowProjection
from chem_persistence_async.errors import (
    ArtifactHashMismatchError,
    InvalidEventError,
    InvalidInputError,
    MissingArtifactError,
    PayloadTooLargeError,
    UnlistedArtifactError,
)

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
    details: dict[str, Any] | None
    """As stored: the details of the ``StepFailed`` decoded from its payload (shared with it, so
    a backend that keeps them copies them). PostgreSQL's statement copies the row from the stored
    payload itself and sends nothing for it: no second canonical encoding of the details."""
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
    records: FlowProjection | None = None
    """The flow's records after these events (times ``APPEND_TIME``), to be written with them: only
    if this batch writes them, never when they turn out stored already (``append_recorded``)."""
    job: JobWrite | None = None
    """A job's change to commit with these events, both or neither (``append_with_job``)."""

    @property
    def has_errors(self) -> bool:
        """Whether any event is a ``StepFailed`` (each writes a ``step_execution_errors`` row)."""
        return any(event.error is not None for event in self.events)

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
        with collector_paused() if count > _PAUSE_GC_WRITING_ABOVE else nullcontext():
            return build_events(
                count,
                map(_row_seq, rows),
                repeat(self.flow_id, count),
                versions,
                map(_row_ts, rows),
                [e.kind for e in self.events],
                [e.event_id for e in self.events],
            )


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
        with collector_paused():
            return prepare_append(
                flow_id,
                kinds,
                artifacts=artifacts,
                expected_version=expected_version,
                event_ids=event_ids,
                limits=limits,
            )
    fid = flow_id if type(flow_id) is UUID else to_flow_id(flow_id)
    if type(kinds) is not list and (isinstance(kinds, str | bytes) or not isinstance(kinds, Sequence)):
        raise InvalidEventError("kinds must be a sequence of FlowEventKind")
    expected = None if expected_version is None else check_expected_version(expected_version, len(kinds))
    if type(artifacts) is not tuple and not isinstance(artifacts, Iterable):
        raise InvalidInputError(f"artifacts must be an iterable of Artifact, got {type(artifacts).__name__}")
    if event_ids is not None:
        if (
            isinstance(event_ids, str | bytes)
            or not isinstance(event_ids, Sequence)
            or len(event_ids) != len(kinds)
            or not all(isinstance(e, UUID) for e in event_ids)
        ):
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
    valid = _check_decodable(payloads, kinds)

    events: list[PreparedEvent] = []
    listed: dict[str, int] = {}
    ids = new_event_ids(len(kinds)) if event_ids is None else event_ids
    for index, kind in enumerate(valid):  # validated: exact kind classes, whatever the caller passed
        error = None
        cls = type(kind)
        if cls is StepFailed:
            failed = cast(StepFailed, kind)
            error = ErrorRow(
                step_id=failed.step_id,
                attempt_number=failed.attempt,
                error_class=failed.error.error_class.value,
                error_message=failed.error.message,
                details=failed.error.details,
                retry_count=failed.retry_count,
                max_retries=failed.max_retries,
            )
        elif cls is StepFinished:
            for output in cast(StepFinished, kind).outputs:
                listed.setdefault(output, index + 1)
        events.append(_new_prepared(ids[index], kind, kind.event_type, payloads[index], error))

    prepared: dict[str, PreparedArtifact] = {}
    for artifact in artifacts:
        if not isinstance(artifact, Artifact):
            raise InvalidInputError(f"artifacts must be Artifact objects, got {type(artifact).__name__}")
        # Made with its hash by ``Artifact.of``: no check needed; else encoded and checked.
        payload = encoded_payload(artifact) or _checked_payload(artifact)
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
    return _new_batch(
        fid,
        tuple(events),
        tuple(prepared.values()) if prepared and store_artifacts else (),
        unpassed,
        expected,
        None,
        None,
    )


_new_prepared = object_builder(PreparedEvent, ("event_id", "kind", "event_type", "payload", "error"))
_new_batch = object_builder(
    AppendBatch,
    ("flow_id", "events", "artifacts", "unpassed_outputs", "expected_version", "records", "job"),
)
"""Every append builds these (``codec.fast``: half the cost of their ``__init__``)."""

_EXACT_KINDS: frozenset[type] = frozenset(KIND_CLASSES)
"""The kind classes themselves (not subclasses): validated by their own validator when alone."""


def _checked_payload(artifact: Artifact) -> bytes:
    """The canonical JSON of a hand-built (or copied) artifact's payload, refused unless its hash is
    of it."""
    payload = canonical_json(artifact.payload)
    if not _hash_matches(artifact, payload):
        raise ArtifactHashMismatchError(
            f"artifact {str(artifact.hash)[:16]}… does not match its content (kind {artifact.kind!r:.60})"
        )
    return payload


def _hash_matches(artifact: Artifact, payload: bytes) -> bool:
    """``artifact.content_matches()`` from its canonical payload bytes, without normalising twice."""
    return artifact_hash_of(kind_json(artifact.kind), payload) == artifact.hash


def _check_decodable(payloads: list[bytes], kinds: Sequence[object]) -> Sequence[FlowEventKind]:
    """Validate what would be stored, and return it decoded: the kinds exactly as the stores will
    read them back (free-form JSON normalised), so an append returns what ``list`` gives later.
    ``model_construct`` and subclasses skip validation, and a row that cannot be read back must never
    be written. One validator call: the kind's own for one event of a kind class, else the list
    adapter that reading uses."""
    if not payloads:
        return []
    alone = len(payloads) == 1 and type(kinds[0]) in _EXACT_KINDS
    try:
        if alone:
            model: type[BaseModel] = type(kinds[0])  # type: ignore[assignment]  # an exact kind class
            return [model.__pydantic_validator__.validate_json(payloads[0])]
        return kinds_from_json(payloads)
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
