"""Every exception the library raises on purpose, in one hierarchy: catch ``ChemPersistError`` to
catch them all.

Input errors also derive from the matching builtin (``ValueError``, ``TypeError``, ``LookupError``)
so that code which already catches those keeps working. Exceptions a *step* raises to say how it
failed (``TransientStepError`` and friends) are the user's, not the library's: they live with the
step protocol in ``engine.step``.

::

    ChemPersistError
    ├── InvalidInputError (ValueError)            bad input; nothing was written
    │   ├── InvalidFlowIdError                    a flow id that is not a UUID
    │   ├── InvalidEventError (TypeError)         not a valid FlowEventKind
    │   ├── UnstorableValueError                  JSON that PostgreSQL cannot store faithfully
    │   │   └── JsonNestingError                  JSON nested deeper than MAX_JSON_DEPTH
    │   ├── UnknownStatusError                    a status, log level or artifact type that does not exist
    │   ├── ValueOutOfRangeError                  an int outside its column's range (or a negative count)
    │   ├── PayloadTooLargeError                  over max_payload_bytes
    │   ├── InvalidExpectedVersionError           a negative or non-int expected_version
    │   ├── ArtifactError                         an artifact that does not fit its event
    │   │   ├── ArtifactHashMismatchError
    │   │   ├── UnlistedArtifactError
    │   │   └── MissingArtifactError
    │   └── DefinitionError                       a FlowDefinition or step that cannot run
    ├── ConcurrencyConflict                       expected_version was not the flow's version
    ├── FlowNotFoundError (LookupError)           a flow with no events
    ├── FlowFinishedError                         a signal sent to a flow that completed or failed
    ├── StepInProgressError                       another engine's attempt holds the step's lease
    ├── JobError                                  the work queue refused a change to a job
    │   ├── LeaseLostError                        another claim took the job over
    │   └── JobCancelledError                     the job was cancelled while claimed
    ├── UnknownDefinitionError (LookupError)      no such flow definition (name and hash)
    ├── RecordNotFoundError (LookupError)         a workflow record that does not exist
    │   ├── RunNotFoundError
    │   ├── StageNotFoundError
    │   └── ArtifactNotFoundError
    ├── RecordExistsError                         a run or stage created twice
    ├── LoggerClosedError                         an AI call logged after the logger closed
    ├── CorruptEventError                         a stored row no longer decodes
    ├── ReplayError                               events that are not a run of the definition
    │   ├── DefinitionMismatchError               the flow was started with another definition
    │   └── ErrorRecordMismatchError              error rows disagree with the StepFailed events
    └── DatabaseError                             the database layer failed (``sqlstate`` when known)
        ├── ConfigurationError (ValueError)       settings that cannot work
        ├── DatabaseClosedError                   use after close
        ├── PoolTimeoutError (TimeoutError)       no free connection within the acquire timeout
        ├── MigrationError                        applying the schema failed
        ├── EmbeddedServerError                   the embedded PostgreSQL could not start
        ├── TransactionError                      a unit of work used wrongly, or left unusable
        ├── ConstraintViolationError              the database refused a write the library did not expect
        └── TransientDatabaseError                a transient failure outlived every retry

Driver errors never escape a store or ``Database.run``: they become a ``DatabaseError`` chained to
the driver's exception (``__cause__``), its SQLSTATE kept as ``.sqlstate`` so a caller can still
tell a serialization failure (``40001``) from a lost connection (``08006``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID


class ChemPersistError(Exception):
    """Root of every exception this package raises on purpose."""


# --- bad input: nothing was written -------------------------------------------------------------


class InvalidInputError(ChemPersistError, ValueError):
    """The caller passed something the library will not write. Nothing was written."""


class InvalidFlowIdError(InvalidInputError):
    """A flow id that is not a UUID."""


class InvalidEventError(InvalidInputError, TypeError):
    """Something that is not a valid ``FlowEventKind``."""


class UnstorableValueError(InvalidInputError):
    """A value PostgreSQL cannot store or compare faithfully, in JSON or in a text argument such as
    a ``step_id`` to search by: ``\\u0000``, a lone surrogate, NaN, an infinity, an integer of more
    than ``MAX_INT_DIGITS`` digits (or more than Python will print). Keys and values alike."""


class JsonNestingError(UnstorableValueError):
    """A JSON value nested deeper than ``MAX_JSON_DEPTH`` levels (``domain.canonical``; a cycle is
    refused the same way)."""


class UnknownStatusError(InvalidInputError):
    """A ``Status``, ``LogLevel`` or ``ArtifactType`` value that is not one of the enum's values."""


class ValueOutOfRangeError(InvalidInputError):
    """An integer argument of a store outside the range of the ``INT`` column it reaches or is
    compared with (-2**31 .. 2**31 - 1): an ``expected_version``, or one that the versions of the
    events appended after it would carry past 2**31 - 1. Also a text argument longer than the
    column it goes to (a name, a job key).

    The rule: a store checks its *arguments* (this error); an event checks its own *fields*. The
    integer fields of events (``attempt``, ``retry_count``, ``max_retries``, ``step_index``,
    ``retry_index``, ``step_count``) are bounded to ``INT`` by their models, with their lower bounds:
    building one out of range raises pydantic's ``ValidationError``, and one built without validation
    (``model_construct``) is refused by every store with ``InvalidEventError``, before anything is
    written, as any other malformed event is."""


class PayloadTooLargeError(InvalidInputError):
    """A payload over the configured size limit."""


class InvalidExpectedVersionError(InvalidInputError):
    """A negative or non-integer ``expected_version``."""


class ArtifactError(InvalidInputError):
    """An artifact does not fit the event it is written with."""


class ArtifactHashMismatchError(ArtifactError):
    """An artifact whose hash is not the hash of its content."""


class UnlistedArtifactError(ArtifactError):
    """An artifact passed with an event that does not list it in ``outputs``."""


class MissingArtifactError(ArtifactError):
    """An ``outputs`` hash with no artifact passed and none already stored."""


class DefinitionError(InvalidInputError):
    """A flow definition or one of its steps that cannot run (caught when the definition is built)."""


# --- concurrency and flows -----------------------------------------------------------------------


class ConcurrencyConflict(ChemPersistError):
    """The flow's last version was not the one the caller expected. Nothing was written."""

    def __init__(self, flow_id: UUID, expected_version: int | None, actual_version: int | None) -> None:
        self.flow_id = flow_id
        self.expected_version = expected_version
        self.actual_version = actual_version
        super().__init__(f"flow {flow_id}: expected version {expected_version}, found {actual_version}")


class FlowNotFoundError(ChemPersistError, LookupError):
    """The flow has no events."""


class FlowFinishedError(ChemPersistError):
    """The flow completed or failed: it takes no more signals."""


class StepInProgressError(ChemPersistError):
    """Another engine started the step's current attempt and its lease has not run out yet."""

    def __init__(self, flow_id: UUID, step_id: str, attempt: int, lease_until: datetime) -> None:
        self.flow_id = flow_id
        self.step_id = step_id
        self.attempt = attempt
        self.lease_until = lease_until
        super().__init__(
            f"flow {flow_id}: step {step_id!r} attempt {attempt} is in progress elsewhere "
            f"until {lease_until.isoformat()}"
        )


# --- the work queue ------------------------------------------------------------------------------


class JobError(ChemPersistError):
    """The work queue refused a change to a job. ``job_id`` names it; after a ``heartbeat`` of
    several jobs, ``renewed`` holds the jobs whose leases were renewed and ``cancelled_ids`` and
    ``lost_ids`` the others. After a ``claim(..., complete=jobs)``, ``claimed`` holds the jobs that
    claim took all the same (the caller holds their leases: run them or release them)."""

    def __init__(
        self,
        message: str,
        *,
        job_id: int,
        renewed: list[Any] | None = None,
        cancelled_ids: list[int] | None = None,
        lost_ids: list[int] | None = None,
        claimed: list[Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.renewed: list[Any] = renewed or []
        self.claimed: list[Any] = claimed or []
        self.cancelled_ids: list[int] = cancelled_ids or []
        self.lost_ids: list[int] = lost_ids or []


class LeaseLostError(JobError):
    """The job's lease was taken over by another claim: this worker changes nothing."""


class JobCancelledError(JobError):
    """The job was cancelled while claimed: it is finished as cancelled, its work must stop."""


class UnknownDefinitionError(ChemPersistError, LookupError):
    """No flow definition with this name (and hash) is registered or known here."""


# --- workflow records and the AI-call log (SPEC 9) -------------------------------------------------


class RecordNotFoundError(ChemPersistError, LookupError):
    """A workflow record (run, stage, artifact) that does not exist: nothing was written."""


class RunNotFoundError(RecordNotFoundError):
    """No workflow run with this id."""


class StageNotFoundError(RecordNotFoundError):
    """No workflow stage with this id (or this run and stage id)."""


class ArtifactNotFoundError(RecordNotFoundError):
    """No artifact with this key in this run (``has_artifact`` asks first)."""


class RecordExistsError(ChemPersistError):
    """A run id or a (run, stage id) that is already taken: nothing was written (``upsert_stage``
    updates an existing stage instead)."""


class LoggerClosedError(ChemPersistError):
    """``log_call`` on an ``AICallLogger`` that was closed: the call was not recorded."""


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
    """A failure of the database layer. ``sqlstate`` is the server's code when there was one."""

    sqlstate: str | None = None

    def __init__(self, message: str, *, sqlstate: str | None = None) -> None:
        super().__init__(message)
        if sqlstate is not None:
            self.sqlstate = sqlstate


class ConfigurationError(DatabaseError, ValueError):
    """Settings that cannot work; the message names every bad setting (never a password)."""


class DatabaseClosedError(DatabaseError):
    """The ``Database`` (or its pool) is closed."""


class PoolTimeoutError(DatabaseError, TimeoutError):
    """No connection became free within the acquire timeout."""


class MigrationError(DatabaseError):
    """Applying the schema migrations failed."""


class EmbeddedServerError(DatabaseError):
    """The embedded PostgreSQL server could not be started."""


class TransactionError(DatabaseError):
    """A unit of work was used outside its ``async with``, on another backend, or after a failed
    statement left it unable to commit."""


class ConstraintViolationError(DatabaseError):
    """The database refused a write for a constraint the library did not expect to meet
    (``constraint`` names it): usually rows changed behind the library's back."""

    def __init__(self, message: str, *, sqlstate: str | None = None, constraint: str | None = None) -> None:
        super().__init__(message, sqlstate=sqlstate)
        self.constraint = constraint


class TransientDatabaseError(DatabaseError):
    """A transient failure (serialization failure, deadlock, lost connection...) that was still
    failing after every retry. ``reason`` is the classification, ``sqlstate`` the server's code."""

    def __init__(self, message: str, *, reason: str, sqlstate: str | None = None) -> None:
        super().__init__(message, sqlstate=sqlstate)
        self.reason = reason
