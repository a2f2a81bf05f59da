"""``InMemoryWorkflowRecords``: the reference semantics of the workflow records (SPEC 9.1).

Every method checks its arguments with the domain's checks (the same as PostgreSQL's) and then
finishes its change without awaiting, so concurrent tasks see each one as atomic. Inside a unit of
work (``tx=``) each change records how to undo itself. ``clock`` stands for the database clock
(``created_at``, ``updated_at``); records are returned as copies, never the stored objects.
"""

from __future__ import annotations

import builtins
import copy
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID, uuid4

from chem_persistence_async.backends.memory.transaction import (
    MemoryTransaction,
    memory_transaction,
    memory_tx,
    run_in_memory_transaction,
)
from chem_persistence_async.backends.records_base import WorkflowRecordsBase
from chem_persistence_async.domain.ids import check_aware, check_int, check_name
from chem_persistence_async.domain.projection import FlowProjection, StageProjection
from chem_persistence_async.domain.records import (
    DEFAULT_MAX_JSON_BYTES,
    UNSET,
    ArtifactType,
    Json,
    LogLevel,
    NewArtifact,
    NewLog,
    NewRun,
    NewStage,
    Status,
    Unset,
    WorkflowArtifactRecord,
    WorkflowLogRecord,
    WorkflowRunRecord,
    WorkflowStageRecord,
    check_artifact_key,
    check_limit,
    check_status,
    check_uuid,
    duration_ms,
    merged_times,
    run_changes,
    run_order,
    stage_changes,
    stage_order,
)
from chem_persistence_async.errors import (
    ArtifactNotFoundError,
    RecordExistsError,
    RunNotFoundError,
    StageNotFoundError,
)
from chem_persistence_async.ports.unit_of_work import Transaction

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")

_MISSING: Any = object()


class _Changes:
    """One operation's changes to the tables, with how to undo them inside a unit of work."""

    __slots__ = ("_journal", "_undo")

    def __init__(self, journal: MemoryTransaction | None) -> None:
        self._journal = journal
        self._undo: list[tuple[dict[Any, Any], Any, Any]] = []

    def set(self, table: dict[K, V], key: K, value: V) -> None:
        if self._journal is not None:
            self._undo.append((table, key, table.get(key, _MISSING)))
        table[key] = value

    def delete(self, table: dict[K, V], key: K) -> None:
        if key not in table:
            return
        if self._journal is not None:
            self._undo.append((table, key, table[key]))
        del table[key]

    def now(self, clock: Callable[[], datetime]) -> datetime:
        """``now()``: the unit of work's time (``MemoryTransaction.now``), else the clock's."""
        return clock() if self._journal is None else self._journal.now(clock)

    def done(self) -> None:
        if self._journal is None or not self._undo:
            return
        undo = self._undo

        def rollback() -> None:
            for table, key, old in reversed(undo):
                if old is _MISSING:
                    table.pop(key, None)
                else:
                    table[key] = old

        self._journal.record_undo(rollback)


def _json(value: Json | None) -> Any:
    return None if value is None else value.value


class InMemoryWorkflowRecords(WorkflowRecordsBase):
    """The ``WorkflowRecordsPort`` in a process's memory (tests, notebooks, the parity reference)."""

    def __init__(
        self,
        *,
        clock: Callable[[], datetime] | None = None,
        max_payload_bytes: int = DEFAULT_MAX_JSON_BYTES,
    ) -> None:
        self._clock = clock or (lambda: datetime.now(UTC))
        self._max = max_payload_bytes
        self._runs: dict[UUID, WorkflowRunRecord] = {}
        self._stages: dict[UUID, WorkflowStageRecord] = {}
        self._stage_keys: dict[tuple[UUID, str], UUID] = {}
        self._logs: dict[UUID, tuple[int, WorkflowLogRecord]] = {}
        self._log_seq = 0
        self._artifacts: dict[tuple[UUID, str], WorkflowArtifactRecord] = {}

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        return memory_transaction()

    async def run_in_transaction(self, fn: Callable[[Transaction], Awaitable[T]]) -> T:
        return await run_in_memory_transaction(fn)

    # --- runs -------------------------------------------------------------------------------

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
        run = NewRun.checked(
            id=uuid4() if id is None else id,
            workflow_id=workflow_id,
            workflow_name=workflow_name,
            workflow_type=workflow_type,
            input=input,
            config=config,
            priority=priority,
            max_bytes=self._max,
        )
        changes = _Changes(memory_tx(tx))
        if run.id in self._runs:
            raise RecordExistsError(f"a workflow run with id {run.id} already exists")
        now = changes.now(self._clock)
        record = WorkflowRunRecord(
            id=run.id,
            created_at=now,
            updated_at=now,
            workflow_id=run.workflow_id,
            workflow_name=run.workflow_name,
            workflow_type=run.workflow_type,
            status=Status.PENDING,
            started_at=None,
            completed_at=None,
            duration=None,
            input=run.input.value,
            output=None,
            config=run.config.value,
            total_cost=0.0,
            total_tokens=0,
            priority=run.priority,
            flow_version=None,
        )
        changes.set(self._runs, run.id, record)
        changes.done()
        return copy.deepcopy(record)

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
        rid = check_uuid(run_id, "run_id")
        fields = run_changes(
            {
                "status": status,
                "started_at": started_at,
                "completed_at": completed_at,
                "duration": duration,
                "output": output,
                "total_cost": total_cost,
                "total_tokens": total_tokens,
            },
            max_bytes=self._max,
        )
        changes = _Changes(memory_tx(tx))
        run = self._runs.get(rid)
        if run is None:
            raise RunNotFoundError(f"no workflow run {rid}")
        if fields:
            values = {name: _json(v) if isinstance(v, Json) else v for name, v in fields.items()}
            changes.set(self._runs, rid, replace(run, updated_at=changes.now(self._clock), **values))
        changes.done()

    async def get_run(self, run_id: UUID | str, *, tx: Transaction | None = None) -> WorkflowRunRecord | None:
        memory_tx(tx)
        run = self._runs.get(check_uuid(run_id, "run_id"))
        return None if run is None else copy.deepcopy(run)

    async def get_run_status(self, run_id: UUID | str, *, tx: Transaction | None = None) -> Status | None:
        memory_tx(tx)
        run = self._runs.get(check_uuid(run_id, "run_id"))
        return None if run is None else run.status

    async def get_runs_by_status(
        self, status: Status | str, *, limit: int | None = None, tx: Transaction | None = None
    ) -> builtins.list[WorkflowRunRecord]:
        memory_tx(tx)
        wanted = check_status(status)
        count = None if limit is None else check_limit(limit)
        runs = sorted((r for r in self._runs.values() if r.status is wanted), key=run_order)
        return copy.deepcopy(runs[:count])

    async def list_runs(
        self,
        *,
        status: Status | str | None = None,
        workflow_type: str | None = None,
        limit: int = 100,
        tx: Transaction | None = None,
    ) -> builtins.list[WorkflowRunRecord]:
        memory_tx(tx)
        wanted = None if status is None else check_status(status)
        kind = None if workflow_type is None else check_name(workflow_type, "workflow_type")
        count = check_limit(limit)
        runs = [
            r
            for r in self._runs.values()
            if (wanted is None or r.status is wanted) and (kind is None or r.workflow_type == kind)
        ]
        runs.sort(key=run_order, reverse=True)
        return copy.deepcopy(runs[:count])

    async def delete_run(self, run_id: UUID | str, *, tx: Transaction | None = None) -> bool:
        rid = check_uuid(run_id, "run_id")
        changes = _Changes(memory_tx(tx))
        if rid not in self._runs:
            return False
        for stage in [s for s in self._stages.values() if s.workflow_run_id == rid]:
            self._delete_stage(stage, changes)
        for log_id in [i for i, (_, log) in self._logs.items() if log.workflow_run_id == rid]:
            changes.delete(self._logs, log_id)
        for key in [k for k in self._artifacts if k[0] == rid]:
            changes.delete(self._artifacts, key)
        changes.delete(self._runs, rid)
        changes.done()
        return True

    # --- stages -----------------------------------------------------------------------------

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
        stage = NewStage.checked(
            workflow_run_id=workflow_run_id,
            stage_id=stage_id,
            stage_name=stage_name,
            stage_number=stage_number,
            execution_group=execution_group,
            status=status,
            started_at=started_at,
            config=config,
            input_data=input_data,
            max_bytes=self._max,
        )
        changes = _Changes(memory_tx(tx))
        self._require_run(stage.workflow_run_id)
        if (stage.workflow_run_id, stage.stage_id) in self._stage_keys:
            raise RecordExistsError(f"run {stage.workflow_run_id} already has a stage {stage.stage_id!r}")
        record = self._insert_stage(stage, changes)
        changes.done()
        return copy.deepcopy(record)

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
        stage = NewStage.checked(
            workflow_run_id=workflow_run_id,
            stage_id=stage_id,
            stage_name=stage_name,
            stage_number=stage_number,
            execution_group=execution_group,
            status=status,
            started_at=started_at,
            config=config,
            input_data=input_data,
            max_bytes=self._max,
        )
        changes = _Changes(memory_tx(tx))
        self._require_run(stage.workflow_run_id)
        existing = self._stage_keys.get((stage.workflow_run_id, stage.stage_id))
        if existing is None:
            record = self._insert_stage(stage, changes)
        else:
            given = {name: _json(v) if isinstance(v, Json) else v for name, v in stage.given().items()}
            record = replace(
                self._stages[existing],
                stage_name=stage.stage_name,
                stage_number=stage.stage_number,
                execution_group=stage.execution_group,
                updated_at=changes.now(self._clock),
                **given,
            )
            changes.set(self._stages, existing, record)
        changes.done()
        return copy.deepcopy(record)

    def _require_run(self, run_id: UUID) -> None:
        if run_id not in self._runs:
            raise RunNotFoundError(f"no workflow run {run_id}")

    def _insert_stage(self, stage: NewStage, changes: _Changes) -> WorkflowStageRecord:
        now = changes.now(self._clock)
        record = WorkflowStageRecord(
            id=uuid4(),
            created_at=now,
            updated_at=now,
            workflow_run_id=stage.workflow_run_id,
            stage_id=stage.stage_id,
            stage_name=stage.stage_name,
            stage_number=stage.stage_number,
            execution_group=stage.execution_group,
            status=Status.PENDING if isinstance(stage.status, Unset) else stage.status,
            started_at=None if isinstance(stage.started_at, Unset) else stage.started_at,
            completed_at=None,
            duration=None,
            input_data=None if isinstance(stage.input_data, Unset) else _json(stage.input_data),
            output_data=None,
            config=None if isinstance(stage.config, Unset) else _json(stage.config),
            suspended_state=None,
            resume_data=None,
            next_poll_at=None,
            poll_interval=None,
            max_wait_until=None,
            metrics=None,
            embedding_info=None,
            error_message=None,
        )
        changes.set(self._stages, record.id, record)
        changes.set(self._stage_keys, (record.workflow_run_id, record.stage_id), record.id)
        return record

    async def update_stage(self, id: UUID | str, *, tx: Transaction | None = None, **fields: Any) -> None:
        sid = check_uuid(id, "id")
        checked = stage_changes(fields, max_bytes=self._max)
        changes = _Changes(memory_tx(tx))
        if sid not in self._stages:
            raise StageNotFoundError(f"no workflow stage {sid}")
        self._update_stage(sid, checked, changes)

    async def update_stage_by_run_and_stage_id(
        self, run_id: UUID | str, stage_id: str, *, tx: Transaction | None = None, **fields: Any
    ) -> None:
        key = (check_uuid(run_id, "run_id"), check_name(stage_id, "stage_id"))
        checked = stage_changes(fields, max_bytes=self._max)
        changes = _Changes(memory_tx(tx))
        sid = self._stage_keys.get(key)
        if sid is None:
            raise StageNotFoundError(f"no workflow stage {key[1]!r} in run {key[0]}")
        self._update_stage(sid, checked, changes)

    def _update_stage(self, sid: UUID, checked: Mapping[str, Any], changes: _Changes) -> None:
        if checked:
            values = {name: _json(v) if isinstance(v, Json) else v for name, v in checked.items()}
            changes.set(
                self._stages, sid, replace(self._stages[sid], updated_at=changes.now(self._clock), **values)
            )
        changes.done()

    async def get_stage(
        self, run_id: UUID | str, stage_id: str, *, tx: Transaction | None = None
    ) -> WorkflowStageRecord | None:
        memory_tx(tx)
        sid = self._stage_keys.get((check_uuid(run_id, "run_id"), check_name(stage_id, "stage_id")))
        return None if sid is None else copy.deepcopy(self._stages[sid])

    async def get_stage_by_id(
        self, id: UUID | str, *, tx: Transaction | None = None
    ) -> WorkflowStageRecord | None:
        memory_tx(tx)
        stage = self._stages.get(check_uuid(id, "id"))
        return None if stage is None else copy.deepcopy(stage)

    def _run_stages(self, run_id: UUID) -> builtins.list[WorkflowStageRecord]:
        return sorted((s for s in self._stages.values() if s.workflow_run_id == run_id), key=stage_order)

    async def get_stages_by_run(
        self,
        run_id: UUID | str,
        *,
        status: Status | str | None = None,
        execution_group: int | None = None,
        tx: Transaction | None = None,
    ) -> builtins.list[WorkflowStageRecord]:
        memory_tx(tx)
        rid = check_uuid(run_id, "run_id")
        wanted = None if status is None else check_status(status)
        group = None if execution_group is None else check_int(execution_group, "execution_group")
        return copy.deepcopy(
            [
                s
                for s in self._run_stages(rid)
                if (wanted is None or s.status is wanted) and (group is None or s.execution_group == group)
            ]
        )

    async def get_suspended_stages(
        self, before: datetime, *, tx: Transaction | None = None
    ) -> builtins.list[WorkflowStageRecord]:
        memory_tx(tx)
        limit = check_aware(before, "before")
        found = [
            s
            for s in self._stages.values()
            if s.status is Status.SUSPENDED and s.next_poll_at is not None and s.next_poll_at <= limit
        ]
        found.sort(key=lambda s: (s.next_poll_at, s.id))
        return copy.deepcopy(found)

    def _first(
        self, run_id: UUID | str, keep: Callable[[WorkflowStageRecord], bool], *, last: bool = False
    ) -> Any:
        stages = [s for s in self._run_stages(check_uuid(run_id, "run_id")) if keep(s)]
        if not stages:
            return None
        return copy.deepcopy(stages[-1] if last else stages[0])

    async def get_first_suspended_stage_ready_to_resume(
        self, run_id: UUID | str, *, tx: Transaction | None = None
    ) -> WorkflowStageRecord | None:
        memory_tx(tx)
        stage: WorkflowStageRecord | None = self._first(
            run_id, lambda s: s.status is Status.SUSPENDED and s.next_poll_at is None
        )
        return stage

    async def get_first_failed_stage(
        self, run_id: UUID | str, *, tx: Transaction | None = None
    ) -> WorkflowStageRecord | None:
        memory_tx(tx)
        stage: WorkflowStageRecord | None = self._first(run_id, lambda s: s.status is Status.FAILED)
        return stage

    async def get_last_completed_stage(
        self, run_id: UUID | str, *, tx: Transaction | None = None
    ) -> WorkflowStageRecord | None:
        memory_tx(tx)
        stage: WorkflowStageRecord | None = self._first(
            run_id, lambda s: s.status is Status.COMPLETED, last=True
        )
        return stage

    async def get_last_completed_stage_before(
        self, run_id: UUID | str, execution_group: int, *, tx: Transaction | None = None
    ) -> WorkflowStageRecord | None:
        memory_tx(tx)
        group = check_int(execution_group, "execution_group")
        stage: WorkflowStageRecord | None = self._first(
            run_id, lambda s: s.status is Status.COMPLETED and s.execution_group < group, last=True
        )
        return stage

    async def delete_stage(self, id: UUID | str, *, tx: Transaction | None = None) -> bool:
        sid = check_uuid(id, "id")
        changes = _Changes(memory_tx(tx))
        stage = self._stages.get(sid)
        if stage is None:
            return False
        self._delete_stage(stage, changes)
        changes.done()
        return True

    def _delete_stage(self, stage: WorkflowStageRecord, changes: _Changes) -> None:
        """The stage, and (the cascades) its logs and artifacts."""
        for log_id in [i for i, (_, log) in self._logs.items() if log.workflow_stage_id == stage.id]:
            changes.delete(self._logs, log_id)
        for key in [k for k, a in self._artifacts.items() if a.workflow_stage_id == stage.id]:
            changes.delete(self._artifacts, key)
        changes.delete(self._stage_keys, (stage.workflow_run_id, stage.stage_id))
        changes.delete(self._stages, stage.id)

    # --- logs -------------------------------------------------------------------------------

    async def create_log(
        self,
        *,
        level: LogLevel | str,
        message: str,
        workflow_run_id: UUID | str | None = None,
        workflow_stage_id: UUID | str | None = None,
        metadata: Any = None,
        tx: Transaction | None = None,
    ) -> None:
        log = NewLog.checked(
            level=level,
            message=message,
            workflow_run_id=workflow_run_id,
            workflow_stage_id=workflow_stage_id,
            metadata=metadata,
            max_bytes=self._max,
        )
        changes = _Changes(memory_tx(tx))
        self._require_parents(log.workflow_run_id, log.workflow_stage_id)
        record = WorkflowLogRecord(
            id=uuid4(),
            created_at=changes.now(self._clock),
            workflow_run_id=log.workflow_run_id,
            workflow_stage_id=log.workflow_stage_id,
            level=log.level,
            message=log.message,
            metadata=_json(log.metadata),
        )
        self._log_seq += 1
        changes.set(self._logs, record.id, (self._log_seq, record))
        changes.done()

    def _require_parents(self, run_id: UUID | None, stage_id: UUID | None) -> None:
        if run_id is not None:
            self._require_run(run_id)
        if stage_id is not None and stage_id not in self._stages:
            raise StageNotFoundError(f"no workflow stage {stage_id}")

    async def get_logs(
        self, run_id: UUID | str, *, limit: int = 1000, tx: Transaction | None = None
    ) -> builtins.list[WorkflowLogRecord]:
        memory_tx(tx)
        rid = check_uuid(run_id, "run_id")
        count = check_limit(limit)
        logs = sorted(
            (entry for entry in self._logs.values() if entry[1].workflow_run_id == rid), key=_first_item
        )
        return copy.deepcopy([log for _, log in logs[:count]])

    # --- artifacts --------------------------------------------------------------------------

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
        artifact = NewArtifact.checked(
            workflow_run_id=workflow_run_id,
            key=key,
            type=type,
            data=data,
            workflow_stage_id=workflow_stage_id,
            metadata=metadata,
            max_bytes=self._max,
        )
        changes = _Changes(memory_tx(tx))
        self._require_parents(artifact.workflow_run_id, artifact.workflow_stage_id)
        slot = (artifact.workflow_run_id, artifact.key)
        existing = self._artifacts.get(slot)
        now = changes.now(self._clock)
        record = WorkflowArtifactRecord(
            id=uuid4() if existing is None else existing.id,
            created_at=now if existing is None else existing.created_at,
            updated_at=now,
            workflow_run_id=artifact.workflow_run_id,
            workflow_stage_id=artifact.workflow_stage_id,
            key=artifact.key,
            type=artifact.type,
            data=artifact.data.value,
            size=artifact.size,
            metadata=_json(artifact.metadata),
        )
        changes.set(self._artifacts, slot, record)
        changes.done()
        return copy.deepcopy(record)

    async def load_artifact(self, run_id: UUID | str, key: str, *, tx: Transaction | None = None) -> Any:
        memory_tx(tx)
        rid = check_uuid(run_id, "run_id")
        artifact = self._artifacts.get((rid, check_artifact_key(key)))
        if artifact is None:
            raise ArtifactNotFoundError(f"run {rid} has no artifact {key!r}")
        return copy.deepcopy(artifact.data)

    async def has_artifact(self, run_id: UUID | str, key: str, *, tx: Transaction | None = None) -> bool:
        memory_tx(tx)
        return (check_uuid(run_id, "run_id"), check_artifact_key(key)) in self._artifacts

    async def delete_artifact(self, run_id: UUID | str, key: str, *, tx: Transaction | None = None) -> bool:
        slot = (check_uuid(run_id, "run_id"), check_artifact_key(key))
        changes = _Changes(memory_tx(tx))
        if slot not in self._artifacts:
            return False
        changes.delete(self._artifacts, slot)
        changes.done()
        return True

    async def list_artifacts(
        self, run_id: UUID | str, *, tx: Transaction | None = None
    ) -> builtins.list[WorkflowArtifactRecord]:
        memory_tx(tx)
        rid = check_uuid(run_id, "run_id")
        return copy.deepcopy(
            sorted((a for a in self._artifacts.values() if a.workflow_run_id == rid), key=_key)
        )

    async def get_stage_id_for_artifact(
        self, run_id: UUID | str, stage_id: str, *, tx: Transaction | None = None
    ) -> UUID | None:
        memory_tx(tx)
        return self._stage_keys.get((check_uuid(run_id, "run_id"), check_name(stage_id, "stage_id")))

    # --- the projection of engine flows -----------------------------------------------------

    async def _write_projection(
        self, projection: FlowProjection, replace: bool, tx: Transaction | None
    ) -> bool:
        return self._write(projection, replace, memory_tx(tx))

    def merge_projection(self, projection: FlowProjection, journal: MemoryTransaction | None) -> None:
        """Merge the projection of an append just made (``InMemoryEventStore.append_recorded``),
        without awaiting: the same change ``record_flow`` makes."""
        self._write(projection, False, journal)

    def _write(
        self, projection: FlowProjection, replace_all: bool, journal: MemoryTransaction | None
    ) -> bool:
        """The rules of ``sql.records.RECORD_FLOW``, applied to the dicts."""
        p = projection.run
        old = self._runs.get(p.run_id)
        if old is not None and (old.flow_version or 0) > p.flow_version:
            return False
        if old is None and p.stored and not replace_all:
            return False  # deleted by hand since the writer's own append: ``records rebuild`` writes it
        changes = _Changes(journal)
        now = changes.now(self._clock)
        created = p.created_at or (now if old is None else old.created_at)
        fixed = None if replace_all else old  # what the flow's start fixed: made, or rebuilt, only
        started, completed, duration = merged_times(
            p.status,
            None if old is None else old.started_at,
            None if old is None else old.completed_at,
            p.started_at,
            p.completed_at,
            replace=replace_all,
        )
        run = WorkflowRunRecord(
            id=p.run_id,
            created_at=created,
            updated_at=now,
            workflow_id=p.workflow_id if fixed is None else fixed.workflow_id,
            workflow_name=p.workflow_name if fixed is None else fixed.workflow_name,
            workflow_type=p.workflow_type if fixed is None else fixed.workflow_type,
            status=p.status,
            started_at=started,
            completed_at=completed,
            duration=duration,
            input=p.input.value if fixed is None else fixed.input,
            output=_json(p.output),
            config=p.config.value if fixed is None else fixed.config,
            total_cost=0.0 if old is None else old.total_cost,
            total_tokens=0 if old is None else old.total_tokens,
            priority=5 if old is None else old.priority,
            flow_version=p.flow_version,
        )
        changes.set(self._runs, run.id, run)
        behind = old is None or old.flow_version != p.previous_version
        for stage in projection.stages:
            if p.stored and not replace_all and (run.id, stage.stage_id) not in self._stage_keys:
                continue  # deleted by hand since the writer's own append: ``records rebuild`` writes it
            if stage.touched or replace_all or behind:
                self._write_stage(run, stage, replace_all, now, changes)
        changes.done()
        return True

    def _write_stage(
        self, run: WorkflowRunRecord, p: StageProjection, replace_all: bool, now: datetime, changes: _Changes
    ) -> None:
        existing = self._stage_keys.get((run.id, p.stage_id))
        if existing is None:
            record = WorkflowStageRecord(
                id=p.id,
                created_at=run.created_at,
                updated_at=now,
                workflow_run_id=run.id,
                stage_id=p.stage_id,
                stage_name=p.stage_name,
                stage_number=p.stage_number,
                execution_group=p.execution_group,
                status=p.status,
                started_at=p.started_at,
                completed_at=p.completed_at,
                duration=duration_ms(p.started_at, p.completed_at),
                input_data=None,
                output_data=_json(p.output_data),
                config=p.config.value,
                suspended_state=None,
                resume_data=None,
                next_poll_at=p.next_poll_at,
                poll_interval=None,
                max_wait_until=None,
                metrics=p.metrics.value,
                embedding_info=None,
                error_message=p.error_message,
            )
            changes.set(self._stages, record.id, record)
            changes.set(self._stage_keys, (run.id, p.stage_id), record.id)
            return
        old = self._stages[existing]
        output = _json(p.output_data)
        unchanged = (old.status, old.output_data, old.metrics, old.error_message, old.next_poll_at) == (
            p.status,
            output,
            p.metrics.value,
            p.error_message,
            p.next_poll_at,
        )
        if not replace_all and p.started_at is None and p.completed_at is None and unchanged:
            return
        started, completed, duration = merged_times(
            p.status, old.started_at, old.completed_at, p.started_at, p.completed_at, replace=replace_all
        )
        changes.set(
            self._stages,
            existing,
            replace(
                old,
                updated_at=now,
                stage_name=p.stage_name if replace_all else old.stage_name,
                stage_number=p.stage_number if replace_all else old.stage_number,
                execution_group=p.execution_group if replace_all else old.execution_group,
                status=p.status,
                config=p.config.value if replace_all else old.config,
                output_data=output,
                metrics=p.metrics.value,
                error_message=p.error_message,
                next_poll_at=p.next_poll_at,
                created_at=run.created_at if replace_all else old.created_at,
                started_at=started,
                completed_at=completed,
                duration=duration,
            ),
        )

    def __repr__(self) -> str:
        return f"<InMemoryWorkflowRecords runs={len(self._runs)} stages={len(self._stages)}>"


def _first_item(entry: tuple[int, WorkflowLogRecord]) -> int:
    return entry[0]


def _key(artifact: WorkflowArtifactRecord) -> str:
    return artifact.key
