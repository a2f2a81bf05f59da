"""Workflow records (SPEC 9.1): what an operator reads about runs and stages.

``FlowRecorder`` is the engine's side of it: after every append of a flow's events, in the SAME
unit of work, the engine hands the recorder the flow as it now is, so the records (a projection
of the event log) can never disagree with it for good. A store that ``carries`` the recorder
(``RecordingEventStore``: PostgreSQL's with its database's ``WorkflowRecords``) writes them in the
append itself instead: one statement, no unit of work of their own.

``WorkflowRecordsPort`` is the whole records API of reference design 004 in snake_case, met by
``WorkflowRecords(db)`` and ``InMemoryWorkflowRecords()`` (one contract suite). Every method takes
``tx=`` like the other stores.
"""

from __future__ import annotations

import builtins
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol, TypeVar, runtime_checkable
from uuid import UUID

from chem_persistence_async.domain.artifacts import Artifact
from chem_persistence_async.domain.events import FlowEvent, FlowEventKind
from chem_persistence_async.domain.flow import FlowDefinition, FlowInstance
from chem_persistence_async.domain.projection import FlowProjection
from chem_persistence_async.domain.records import (
    UNSET,
    ArtifactType,
    LogLevel,
    Status,
    Unset,
    WorkflowArtifactRecord,
    WorkflowLogRecord,
    WorkflowRunRecord,
    WorkflowStageRecord,
)
from chem_persistence_async.ports.unit_of_work import Transaction

T = TypeVar("T")


class FlowRecorder(Protocol):
    async def record_flow(
        self,
        instance: FlowInstance,
        definition: FlowDefinition,
        events: Sequence[FlowEvent],
        *,
        tx: Transaction,
    ) -> None:
        """Bring the flow's run and stage records up to ``instance`` (the state right after
        ``events`` were appended in ``tx``)."""
        ...


@runtime_checkable
class RecordingEventStore(Protocol):
    """An event store that can write a recorder's records as part of an append itself (on
    PostgreSQL, in the append's one statement): no unit of work opened for them, no round trip of
    their own, and still no way for a crash to leave records and events disagreeing."""

    def carries(self, recorder: FlowRecorder) -> bool:
        """Whether ``append_recorded`` can write ``recorder``'s records (same backend, same database)."""
        ...

    async def append_recorded(
        self,
        flow_id: UUID,
        kinds: Sequence[FlowEventKind],
        records: FlowProjection,
        *,
        recorder: FlowRecorder,
        expected_version: int,
        artifacts: Iterable[Artifact] = (),
        event_ids: Sequence[UUID] | None = None,
        tx: Transaction | None = None,
    ) -> builtins.list[FlowEvent]:
        """``append_many`` at ``expected_version`` that also merges ``records`` (the flow's projection
        after these events, its times ``APPEND_TIME``) into ``recorder``'s runs and stages, if and
        only if it writes the events: a conflict records nothing, and neither does a retry that finds
        its events stored already (their first write recorded them)."""
        ...


class FlowLister(Protocol):
    """What ``records rebuild`` needs of an event store besides reading a flow: its flows."""

    async def flow_ids(
        self, *, after: UUID | None = None, limit: int = 1000, tx: Transaction | None = None
    ) -> builtins.list[UUID]:
        """Ids of flows with events, ascending, after ``after``; at most ``limit``."""
        ...


class WorkflowRecordsPort(FlowRecorder, Protocol):
    # --- runs ---------------------------------------------------------------------------------

    async def create_run(
        self,
        *,
        workflow_id: str,
        workflow_name: str,
        workflow_type: str,
        input: Any,
        id: UUID | str | None = None,
        config: Any = None,
        priority: int = 5,
        tx: Transaction | None = None,
    ) -> WorkflowRunRecord:
        """A new run (``PENDING``); ``RecordExistsError`` if ``id`` is taken."""
        ...

    async def update_run(
        self,
        run_id: UUID | str,
        *,
        status: Status | str | Unset = UNSET,
        started_at: datetime | Unset | None = UNSET,
        completed_at: datetime | Unset | None = UNSET,
        duration: int | Unset | None = UNSET,
        output: Any = UNSET,
        total_cost: float | Unset = UNSET,
        total_tokens: int | Unset = UNSET,
        tx: Transaction | None = None,
    ) -> None:
        """Change the given fields (UNSET ones stay); ``RunNotFoundError`` if there is no such run."""
        ...

    async def get_run(
        self, run_id: UUID | str, *, tx: Transaction | None = None
    ) -> WorkflowRunRecord | None: ...

    async def get_run_status(self, run_id: UUID | str, *, tx: Transaction | None = None) -> Status | None: ...

    async def get_runs_by_status(
        self, status: Status | str, *, limit: int | None = None, tx: Transaction | None = None
    ) -> builtins.list[WorkflowRunRecord]:
        """Runs in ``status``, oldest first (``created_at``, then id)."""
        ...

    async def list_runs(
        self,
        *,
        status: Status | str | None = None,
        workflow_type: str | None = None,
        limit: int = 100,
        tx: Transaction | None = None,
    ) -> builtins.list[WorkflowRunRecord]:
        """The newest runs first (``created_at`` descending, then id descending), filtered."""
        ...

    async def delete_run(self, run_id: UUID | str, *, tx: Transaction | None = None) -> bool:
        """Delete a run with its stages, logs and artifacts (the cascades); False if there was none."""
        ...

    # --- stages ---------------------------------------------------------------------------------

    async def create_stage(
        self,
        *,
        workflow_run_id: UUID | str,
        stage_id: str,
        stage_name: str,
        stage_number: int,
        execution_group: int,
        status: Status | str | Unset = UNSET,
        started_at: datetime | Unset | None = UNSET,
        config: Any = UNSET,
        input_data: Any = UNSET,
        tx: Transaction | None = None,
    ) -> WorkflowStageRecord:
        """A new stage; ``RunNotFoundError`` without its run, ``RecordExistsError`` if the run
        already has ``stage_id``."""
        ...

    async def upsert_stage(
        self,
        *,
        workflow_run_id: UUID | str,
        stage_id: str,
        stage_name: str,
        stage_number: int,
        execution_group: int,
        status: Status | str | Unset = UNSET,
        started_at: datetime | Unset | None = UNSET,
        config: Any = UNSET,
        input_data: Any = UNSET,
        tx: Transaction | None = None,
    ) -> WorkflowStageRecord:
        """``create_stage``, or, when the run has ``stage_id``, that stage updated in place (its id
        kept; optional fields not given stay as they are)."""
        ...

    async def update_stage(self, id: UUID | str, *, tx: Transaction | None = None, **fields: Any) -> None:
        """Change the given fields (``STAGE_UPDATE_FIELDS``); ``StageNotFoundError`` if none."""
        ...

    async def update_stage_by_run_and_stage_id(
        self, run_id: UUID | str, stage_id: str, *, tx: Transaction | None = None, **fields: Any
    ) -> None: ...

    async def get_stage(
        self, run_id: UUID | str, stage_id: str, *, tx: Transaction | None = None
    ) -> WorkflowStageRecord | None: ...

    async def get_stage_by_id(
        self, id: UUID | str, *, tx: Transaction | None = None
    ) -> WorkflowStageRecord | None: ...

    async def get_stages_by_run(
        self,
        run_id: UUID | str,
        *,
        status: Status | str | None = None,
        execution_group: int | None = None,
        tx: Transaction | None = None,
    ) -> builtins.list[WorkflowStageRecord]:
        """The run's stages by execution group, then stage number."""
        ...

    async def get_suspended_stages(
        self, before: datetime, *, tx: Transaction | None = None
    ) -> builtins.list[WorkflowStageRecord]:
        """Suspended stages whose ``next_poll_at`` is at or before ``before``, earliest first."""
        ...

    async def get_first_suspended_stage_ready_to_resume(
        self, run_id: UUID | str, *, tx: Transaction | None = None
    ) -> WorkflowStageRecord | None:
        """The first (by group, then number) suspended stage whose poll was cleared
        (``next_poll_at`` is NULL): what the design's orchestrator resumes next."""
        ...

    async def get_first_failed_stage(
        self, run_id: UUID | str, *, tx: Transaction | None = None
    ) -> WorkflowStageRecord | None: ...

    async def get_last_completed_stage(
        self, run_id: UUID | str, *, tx: Transaction | None = None
    ) -> WorkflowStageRecord | None: ...

    async def get_last_completed_stage_before(
        self, run_id: UUID | str, execution_group: int, *, tx: Transaction | None = None
    ) -> WorkflowStageRecord | None:
        """The last completed stage of an execution group lower than ``execution_group``."""
        ...

    async def delete_stage(self, id: UUID | str, *, tx: Transaction | None = None) -> bool:
        """Delete a stage with its logs and artifacts; False if there was none."""
        ...

    # --- logs -----------------------------------------------------------------------------------

    async def create_log(
        self,
        *,
        level: LogLevel | str,
        message: str,
        workflow_run_id: UUID | str | None = None,
        workflow_stage_id: UUID | str | None = None,
        metadata: Any = None,
        tx: Transaction | None = None,
    ) -> None: ...

    async def get_logs(
        self, run_id: UUID | str, *, limit: int = 1000, tx: Transaction | None = None
    ) -> builtins.list[WorkflowLogRecord]:
        """The run's logs in the order they were written (the first ``limit``)."""
        ...

    # --- artifacts ------------------------------------------------------------------------------

    async def save_artifact(
        self,
        workflow_run_id: UUID | str,
        key: str,
        type: ArtifactType | str,
        data: Any,
        *,
        workflow_stage_id: UUID | str | None = None,
        metadata: Any = None,
        tx: Transaction | None = None,
    ) -> WorkflowArtifactRecord:
        """Store ``data`` as JSON under ``key`` (replacing what the key held); ``size`` is its
        canonical JSON's length in bytes."""
        ...

    async def load_artifact(self, run_id: UUID | str, key: str, *, tx: Transaction | None = None) -> Any:
        """The artifact's data; ``ArtifactNotFoundError`` if the run has no such key."""
        ...

    async def has_artifact(self, run_id: UUID | str, key: str, *, tx: Transaction | None = None) -> bool: ...

    async def delete_artifact(
        self, run_id: UUID | str, key: str, *, tx: Transaction | None = None
    ) -> bool: ...

    async def list_artifacts(
        self, run_id: UUID | str, *, tx: Transaction | None = None
    ) -> builtins.list[WorkflowArtifactRecord]:
        """The run's artifacts by key."""
        ...

    async def get_stage_id_for_artifact(
        self, run_id: UUID | str, stage_id: str, *, tx: Transaction | None = None
    ) -> UUID | None:
        """The id of the run's stage record ``stage_id`` (for ``workflow_stage_id``), or None."""
        ...

    async def save_stage_output(
        self,
        run_id: UUID | str,
        workflow_type: str,
        stage_id: str,
        output: Any,
        *,
        tx: Transaction | None = None,
    ) -> str:
        """Save ``output`` as the stage's ``STAGE_OUTPUT`` artifact; returns its key."""
        ...

    # --- the projection of engine flows ---------------------------------------------------------

    async def rebuild_flow(
        self,
        instance: FlowInstance,
        definition: FlowDefinition,
        events: Sequence[FlowEvent],
        *,
        tx: Transaction | None = None,
    ) -> bool:
        """Replace the flow's run and stage records with the projection of ``events`` (all of its
        log); False when the stored records already reflect a later version (left alone)."""
        ...

    async def rebuild_flows(
        self,
        flows: Sequence[tuple[FlowInstance, FlowDefinition, Sequence[FlowEvent]]],
        *,
        tx: Transaction | None = None,
    ) -> builtins.list[bool]:
        """``rebuild_flow`` of several flows (``(instance, definition, whole log)`` each), in order:
        for each, False when its stored records already reflect a later version."""
        ...

    def transaction(self) -> AbstractAsyncContextManager[Transaction]: ...

    async def run_in_transaction(self, fn: Callable[[Transaction], Awaitable[T]]) -> T: ...
