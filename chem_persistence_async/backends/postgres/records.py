"""``WorkflowRecords``: the workflow records on PostgreSQL (SPEC 9.1); its SQL is ``sql/records.py``.

Arguments are checked by the domain (``domain.records``) before anything is sent, the same checks
as the in-memory backend's. A missing parent or a taken key comes back from the statement as a
row, so a unit of work given as ``tx=`` is never poisoned by a typed error raised here.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID, uuid4

import asyncpg

from chem_persistence_async.backends.postgres.database import Database
from chem_persistence_async.backends.postgres.errors import translate
from chem_persistence_async.backends.postgres.json_parts import json_text, json_time
from chem_persistence_async.backends.postgres.sql import records as sql
from chem_persistence_async.backends.postgres.sql.query import Query
from chem_persistence_async.backends.postgres.transaction import pg_tx
from chem_persistence_async.backends.records_base import WorkflowRecordsBase
from chem_persistence_async.domain.events import FlowEvent
from chem_persistence_async.domain.flow import FlowDefinition, FlowInstance
from chem_persistence_async.domain.ids import check_aware, check_int, check_name
from chem_persistence_async.domain.projection import FlowProjection, project_flow
from chem_persistence_async.domain.records import (
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
    run_changes,
    stage_changes,
)
from chem_persistence_async.errors import (
    ArtifactNotFoundError,
    RecordExistsError,
    RunNotFoundError,
    StageNotFoundError,
)
from chem_persistence_async.ports.unit_of_work import Transaction

T = TypeVar("T")


class WorkflowRecords(WorkflowRecordsBase):
    """The ``WorkflowRecordsPort`` on PostgreSQL. On its own an operation goes through
    ``Database.run`` (retried on transient failures); with ``tx=`` it runs inside that unit of
    work. As ``FlowEngine(..., records=WorkflowRecords(db))`` it keeps the runs and stages of the
    engine's flows in the same transaction as their events."""

    def __init__(self, db: Database, *, max_payload_bytes: int | None = None) -> None:
        self._db = db
        self._max = db.settings.store.max_payload_bytes if max_payload_bytes is None else max_payload_bytes

    @property
    def database(self) -> Database:
        return self._db

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        return self._db.transaction()

    async def run_in_transaction(self, fn: Callable[[Transaction], Awaitable[T]]) -> T:
        return await self._db.run_in_transaction(fn)

    async def _run(
        self, tx: Transaction | None, q: Query, values: Mapping[str, Any], operation: str
    ) -> builtins.list[Any]:
        args = q.args(values)
        ptx = pg_tx(tx, id(self._db))

        async def fetch(conn: asyncpg.Connection) -> builtins.list[Any]:
            return list(await conn.fetch(q.text, *args))

        if ptx is None:
            return await self._db.run(fetch, operation=operation)
        try:
            return await fetch(ptx.connection)
        except Exception as exc:
            translated = translate(exc, operation=operation, retried=False)
            if translated is exc:
                raise
            raise translated from exc

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
        values = {
            "id": run.id,
            "workflow_id": run.workflow_id,
            "workflow_name": run.workflow_name,
            "workflow_type": run.workflow_type,
            "input": run.input.data,
            "config": run.config.data,
            "priority": run.priority,
        }
        rows = await self._run(tx, sql.CREATE_RUN, values, "create_run")
        if not rows:
            raise RecordExistsError(f"a workflow run with id {run.id} already exists")
        return _run(rows[0])

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
        changes = run_changes(
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
        await self._update("workflow_runs", changes, "id = :where_id", {"where_id": rid}, tx, "update_run")
        # (no changes still checks that the run exists)

    async def _update(
        self,
        table: str,
        changes: Mapping[str, Any],
        where: str,
        keys: Mapping[str, Any],
        tx: Transaction | None,
        operation: str,
    ) -> None:
        if changes:
            q = sql.update(table, tuple(changes), where)
            values = {name: _value(value) for name, value in changes.items()} | dict(keys)
        else:
            q = sql.exists(table, where)
            values = dict(keys)
        rows = await self._run(tx, q, values, operation)
        if not rows or rows[0][0] is False:
            if table == "workflow_runs":
                raise RunNotFoundError(f"no workflow run {keys['where_id']}")
            raise StageNotFoundError(f"no workflow stage {_describe_stage(keys)}")

    async def get_run(self, run_id: UUID | str, *, tx: Transaction | None = None) -> WorkflowRunRecord | None:
        rows = await self._run(tx, sql.GET_RUN, {"id": check_uuid(run_id, "run_id")}, "get_run")
        return _run(rows[0]) if rows else None

    async def get_run_status(self, run_id: UUID | str, *, tx: Transaction | None = None) -> Status | None:
        rows = await self._run(tx, sql.GET_RUN_STATUS, {"id": check_uuid(run_id, "run_id")}, "get_run_status")
        return Status(rows[0][0]) if rows else None

    async def get_runs_by_status(
        self, status: Status | str, *, limit: int | None = None, tx: Transaction | None = None
    ) -> builtins.list[WorkflowRunRecord]:
        values = {
            "status": check_status(status).value,
            "limit": None if limit is None else check_limit(limit),
        }
        return [_run(row) for row in await self._run(tx, sql.RUNS_BY_STATUS, values, "get_runs_by_status")]

    async def list_runs(
        self,
        *,
        status: Status | str | None = None,
        workflow_type: str | None = None,
        limit: int = 100,
        tx: Transaction | None = None,
    ) -> builtins.list[WorkflowRunRecord]:
        values = {
            "status": None if status is None else check_status(status).value,
            "workflow_type": None if workflow_type is None else check_name(workflow_type, "workflow_type"),
            "limit": check_limit(limit),
        }
        return [_run(row) for row in await self._run(tx, sql.LIST_RUNS, values, "list_runs")]

    async def delete_run(self, run_id: UUID | str, *, tx: Transaction | None = None) -> bool:
        rows = await self._run(tx, sql.DELETE_RUN, {"id": check_uuid(run_id, "run_id")}, "delete_run")
        return bool(rows)

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
        rows = await self._run(tx, sql.CREATE_STAGE, _stage_values(stage), "create_stage")
        if rows:
            return _stage(rows[0])
        await self._require_run(stage.workflow_run_id, tx)
        raise RecordExistsError(f"run {stage.workflow_run_id} already has a stage {stage.stage_id!r}")

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
        given = stage.given()
        values = _stage_values(stage) | {f"set_{name}": name in given for name in _OPTIONAL_STAGE_FIELDS}
        rows = await self._run(tx, sql.UPSERT_STAGE, values, "upsert_stage")
        if rows:
            return _stage(rows[0])
        raise RunNotFoundError(f"no workflow run {stage.workflow_run_id}")

    async def _require_run(self, run_id: UUID, tx: Transaction | None) -> None:
        rows = await self._run(tx, sql.RUN_EXISTS, {"id": run_id}, "get_run")
        if not rows[0][0]:
            raise RunNotFoundError(f"no workflow run {run_id}")

    async def update_stage(self, id: UUID | str, *, tx: Transaction | None = None, **fields: Any) -> None:
        sid = check_uuid(id, "id")
        changes = stage_changes(fields, max_bytes=self._max)
        await self._update(
            "workflow_stages", changes, "id = :where_id", {"where_id": sid}, tx, "update_stage"
        )

    async def update_stage_by_run_and_stage_id(
        self, run_id: UUID | str, stage_id: str, *, tx: Transaction | None = None, **fields: Any
    ) -> None:
        keys = {"where_run": check_uuid(run_id, "run_id"), "where_stage": check_name(stage_id, "stage_id")}
        changes = stage_changes(fields, max_bytes=self._max)
        where = "workflow_run_id = :where_run AND stage_id = :where_stage"
        await self._update("workflow_stages", changes, where, keys, tx, "update_stage")

    async def get_stage(
        self, run_id: UUID | str, stage_id: str, *, tx: Transaction | None = None
    ) -> WorkflowStageRecord | None:
        values = {"run_id": check_uuid(run_id, "run_id"), "stage_id": check_name(stage_id, "stage_id")}
        rows = await self._run(tx, sql.GET_STAGE, values, "get_stage")
        return _stage(rows[0]) if rows else None

    async def get_stage_by_id(
        self, id: UUID | str, *, tx: Transaction | None = None
    ) -> WorkflowStageRecord | None:
        rows = await self._run(tx, sql.GET_STAGE_BY_ID, {"id": check_uuid(id, "id")}, "get_stage")
        return _stage(rows[0]) if rows else None

    async def get_stages_by_run(
        self,
        run_id: UUID | str,
        *,
        status: Status | str | None = None,
        execution_group: int | None = None,
        tx: Transaction | None = None,
    ) -> builtins.list[WorkflowStageRecord]:
        values = {
            "run_id": check_uuid(run_id, "run_id"),
            "status": None if status is None else check_status(status).value,
            "execution_group": None
            if execution_group is None
            else check_int(execution_group, "execution_group"),
        }
        return [_stage(row) for row in await self._run(tx, sql.STAGES_BY_RUN, values, "get_stages_by_run")]

    async def get_suspended_stages(
        self, before: datetime, *, tx: Transaction | None = None
    ) -> builtins.list[WorkflowStageRecord]:
        values = {"before": check_aware(before, "before")}
        return [
            _stage(row) for row in await self._run(tx, sql.SUSPENDED_STAGES, values, "get_suspended_stages")
        ]

    async def _one_stage(
        self, q: Query, values: Mapping[str, Any], tx: Transaction | None, operation: str
    ) -> WorkflowStageRecord | None:
        rows = await self._run(tx, q, values, operation)
        return _stage(rows[0]) if rows else None

    async def get_first_suspended_stage_ready_to_resume(
        self, run_id: UUID | str, *, tx: Transaction | None = None
    ) -> WorkflowStageRecord | None:
        values = {"run_id": check_uuid(run_id, "run_id")}
        return await self._one_stage(sql.FIRST_SUSPENDED_READY, values, tx, "get_suspended_stage")

    async def get_first_failed_stage(
        self, run_id: UUID | str, *, tx: Transaction | None = None
    ) -> WorkflowStageRecord | None:
        values = {"run_id": check_uuid(run_id, "run_id")}
        return await self._one_stage(sql.FIRST_FAILED, values, tx, "get_first_failed_stage")

    async def get_last_completed_stage(
        self, run_id: UUID | str, *, tx: Transaction | None = None
    ) -> WorkflowStageRecord | None:
        values = {"run_id": check_uuid(run_id, "run_id"), "before_group": None}
        return await self._one_stage(sql.LAST_COMPLETED, values, tx, "get_last_completed_stage")

    async def get_last_completed_stage_before(
        self, run_id: UUID | str, execution_group: int, *, tx: Transaction | None = None
    ) -> WorkflowStageRecord | None:
        values = {
            "run_id": check_uuid(run_id, "run_id"),
            "before_group": check_int(execution_group, "execution_group"),
        }
        return await self._one_stage(sql.LAST_COMPLETED, values, tx, "get_last_completed_stage")

    async def delete_stage(self, id: UUID | str, *, tx: Transaction | None = None) -> bool:
        return bool(await self._run(tx, sql.DELETE_STAGE, {"id": check_uuid(id, "id")}, "delete_stage"))

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
        values = {
            "id": uuid4(),
            "run_id": log.workflow_run_id,
            "stage_id": log.workflow_stage_id,
            "level": log.level.value,
            "message": log.message,
            "metadata": None if log.metadata is None else log.metadata.data,
        }
        ((written, run_found, stage_found),) = await self._run(tx, sql.CREATE_LOG, values, "create_log")
        if not written:
            _missing_parent(log.workflow_run_id, run_found, log.workflow_stage_id, stage_found)

    async def get_logs(
        self, run_id: UUID | str, *, limit: int = 1000, tx: Transaction | None = None
    ) -> builtins.list[WorkflowLogRecord]:
        values = {"run_id": check_uuid(run_id, "run_id"), "limit": check_limit(limit)}
        return [_log(row) for row in await self._run(tx, sql.GET_LOGS, values, "get_logs")]

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
        values = {
            "id": uuid4(),
            "run_id": artifact.workflow_run_id,
            "stage_id": artifact.workflow_stage_id,
            "key": artifact.key,
            "type": artifact.type.value,
            "data": artifact.data.data,
            "size": artifact.size,
            "metadata": None if artifact.metadata is None else artifact.metadata.data,
        }
        ((written, run_found, stage_found, *columns),) = await self._run(
            tx, sql.SAVE_ARTIFACT, values, "save_artifact"
        )
        if not written:
            _missing_parent(artifact.workflow_run_id, run_found, artifact.workflow_stage_id, stage_found)
        return _artifact(columns)

    async def load_artifact(self, run_id: UUID | str, key: str, *, tx: Transaction | None = None) -> Any:
        values = {"run_id": check_uuid(run_id, "run_id"), "key": check_artifact_key(key)}
        rows = await self._run(tx, sql.LOAD_ARTIFACT, values, "load_artifact")
        if not rows:
            raise ArtifactNotFoundError(f"run {values['run_id']} has no artifact {key!r}")
        return json.loads(rows[0][0])

    async def has_artifact(self, run_id: UUID | str, key: str, *, tx: Transaction | None = None) -> bool:
        values = {"run_id": check_uuid(run_id, "run_id"), "key": check_artifact_key(key)}
        return bool((await self._run(tx, sql.HAS_ARTIFACT, values, "has_artifact"))[0][0])

    async def delete_artifact(self, run_id: UUID | str, key: str, *, tx: Transaction | None = None) -> bool:
        values = {"run_id": check_uuid(run_id, "run_id"), "key": check_artifact_key(key)}
        return bool(await self._run(tx, sql.DELETE_ARTIFACT, values, "delete_artifact"))

    async def list_artifacts(
        self, run_id: UUID | str, *, tx: Transaction | None = None
    ) -> builtins.list[WorkflowArtifactRecord]:
        values = {"run_id": check_uuid(run_id, "run_id")}
        return [_artifact(row) for row in await self._run(tx, sql.LIST_ARTIFACTS, values, "list_artifacts")]

    async def get_stage_id_for_artifact(
        self, run_id: UUID | str, stage_id: str, *, tx: Transaction | None = None
    ) -> UUID | None:
        values = {"run_id": check_uuid(run_id, "run_id"), "stage_id": check_name(stage_id, "stage_id")}
        rows = await self._run(tx, sql.STAGE_ID, values, "get_stage_id_for_artifact")
        return rows[0][0] if rows else None

    # --- the projection of engine flows -----------------------------------------------------

    async def rebuild_flows(
        self,
        flows: Sequence[tuple[FlowInstance, FlowDefinition, Sequence[FlowEvent]]],
        *,
        tx: Transaction | None = None,
    ) -> list[bool]:
        """Every flow's projection in ONE statement (``RECORD_FLOWS``): a subscription's batch of
        flows costs one round trip and one plan, not one per flow."""
        if not flows:
            return []
        projections = [project_flow(i, d, e) for i, d, e in flows]
        payload = b"[" + b",".join(map(_whole_flow_json, projections)) + b"]"
        rows = await self._run(tx, sql.RECORD_FLOWS, {"flows": payload}, "record_flows")
        newer = set(rows[0][0])
        return [p.run.run_id not in newer for p in projections]

    async def _write_projection(
        self, projection: FlowProjection, replace: bool, tx: Transaction | None
    ) -> bool:
        rows = await self._run(tx, sql.RECORD_FLOW, _projection_values(projection, replace), "record_flow")
        return bool(rows[0][0])

    def __repr__(self) -> str:
        return f"<WorkflowRecords {self._db!r}>"


_OPTIONAL_STAGE_FIELDS = ("status", "started_at", "config", "input_data")


def _describe_stage(keys: Mapping[str, Any]) -> str:
    if "where_id" in keys:
        return str(keys["where_id"])
    return f"{keys['where_stage']!r} in run {keys['where_run']}"


def _missing_parent(run_id: UUID | None, run_found: bool, stage_id: UUID | None, stage_found: bool) -> None:
    if run_id is not None and not run_found:
        raise RunNotFoundError(f"no workflow run {run_id}")
    if stage_id is not None and not stage_found:
        raise StageNotFoundError(f"no workflow stage {stage_id}")
    raise RunNotFoundError("a workflow artifact needs a run")  # pragma: no cover - checked above


def _value(value: Any) -> Any:
    if isinstance(value, Json):
        return value.data
    if isinstance(value, Status):
        return value.value
    return value


def _stage_values(stage: NewStage) -> dict[str, Any]:
    return {
        "id": uuid4(),
        "run_id": stage.workflow_run_id,
        "stage_id": stage.stage_id,
        "stage_name": stage.stage_name,
        "stage_number": stage.stage_number,
        "execution_group": stage.execution_group,
        "status": (Status.PENDING if isinstance(stage.status, Unset) else stage.status).value,
        "started_at": None if isinstance(stage.started_at, Unset) else stage.started_at,
        "config": _json_or_none(stage.config),
        "input_data": _json_or_none(stage.input_data),
    }


def _json_or_none(value: Json | Unset | None) -> bytes | None:
    return value.data if isinstance(value, Json) else None


def _projection_values(projection: FlowProjection, replace: bool) -> dict[str, Any]:
    run, stages = projection.run, projection.stages
    return {
        "replace": replace,
        "run_id": run.run_id,
        "workflow_id": run.workflow_id,
        "workflow_name": run.workflow_name,
        "workflow_type": run.workflow_type,
        "status": run.status.value,
        "input": run.input.data,
        "output": None if run.output is None else run.output.data,
        "config": run.config.data,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "completed_at": run.completed_at,
        "flow_version": run.flow_version,
        "previous_version": run.previous_version,
        "stage_ids": [s.id for s in stages],
        "step_ids": [s.stage_id for s in stages],
        "stage_names": [s.stage_name for s in stages],
        "numbers": [s.stage_number for s in stages],
        "statuses": [s.status.value for s in stages],
        "error_messages": [s.error_message for s in stages],
        "next_polls": [s.next_poll_at for s in stages],
        "starts": [s.started_at for s in stages],
        "completions": [s.completed_at for s in stages],
        "configs": [s.config.data for s in stages],
        "outputs": [None if s.output_data is None else s.output_data.data for s in stages],
        "metrics": [s.metrics.data for s in stages],
        "touched": [s.touched for s in stages],
    }


def _whole_flow_json(p: FlowProjection) -> bytes:
    """One flow of ``RECORD_FLOWS``'s ``:flows`` (a projection of its whole log: times are its own)."""
    r = p.run
    stages = b",".join(
        [
            b"".join(
                [
                    b'{"id":"',
                    str(s.id).encode(),
                    b'","k":',
                    json_text(s.stage_id),
                    b',"n":',
                    json_text(s.stage_name),
                    b',"x":',
                    str(s.stage_number).encode(),
                    b',"s":"',
                    s.status.value.encode(),
                    b'","e":',
                    json_text(s.error_message),
                    b',"np":',
                    json_time(s.next_poll_at),
                    b',"sa":',
                    json_time(s.started_at),
                    b',"da":',
                    json_time(s.completed_at),
                    b',"c":',
                    s.config.data,
                    b',"o":',
                    b"null" if s.output_data is None else s.output_data.data,
                    b',"m":',
                    s.metrics.data,
                    b"}",
                ]
            )
            for s in p.stages
        ]
    )
    return b"".join(
        [
            b'{"id":"',
            str(r.run_id).encode(),
            b'","w":',
            json_text(r.workflow_id),
            b',"n":',
            json_text(r.workflow_name),
            b',"y":',
            json_text(r.workflow_type),
            b',"s":"',
            r.status.value.encode(),
            b'","in":',
            r.input.data,
            b',"o":',
            b"null" if r.output is None else r.output.data,
            b',"c":',
            r.config.data,
            b',"ca":',
            json_time(r.created_at),
            b',"sa":',
            json_time(r.started_at),
            b',"da":',
            json_time(r.completed_at),
            b',"v":',
            str(r.flow_version).encode(),
            b',"g":[',
            stages,
            b"]}",
        ]
    )


def _loads(data: bytes | None) -> Any:
    return None if data is None else json.loads(data)


def _run(row: Any) -> WorkflowRunRecord:
    return WorkflowRunRecord(
        id=row[0],
        created_at=row[1],
        updated_at=row[2],
        workflow_id=row[3],
        workflow_name=row[4],
        workflow_type=row[5],
        status=Status(row[6]),
        started_at=row[7],
        completed_at=row[8],
        duration=row[9],
        input=_loads(row[10]),
        output=_loads(row[11]),
        config=_loads(row[12]),
        total_cost=row[13],
        total_tokens=row[14],
        priority=row[15],
        flow_version=row[16],
    )


def _stage(row: Any) -> WorkflowStageRecord:
    return WorkflowStageRecord(
        id=row[0],
        created_at=row[1],
        updated_at=row[2],
        workflow_run_id=row[3],
        stage_id=row[4],
        stage_name=row[5],
        stage_number=row[6],
        execution_group=row[7],
        status=Status(row[8]),
        started_at=row[9],
        completed_at=row[10],
        duration=row[11],
        input_data=_loads(row[12]),
        output_data=_loads(row[13]),
        config=_loads(row[14]),
        suspended_state=_loads(row[15]),
        resume_data=_loads(row[16]),
        next_poll_at=row[17],
        poll_interval=row[18],
        max_wait_until=row[19],
        metrics=_loads(row[20]),
        embedding_info=_loads(row[21]),
        error_message=row[22],
    )


def _log(row: Any) -> WorkflowLogRecord:
    return WorkflowLogRecord(
        id=row[0],
        created_at=row[1],
        workflow_run_id=row[2],
        workflow_stage_id=row[3],
        level=LogLevel(row[4]),
        message=row[5],
        metadata=_loads(row[6]),
    )


def _artifact(row: Sequence[Any]) -> WorkflowArtifactRecord:
    return WorkflowArtifactRecord(
        id=row[0],
        created_at=row[1],
        updated_at=row[2],
        workflow_run_id=row[3],
        workflow_stage_id=row[4],
        key=row[5],
        type=ArtifactType(row[6]),
        data=_loads(row[7]),
        size=row[8],
        metadata=_loads(row[9]),
    )
