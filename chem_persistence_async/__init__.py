"""chem-persistence-async: durable, asyncio-native PostgreSQL persistence for an event-sourced
workflow engine. The public API, re-exported."""

from importlib import metadata as _metadata

from chem_persistence_async.backends.memory.ai_calls import InMemoryAICallLogger
from chem_persistence_async.backends.memory.backend import InMemoryBackend
from chem_persistence_async.backends.memory.definitions import InMemoryDefinitionRegistry
from chem_persistence_async.backends.memory.event_store import InMemoryEventStore
from chem_persistence_async.backends.memory.records import InMemoryWorkflowRecords
from chem_persistence_async.backends.memory.transaction import MemoryTransaction
from chem_persistence_async.backends.memory.work_queue import InMemoryWorkQueue
from chem_persistence_async.backends.postgres.ai_calls import AICallLogger
from chem_persistence_async.backends.postgres.database import Database
from chem_persistence_async.backends.postgres.definitions import DefinitionRegistry
from chem_persistence_async.backends.postgres.event_store import PgEventStore
from chem_persistence_async.backends.postgres.migrations import migrate
from chem_persistence_async.backends.postgres.records import WorkflowRecords
from chem_persistence_async.backends.postgres.retry import (
    BackoffPolicy,
    RetryMetrics,
    retry_transient,
    transient_reason,
)
from chem_persistence_async.backends.postgres.transaction import PgTransaction
from chem_persistence_async.backends.postgres.work_queue import WorkQueue
from chem_persistence_async.domain.ai_calls import AICall, AIHelperStats, ModelStats
from chem_persistence_async.domain.artifacts import Artifact, artifact_hash
from chem_persistence_async.domain.canonical import canonical_json, content_hash
from chem_persistence_async.domain.definitions import DefinitionRecord
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
    StepSuspended,
)
from chem_persistence_async.domain.failures import ErrorClass, StepErrorInfo, StepExecutionError
from chem_persistence_async.domain.fingerprints import flow_fingerprint, step_fingerprint
from chem_persistence_async.domain.flow import (
    FlowDefinition,
    FlowInstance,
    ReceivedSignal,
    StepSlot,
    StepStatus,
)
from chem_persistence_async.domain.jobs import Job, JobInfo, JobSpec, JobState, QueueDepth
from chem_persistence_async.domain.positions import Position, PositionedEvent
from chem_persistence_async.domain.projection import FlowProjection, project_flow
from chem_persistence_async.domain.records import (
    UNSET,
    ArtifactType,
    LogLevel,
    Status,
    WorkflowArtifactRecord,
    WorkflowLogRecord,
    WorkflowRunRecord,
    WorkflowStageRecord,
)
from chem_persistence_async.engine.demo import (
    ForwardStep,
    PrintAndCountStep,
    SeedStep,
    SplitStep,
    demo_definition,
)
from chem_persistence_async.engine.engine import FlowEngine
from chem_persistence_async.engine.records import RebuildReport, RecordsFollower, rebuild_records
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
    Suspend,
    TransientStepError,
    classify_error,
)
from chem_persistence_async.errors import (
    ArtifactError,
    ArtifactHashMismatchError,
    ArtifactNotFoundError,
    ChemPersistError,
    ConcurrencyConflict,
    ConfigurationError,
    ConstraintViolationError,
    CorruptEventError,
    DatabaseClosedError,
    DatabaseError,
    DefinitionError,
    DefinitionMismatchError,
    EmbeddedServerError,
    ErrorRecordMismatchError,
    FlowFinishedError,
    FlowNotFoundError,
    InvalidEventError,
    InvalidExpectedVersionError,
    InvalidFlowIdError,
    InvalidInputError,
    JobCancelledError,
    JobError,
    JsonNestingError,
    LeaseLostError,
    LoggerClosedError,
    MigrationError,
    MissingArtifactError,
    PayloadTooLargeError,
    PoolTimeoutError,
    RecordExistsError,
    RecordNotFoundError,
    ReplayError,
    RunNotFoundError,
    StageNotFoundError,
    StepInProgressError,
    TransactionError,
    TransientDatabaseError,
    UnknownDefinitionError,
    UnknownStatusError,
    UnlistedArtifactError,
    UnstorableValueError,
    ValueOutOfRangeError,
)
from chem_persistence_async.ports.ai_calls import AICallLoggerPort
from chem_persistence_async.ports.backend import Backend
from chem_persistence_async.ports.event_store import AsyncEventStore, FlowMark, FlowRecord
from chem_persistence_async.ports.records import FlowRecorder, WorkflowRecordsPort
from chem_persistence_async.ports.unit_of_work import Transaction
from chem_persistence_async.ports.work_queue import WorkQueuePort
from chem_persistence_async.replay import replay
from chem_persistence_async.settings import (
    ConnectionSettings,
    DatabaseSettings,
    QueueSettings,
    StoreSettings,
    WorkerSettings,
)
from chem_persistence_async.worker.subscriptions import Subscriptions
from chem_persistence_async.worker.worker import Worker, WorkerStats

try:
    __version__: str = _metadata.version("chem-persistence-async")
    """The installed distribution's version (from its metadata, so it cannot drift from pyproject)."""
except _metadata.PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "UNSET",
    "AICall",
    "AICallLogger",
    "AICallLoggerPort",
    "AIHelperStats",
    "Artifact",
    "ArtifactError",
    "ArtifactHashMismatchError",
    "ArtifactNotFoundError",
    "ArtifactType",
    "AsyncEventStore",
    "Backend",
    "BackoffPolicy",
    "ChemPersistError",
    "ConcurrencyConflict",
    "ConfigurationError",
    "ConnectionSettings",
    "ConstraintViolationError",
    "CorruptEventError",
    "Database",
    "DatabaseClosedError",
    "DatabaseError",
    "DatabaseSettings",
    "DefinitionError",
    "DefinitionMismatchError",
    "DefinitionRecord",
    "DefinitionRegistry",
    "EmbeddedServerError",
    "ErrorClass",
    "ErrorRecordMismatchError",
    "FlowCompleted",
    "FlowDefinition",
    "FlowEngine",
    "FlowEvent",
    "FlowEventKind",
    "FlowFinishedError",
    "FlowInitialized",
    "FlowInstance",
    "FlowMark",
    "FlowNotFoundError",
    "FlowProjection",
    "FlowRecord",
    "FlowRecorder",
    "FlowRepository",
    "ForwardStep",
    "InMemoryAICallLogger",
    "InMemoryBackend",
    "InMemoryDefinitionRegistry",
    "InMemoryEventStore",
    "InMemoryFlowRepository",
    "InMemoryWorkQueue",
    "InMemoryWorkflowRecords",
    "InvalidEventError",
    "InvalidExpectedVersionError",
    "InvalidFlowIdError",
    "InvalidInputError",
    "Job",
    "JobCancelledError",
    "JobError",
    "JobInfo",
    "JobSpec",
    "JobState",
    "JsonNestingError",
    "LeaseLostError",
    "LogLevel",
    "LoggerClosedError",
    "MemoryTransaction",
    "MigrationError",
    "MissingArtifactError",
    "ModelStats",
    "PayloadTooLargeError",
    "PermanentStepError",
    "PgEventStore",
    "PgFlowRepository",
    "PgTransaction",
    "PoolTimeoutError",
    "Position",
    "PositionedEvent",
    "PrintAndCountStep",
    "PropertyPreferenceAssigned",
    "QueueDepth",
    "QueueSettings",
    "RebuildReport",
    "ReceivedSignal",
    "RecordExistsError",
    "RecordNotFoundError",
    "RecordsFollower",
    "ReplayError",
    "RetryMetrics",
    "RetryPolicy",
    "RetryScheduled",
    "RunNotFoundError",
    "SeedStep",
    "SplitStep",
    "StageNotFoundError",
    "Status",
    "Step",
    "StepContext",
    "StepError",
    "StepErrorInfo",
    "StepExecutionError",
    "StepFailed",
    "StepFinished",
    "StepInProgressError",
    "StepOutput",
    "StepSignal",
    "StepSlot",
    "StepStarted",
    "StepStatus",
    "StepSuspended",
    "StepValidationError",
    "StoreSettings",
    "Subscriptions",
    "Suspend",
    "Transaction",
    "TransactionError",
    "TransientDatabaseError",
    "TransientStepError",
    "UnknownDefinitionError",
    "UnknownStatusError",
    "UnlistedArtifactError",
    "UnstorableValueError",
    "ValueOutOfRangeError",
    "WorkQueue",
    "WorkQueuePort",
    "Worker",
    "WorkerSettings",
    "WorkerStats",
    "WorkflowArtifactRecord",
    "WorkflowLogRecord",
    "WorkflowRecords",
    "WorkflowRecordsPort",
    "WorkflowRunRecord",
    "WorkflowStageRecord",
    "__version__",
    "artifact_hash",
    "canonical_json",
    "classify_error",
    "content_hash",
    "demo_definition",
    "flow_fingerprint",
    "migrate",
    "project_flow",
    "rebuild_records",
    "replay",
    "retry_transient",
    "step_fingerprint",
    "transient_reason",
]
