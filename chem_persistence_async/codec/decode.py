"""Decoding stored rows into events and error records, the same way on every backend."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial
from itertools import repeat
from operator import itemgetter
from typing import Any, TypeVar
from uuid import UUID

from pydantic import ValidationError

from chem_persistence_async.codec.fast import build_events, collector_paused, column_builder
from chem_persistence_async.domain.events import FlowEvent, FlowEventKind, kind_from_json, kinds_from_json
from chem_persistence_async.domain.failures import ErrorClass, StepExecutionError
from chem_persistence_async.domain.positions import Position, PositionedEvent
from chem_persistence_async.errors import CorruptEventError

T = TypeVar("T")

EventRow = tuple[int, UUID, int, datetime, bytes | str]
"""``(seq, event_id, flow_version, ts, payload)`` as both backends keep it (PostgreSQL's reads give
the payload as text, the in-memory store keeps bytes)."""


def decode_events(flow_id: UUID, rows: Sequence[Any]) -> list[FlowEvent]:
    """Decode stored rows (``EventRow`` shaped), ``_DECODE_CHUNK`` rows per validator call; name the
    seq of a bad row.

    Every decode runs with the cyclic garbage collector's automatic runs paused, and none is run
    after it. Each event allocates several tracked objects (the event, its kind, the kind's dict
    and set of fields) and no cycle, so the pause keeps nothing alive: refcounting frees them.
    With the collector running, young collections walked the events decoded so far and promoted
    them, and a large batch set off full collections over the whole heap (at 100,000 events they
    cost more than the decoding itself: 5.2 µs per event with them, 2.1 without). Collecting the
    young generations after each chunk, as this did until it was measured, promoted every event
    to the oldest generation and so made the next full collections due: events the caller drops
    soon (a page of a stream, a list replayed and dropped) should die young, unwalked. Measured in
    the read loop of ``benchmarks`` (one process, interleaved, a heap of 230,000 objects): a list
    of 1,000 events 297 -> 216 ms per 20 reads paused (raw fetch + ``json.loads`` 184); a list of
    10,000 317 -> 252 ms per 2 reads without the per-chunk collections (raw 259). Events a caller
    keeps are walked once by the next young collection, as any new objects are.
    """
    return _in_chunks(rows, partial(_decode_chunk, flow_id))


def _in_chunks(rows: Sequence[Any], decode: Callable[[Sequence[Any]], list[T]]) -> list[T]:
    """``decode`` of ``rows``, ``_DECODE_CHUNK`` at a time, with the collector paused throughout
    (see ``decode_events``)."""
    if not rows:
        return []
    with collector_paused():
        if len(rows) <= _DECODE_CHUNK:
            return decode(rows)
        decoded: list[T] = []
        for start in range(0, len(rows), _DECODE_CHUNK):
            decoded += decode(rows[start : start + _DECODE_CHUNK])
        return decoded


_DECODE_CHUNK = 1000
"""Rows per validator call: one call per row is several times slower, and one call for 100,000
rows is slower than chunks whose JSON and objects stay in the CPU caches."""

_payload_of = itemgetter(4)
_seq_of = itemgetter(0)
_event_id_of = itemgetter(1)
_version_of = itemgetter(2)
_ts_of = itemgetter(3)


def _decode_chunk(flow_id: UUID, rows: Sequence[Any]) -> list[FlowEvent]:
    """Up to ``_DECODE_CHUNK`` rows as events of ``flow_id``."""
    count = len(rows)
    return build_events(
        count,
        map(_seq_of, rows),
        repeat(flow_id, count),
        map(_version_of, rows),
        map(_ts_of, rows),
        _kinds(rows),
        map(_event_id_of, rows),
    )


def _kinds(rows: Sequence[Any]) -> list[FlowEventKind]:
    """The rows' payloads validated in one call; row by row when that fails, so that the error
    names the first bad row."""
    try:
        kinds = kinds_from_json(list(map(_payload_of, rows)))
    except ValueError:  # a ValidationError, or bytes that are not JSON
        kinds = []
    if len(kinds) != len(rows):  # (two values in one row would shift every later one)
        kinds = [_decode_one(row) for row in rows]
    return kinds


def _decode_one(row: Any) -> FlowEventKind:
    try:
        return kind_from_json(row[4])
    except (ValidationError, ValueError) as exc:
        first = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
        raise CorruptEventError(row[0], first) from None


PositionedRow = tuple[int, UUID, int, datetime, bytes | str, UUID, int | str]
"""An ``EventRow`` followed by its flow id and commit group, as ``read_all`` reads them."""


def decode_positioned(rows: Sequence[Any]) -> list[PositionedEvent]:
    """Events of any flows with their positions (``read_all``), ``_DECODE_CHUNK`` rows per
    validator call, naming the seq of a bad row."""
    return _in_chunks(rows, _positioned_chunk)


def _positioned_chunk(rows: Sequence[Any]) -> list[PositionedEvent]:
    return [
        PositionedEvent(r[0], r[5], r[2], r[3], kind, r[1], Position.of(int(r[6]), r[0]))
        for r, kind in zip(rows, _kinds(rows), strict=True)
    ]


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


def decode_error_json(flow_id: UUID, data: bytes | str) -> list[StepExecutionError]:
    """Error rows aggregated by the database as one JSON array of ``[step_id, attempt_number,
    error_class, error_message, details, retry_count, max_retries, ts, event_seq]`` arrays.

    Built column by column (``column_builder``, as ``decode_events`` builds events): a load of a
    flow with many failures decoded each row through ``StepExecutionError(...)`` and
    ``ErrorClass(...)`` at about 4 µs a row."""
    rows = json.loads(data)
    count = len(rows)
    if not count:
        return []
    step_ids, attempts, classes, messages, details, retries, maxima, times, seqs = zip(*rows, strict=True)
    return _new_errors(
        count,
        repeat(flow_id, count),
        step_ids,
        attempts,
        map(_error_class, classes),
        messages,
        details,
        retries,
        maxima,
        map(datetime.fromisoformat, times),
        seqs,
    )


_new_errors = column_builder(
    StepExecutionError,
    (
        "flow_id",
        "step_id",
        "attempt_number",
        "error_class",
        "error_message",
        "details",
        "retry_count",
        "max_retries",
        "ts",
        "event_seq",
    ),
)
_ERROR_CLASSES = {member.value: member for member in ErrorClass}


def _error_class(value: str) -> ErrorClass:
    """``ErrorClass(value)`` by a dict lookup (the enum's call is ten times that); an unknown value
    still raises the enum's own error."""
    return _ERROR_CLASSES.get(value) or ErrorClass(value)
