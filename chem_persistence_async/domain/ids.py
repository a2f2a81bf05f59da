"""Checking identifiers and versions a caller passes in: pure, shared by every backend and the engine."""

from __future__ import annotations

from uuid import UUID

from chem_persistence_async.errors import InvalidExpectedVersionError, InvalidFlowIdError


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
