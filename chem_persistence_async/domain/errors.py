"""The package's exception hierarchy: one root, so callers can catch everything we raise.

Input errors also derive from the matching builtin (``ValueError`` / ``TypeError``) so code that
already catches those keeps working.
"""

from __future__ import annotations

from uuid import UUID


class ChemPersistError(Exception):
    """Root of every exception this package raises on purpose."""


# --- bad input: nothing was written -------------------------------------------------------------


class InvalidInputError(ChemPersistError, ValueError):
    """The caller passed something the store will not write. Nothing was written."""


class InvalidFlowIdError(InvalidInputError):
    """A flow id that is not a UUID."""


class InvalidEventError(InvalidInputError, TypeError):
    """Something that is not a valid ``FlowEventKind``."""


class UnstorableValueError(InvalidInputError):
    """A JSON value PostgreSQL cannot store faithfully (``\\u0000``, NaN, infinities, lone surrogates)."""


class PayloadTooLargeError(InvalidInputError):
    """A payload over the configured size limit."""


class ArtifactError(InvalidInputError):
    """An artifact does not fit the event it is written with."""


class ArtifactHashMismatchError(ArtifactError):
    """An artifact whose hash is not the hash of its content."""


class UnlistedArtifactError(ArtifactError):
    """An artifact passed with an event that does not list it in ``outputs``."""


class MissingArtifactError(ArtifactError):
    """An ``outputs`` hash with no artifact passed and none already stored."""


class InvalidExpectedVersionError(InvalidInputError):
    """A negative or non-integer ``expected_version``."""


# --- concurrency ---------------------------------------------------------------------------------


class ConcurrencyConflict(ChemPersistError):
    """The flow's last version was not the one the caller expected. Nothing was written."""

    def __init__(self, flow_id: UUID, expected_version: int | None, actual_version: int | None) -> None:
        self.flow_id = flow_id
        self.expected_version = expected_version
        self.actual_version = actual_version
        super().__init__(f"flow {flow_id}: expected version {expected_version}, found {actual_version}")


# --- stored data ---------------------------------------------------------------------------------


class CorruptEventError(ChemPersistError):
    """A stored row no longer decodes into a ``FlowEventKind``."""

    def __init__(self, seq: int, reason: str) -> None:
        self.seq = seq
        super().__init__(f"event_log row seq={seq} does not decode: {reason}")


class ReplayError(ChemPersistError):
    """The events of a flow do not describe a valid run of the given definition."""


class DefinitionMismatchError(ReplayError):
    """The flow was started with another definition (name or hash differ)."""


class ErrorRecordMismatchError(ReplayError):
    """The ``step_execution_errors`` rows disagree with the ``StepFailed`` events of the flow."""


# --- the database layer --------------------------------------------------------------------------


class DatabaseError(ChemPersistError):
    """A failure of the database layer."""


class ConfigurationError(DatabaseError, ValueError):
    """Settings that cannot work; the message names every bad field (never a password)."""


class DatabaseClosedError(DatabaseError):
    """The ``Database`` (or its pool) is closed."""


class PoolTimeoutError(DatabaseError, TimeoutError):
    """No connection became free within the acquire timeout."""


class MigrationError(DatabaseError):
    """Applying the schema migrations failed."""


class TransientDatabaseError(DatabaseError):
    """A transient failure that was still failing after every retry."""


class EmbeddedServerError(DatabaseError):
    """The embedded PostgreSQL server could not be started."""
