"""Checking the arguments a caller passes to a store, in one place: pure, shared by every backend
and the engine, so a bad argument is refused the same way, before any query, on every backend."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from uuid import UUID

from chem_persistence_async.domain.canonical import check_text
from chem_persistence_async.errors import (
    InvalidExpectedVersionError,
    InvalidFlowIdError,
    InvalidInputError,
    ValueOutOfRangeError,
)

INT_MIN = -(2**31)
INT_MAX = 2**31 - 1
"""PostgreSQL's ``INT``: flow versions, attempt numbers, retry counts are ``INT`` columns."""
BIGINT_MAX = 2**63 - 1
"""PostgreSQL's ``BIGINT``: job ids, token counts, durations."""

MAX_BATCH_SIZE = 100_000
"""The largest ``stream(batch_size=...)``: a page is held in memory, and ``list`` reads it all anyway."""


def to_flow_id(value: object) -> UUID:
    if isinstance(value, UUID):
        return value
    if isinstance(value, str):
        try:
            return UUID(value)
        except ValueError:
            pass
    raise InvalidFlowIdError(f"flow id must be a UUID, got {type(value).__name__} {value!r:.60}")


def check_expected_version(value: object, appending: int = 0) -> int | None:
    """``None`` or a version the flow's ``INT`` column can hold with ``appending`` more events after
    it: a larger one could never be written (``ValueOutOfRangeError``)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidExpectedVersionError(f"expected_version must be None or an int >= 0, got {value!r:.40}")
    if value + appending > INT_MAX:
        raise ValueOutOfRangeError(
            f"expected_version {value} with {appending} event(s) after it is beyond the INT range of"
            f" flow versions (at most {INT_MAX})"
        )
    return value


def check_step_id(value: object) -> str | None:
    """A ``step_id`` to search by: ``None`` (every step) or text PostgreSQL can compare."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInputError(f"step_id must be None or a str, got {type(value).__name__}")
    check_text(value, "step_id")
    return value


def check_hashes(hashes: object) -> list[str]:
    """Artifact hashes to look up, once each in their first order. A hash that is text but not a
    hash simply finds nothing; text PostgreSQL cannot compare, or a non-str, is refused."""
    if isinstance(hashes, str | bytes) or not isinstance(hashes, Iterable):
        raise InvalidInputError(f"hashes must be an iterable of str, got {type(hashes).__name__}")
    wanted = list(dict.fromkeys(h if type(h) is str else _not_str(h) for h in hashes))
    for h in wanted:
        if not h.isascii() or "\x00" in h:
            check_text(h, "hash")
    return wanted


def check_flow_ids(flow_ids: object) -> list[UUID]:
    """Flow ids to read, once each in their first order (UUIDs or their text)."""
    if isinstance(flow_ids, str | bytes | UUID) or not isinstance(flow_ids, Iterable):
        raise InvalidInputError(f"flow_ids must be an iterable of flow ids, got {type(flow_ids).__name__}")
    return list(dict.fromkeys(to_flow_id(f) for f in flow_ids))


def _not_str(value: object) -> str:
    if isinstance(value, str):
        return value
    raise InvalidInputError(f"hashes must be str, got {type(value).__name__} {value!r:.40}")


def check_batch_size(value: object, what: str = "batch_size") -> int:
    """A page size (``stream``'s, ``read_all``'s limit, a subscription's batch): an int from 1 to
    ``MAX_BATCH_SIZE``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_BATCH_SIZE:
        raise InvalidInputError(f"{what} must be an int from 1 to {MAX_BATCH_SIZE}, got {value!r:.40}")
    return value


def text_argument(value: object, what: str, *, max_length: int | None = None) -> str:
    """A string PostgreSQL can take as a text argument (no NUL, valid UTF-8: else
    ``UnstorableValueError``), within ``max_length`` (else ``ValueOutOfRangeError``)."""
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be a string, got {type(value).__name__}")
    if not value.isascii() or "\x00" in value:
        check_text(value, what)
    if max_length is not None and len(value) > max_length:
        raise ValueOutOfRangeError(f"{what} is {len(value)} characters; at most {max_length}")
    return value


MAX_NAME_LENGTH = 200
"""The length of the name columns (queues, kinds, worker ids, subscription, stage and model names)."""


def check_name(value: object, what: str, *, max_length: int = MAX_NAME_LENGTH, empty: bool = False) -> str:
    """A name PostgreSQL can store: a string ``text_argument`` takes, not empty (unless ``empty``),
    and at most ``max_length`` characters (else ``ValueOutOfRangeError``)."""
    text = text_argument(value, what, max_length=max_length)
    if not text and not empty:
        raise InvalidInputError(f"{what} must not be empty")
    return text


def check_int(value: object, what: str, *, minimum: int = 0, maximum: int = INT_MAX) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(f"{what} must be an int, got {type(value).__name__}")
    if not minimum <= value <= maximum:
        raise ValueOutOfRangeError(f"{what} must be between {minimum} and {maximum}, got {value}")
    return value


def check_aware(value: object, what: str) -> datetime:
    """A timezone-aware ``datetime`` strictly between ``datetime.min`` and ``datetime.max`` as a UTC
    instant. The driver sends a ``timestamptz`` as UTC: past those ends it cannot send it at all
    (``datetime.max`` west of Greenwich), and at them it sends ``infinity``, which it gives back
    as a naive ``datetime.max``; the in-memory backends refuse the same times."""
    if not isinstance(value, datetime):
        raise InvalidInputError(f"{what} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInputError(f"{what} must be timezone-aware (e.g. datetime.now(UTC)), got {value!r}")
    try:
        instant = value.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:
        instant = datetime.max
    if instant in (datetime.max, datetime.min):
        raise ValueOutOfRangeError(
            f"{what} must lie strictly between {datetime.min} and {datetime.max} in UTC, got {value!r}"
        )
    return value
