"""chem-persistence-async: durable, asyncio-native PostgreSQL persistence for an event-sourced
workflow engine. The public API, re-exported."""

from importlib import metadata as _metadata

from chem_persistence_async.backends.memory.event_store import InMemoryEventStore
from chem_persistence_async.backends.postgres.database import Database
from chem_persistence_async.backends.postgres.event_store import PgEventStore
from chem_persistence_async.backends.postgres.migrations import migrate
from chem_persistence_async.backends.postgres.retry import (
    BackoffPolicy,
    RetryMetrics,
    retry_transient,
    transient_reason,
)
from chem_persistence_async.domain.artifacts import Artifact, artifact_hash
from chem_persistence_async.domain.canonical import canonical_json, content_hash
from chem_persistence_async.domain.events import (
    FlowCompleted,
    FlowEvent,
    FlowEventKind,
    FlowInitialized,
    PropertyPreferenceAssigned,
    RetryScheduled,
    StepFailed,
    StepFinished,
    StepSignal,
    StepStarted,
)
from chem_persistence_async.domain.failures import ErrorClass, StepErrorInfo, StepExecutionError
from chem_persistence_async.domain.fingerprints import flow_fingerprint, step_fingerprint
from chem_persistence_async.domain.flow import FlowDefinition, FlowInstance, StepSlot, StepStatus
from chem_persistence_async.engine.demo import (
    ForwardStep,
    PrintAndCountStep,
    SeedStep,
    SplitStep,
    demo_definition,
)
from chem_persistence_async.engine.engine import FlowEngine
from chem_persistence_async.engine.repository import (
    FlowRepository,
    InMemoryFlowRepository,
    PgFlowRepository,
)
from chem_persistence_async.engine.retry_policy import RetryPolicy
from chem_persistence_async.engine.step import (
    PermanentStepError,
    Step,
    StepContext,
    StepError,
    StepOutput,
    StepValidationError,
    TransientStepError,
    classify_error,
)
from chem_persistence_async.errors import (
    ArtifactError,
    ArtifactHashMismatchError,
    ChemPersistError,
    ConcurrencyConflict,
    ConfigurationError,
    CorruptEventError,
    DatabaseClosedError,
    DatabaseError,
    DefinitionError,
    DefinitionMismatchError,
    EmbeddedServerError,
    ErrorRecordMismatchError,
    FlowNotFoundError,
    InvalidEventError,
    InvalidExpectedVersionError,
    InvalidFlowIdError,
    InvalidInputError,
    MigrationError,
    MissingArtifactError,
    PayloadTooLargeError,
    PoolTimeoutError,
    ReplayError,
    TransientDatabaseError,
    UnlistedArtifactError,
    UnstorableValueError,
)
from chem_persistence_async.ports.event_store import AsyncEventStore
from chem_persistence_async.replay import replay
from chem_persistence_async.settings import (
    ConnectionSettings,
    DatabaseSettings,
    QueueSettings,
    StoreSettings,
    WorkerSettings,
)

try:
    __version__: str = _metadata.version("chem-persistence-async")
    """The installed distribution's version (from its metadata, so it cannot drift from pyproject)."""
except _metadata.PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "Artifact",
    "ArtifactError",
    "ArtifactHashMismatchError",
    "AsyncEventStore",
    "BackoffPolicy",
    "ChemPersistError",
    "ConcurrencyConflict",
    "ConfigurationError",
    "ConnectionSettings",
    "CorruptEventError",
    "Database",
    "DatabaseClosedError",
    "DatabaseError",
    "DatabaseSettings",
    "DefinitionError",
    "DefinitionMismatchError",
    "EmbeddedServerError",
    "ErrorClass",
    "ErrorRecordMismatchError",
    "FlowCompleted",
    "FlowDefinition",
    "FlowEngine",
    "FlowEvent",
    "FlowEventKind",
    "FlowInitialized",
    "FlowInstance",
    "FlowNotFoundError",
    "FlowRepository",
    "ForwardStep",
    "InMemoryEventStore",
    "InMemoryFlowRepository",
    "InvalidEventError",
    "InvalidExpectedVersionError",
    "InvalidFlowIdError",
    "InvalidInputError",
    "MigrationError",
    "MissingArtifactError",
    "PayloadTooLargeError",
    "PermanentStepError",
    "PgEventStore",
    "PgFlowRepository",
    "PoolTimeoutError",
    "PrintAndCountStep",
    "PropertyPreferenceAssigned",
    "QueueSettings",
    "ReplayError",
    "RetryMetrics",
    "RetryPolicy",
    "RetryScheduled",
    "SeedStep",
    "SplitStep",
    "Step",
    "StepContext",
    "StepError",
    "StepErrorInfo",
    "StepExecutionError",
    "StepFailed",
    "StepFinished",
    "StepOutput",
    "StepSignal",
    "StepSlot",
    "StepStarted",
    "StepStatus",
    "StepValidationError",
    "StoreSettings",
    "TransientDatabaseError",
    "TransientStepError",
    "UnlistedArtifactError",
    "UnstorableValueError",
    "WorkerSettings",
    "__version__",
    "artifact_hash",
    "canonical_json",
    "classify_error",
    "content_hash",
    "demo_definition",
    "flow_fingerprint",
    "migrate",
    "replay",
    "retry_transient",
    "step_fingerprint",
    "transient_reason",
]
