"""Checking identifiers and versions a caller passes in: pure, shared by every backend and the engine."""

from __future__ import annotations

from uuid import UUID

from chem_persistence_async.errors import InvalidExpectedVersionError, InvalidFlowIdError, InvalidInputError


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


def check_text(value: object, what: str, *, max_length: int | None = None) -> str:
    """A string PostgreSQL can take as a text argument: no NUL, valid UTF-8, within ``max_length``."""
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be a string, got {type(value).__name__}")
    if "\x00" in value:
        raise InvalidInputError(f"{what} must not contain \\x00 (PostgreSQL text cannot hold it)")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidInputError(f"{what} is not valid UTF-8 (a lone surrogate?)") from None
    if max_length is not None and len(value) > max_length:
        raise InvalidInputError(f"{what} is {len(value)} characters; at most {max_length}")
    return value
