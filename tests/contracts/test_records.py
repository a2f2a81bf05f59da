"""The workflow records contract (SPEC 9.1), run unchanged on every backend (``records`` fixture)."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from chem_persistence_async import (
    ArtifactNotFoundError,
    ArtifactType,
    InvalidInputError,
    LogLevel,
    PayloadTooLargeError,
    RecordExistsError,
    RecordNotFoundError,
    RunNotFoundError,
    StageNotFoundError,
    Status,
    UnknownStatusError,
    UnstorableValueError,
    ValueOutOfRangeError,
    canonical_json,
)
from chem_persistence_async.domain.records import MAX_ARTIFACT_KEY_LENGTH

NOW = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


async def _run(records: Any, **overrides: Any) -> Any:
    fields = {"workflow_id": "wf-1", "workflow_name": "Orders", "workflow_type": "orders", "input": {"n": 1}}
    return await records.create_run(**(fields | overrides))


async def _stage(records: Any, run_id: uuid.UUID, stage_id: str, number: int, group: int, **more: Any) -> Any:
    return await records.create_stage(
        workflow_run_id=run_id,
        stage_id=stage_id,
        stage_name=f"Stage {stage_id}",
        stage_number=number,
        execution_group=group,
        **more,
    )


# --- runs ---------------------------------------------------------------------------------------


async def test_create_run_has_the_design_defaults_and_reads_back(records: Any) -> None:
    run = await _run(records, config={"k": [1, 2]})
    assert isinstance(run.id, uuid.UUID)
    assert (run.status, run.started_at, run.completed_at, run.duration, run.output) == (
        Status.PENDING,
        None,
        None,
        None,
        None,
    )
    assert (run.total_cost, run.total_tokens, run.priority, run.flow_version) == (0.0, 0, 5, None)
    assert run.input == {"n": 1}
    assert run.config == {"k": [1, 2]}
    assert run.created_at == run.updated_at
    assert await records.get_run(run.id) == run
    assert await records.get_run_status(run.id) is Status.PENDING
    plain = await _run(records)
    assert plain.config == {}


async def test_a_missing_run_reads_as_none(records: Any) -> None:
    assert await records.get_run(uuid.uuid4()) is None
    assert await records.get_run_status(uuid.uuid4()) is None


async def test_a_run_id_can_be_given_once(records: Any) -> None:
    run_id = uuid.uuid4()
    run = await _run(records, id=str(run_id), priority=9)
    assert (run.id, run.priority) == (run_id, 9)
    with pytest.raises(RecordExistsError):
        await _run(records, id=run_id, workflow_name="Other")
    assert (await records.get_run(run_id)) == run


async def test_update_run_changes_only_what_is_given(records: Any) -> None:
    run = await _run(records)
    await records.update_run(run.id, status="running", started_at=NOW)
    await records.update_run(
        run.id,
        status=Status.COMPLETED,
        completed_at=NOW + timedelta(seconds=2),
        duration=2000,
        output={"ok": True},
        total_cost=1.25,
        total_tokens=300,
    )
    after = await records.get_run(run.id)
    assert after.status is Status.COMPLETED
    assert (after.started_at, after.completed_at, after.duration) == (NOW, NOW + timedelta(seconds=2), 2000)
    assert (after.output, after.total_cost, after.total_tokens) == ({"ok": True}, 1.25, 300)
    assert (after.input, after.created_at, after.workflow_name) == (
        run.input,
        run.created_at,
        run.workflow_name,
    )
    assert after.updated_at >= run.updated_at
    await records.update_run(run.id, output=None)
    assert (await records.get_run(run.id)).output is None


async def test_updating_a_missing_run_is_a_typed_error(records: Any) -> None:
    with pytest.raises(RunNotFoundError) as caught:
        await records.update_run(uuid.uuid4(), status=Status.FAILED)
    assert isinstance(caught.value, RecordNotFoundError)
    assert isinstance(caught.value, LookupError)
    with pytest.raises(RunNotFoundError):
        await records.update_run(uuid.uuid4())


async def test_bad_run_input_is_refused_and_writes_nothing(records: Any) -> None:
    run = await _run(records)
    with pytest.raises(UnknownStatusError):
        await records.update_run(run.id, status="DONE", total_tokens=5)
    with pytest.raises(ValueOutOfRangeError):
        await records.update_run(run.id, total_tokens=-1, status=Status.FAILED)
    with pytest.raises(ValueOutOfRangeError):
        await records.update_run(run.id, total_cost=-0.5)
    with pytest.raises(ValueOutOfRangeError):
        await records.update_run(run.id, total_cost=math.inf)
    with pytest.raises(UnstorableValueError):
        await records.update_run(run.id, output={"bad": math.nan}, status=Status.FAILED)
    with pytest.raises(InvalidInputError):
        await records.update_run(run.id, started_at=datetime(2030, 1, 1))  # naive
    for edge in (  # (what the driver cannot send, or sends as infinity: see check_aware)
        datetime.max.replace(tzinfo=timezone(timedelta(hours=-14))),
        datetime.min.replace(tzinfo=timezone(timedelta(hours=14))),
        datetime.max.replace(tzinfo=UTC),
        datetime.min.replace(tzinfo=UTC),
    ):
        with pytest.raises(ValueOutOfRangeError):
            await records.update_run(run.id, completed_at=edge, status=Status.FAILED)
        with pytest.raises(ValueOutOfRangeError):
            await records.get_suspended_stages(edge)
    almost_never = (datetime.max - timedelta(microseconds=1)).replace(tzinfo=UTC)
    assert await records.get_suspended_stages(almost_never) == []
    with pytest.raises(InvalidInputError):
        await records.update_run("not-a-uuid", status=Status.FAILED)
    with pytest.raises(UnstorableValueError):
        await _run(records, input={"set": {1, 2}})
    with pytest.raises(ValueOutOfRangeError):
        await _run(records, workflow_type="t" * 201)
    assert await records.get_run(run.id) == run
    assert await records.list_runs() == [run]


async def test_runs_by_status_oldest_first_and_limited(records: Any) -> None:
    runs = [await _run(records, workflow_id=f"wf-{i}") for i in range(5)]
    for run in runs[:4]:
        await records.update_run(run.id, status=Status.FAILED)
    failed = await records.get_runs_by_status(Status.FAILED)
    order = sorted(runs[:4], key=lambda r: (r.created_at, r.id))
    assert [r.id for r in failed] == [r.id for r in order]
    assert [r.id for r in await records.get_runs_by_status("failed", limit=2)] == [r.id for r in order[:2]]
    assert [r.id for r in await records.get_runs_by_status(Status.PENDING)] == [runs[4].id]
    assert await records.get_runs_by_status(Status.SUSPENDED) == []
    with pytest.raises(UnknownStatusError):
        await records.get_runs_by_status("FINISHED")


async def test_list_runs_newest_first_with_filters(records: Any) -> None:
    a = await _run(records, workflow_type="a")
    b = await _run(records, workflow_type="b")
    c = await _run(records, workflow_type="a")
    await records.update_run(c.id, status=Status.FAILED)
    newest_first = sorted([a, b, c], key=lambda r: (r.created_at, r.id), reverse=True)
    assert [r.id for r in await records.list_runs()] == [r.id for r in newest_first]
    assert [r.id for r in await records.list_runs(workflow_type="a")] == [
        r.id for r in newest_first if r.workflow_type == "a"
    ]
    assert [r.id for r in await records.list_runs(status="FAILED", workflow_type="a")] == [c.id]
    assert len(await records.list_runs(limit=1)) == 1
    with pytest.raises(ValueOutOfRangeError):
        await records.list_runs(limit=0)


async def test_deleting_a_run_deletes_its_stages_logs_and_artifacts(records: Any) -> None:
    run = await _run(records)
    other = await _run(records)
    stage = await _stage(records, run.id, "s", 0, 0)
    kept = await _stage(records, other.id, "s", 0, 0)
    await records.create_log(level=LogLevel.INFO, message="hello", workflow_run_id=run.id)
    await records.create_log(level=LogLevel.INFO, message="there", workflow_stage_id=stage.id)
    await records.save_artifact(run.id, "a", ArtifactType.ARTIFACT, {"x": 1})
    await records.save_artifact(other.id, "a", ArtifactType.ARTIFACT, {"x": 2})
    assert await records.delete_run(run.id) is True
    assert await records.get_run(run.id) is None
    assert await records.get_stage_by_id(stage.id) is None
    assert await records.get_logs(run.id) == []
    assert await records.has_artifact(run.id, "a") is False
    assert await records.get_stage_by_id(kept.id) == kept
    assert await records.load_artifact(other.id, "a") == {"x": 2}
    assert await records.delete_run(run.id) is False


# --- stages -------------------------------------------------------------------------------------


async def test_create_stage_defaults_and_reads(records: Any) -> None:
    run = await _run(records)
    stage = await _stage(records, run.id, "extract", 0, 0, config={"model": "x"}, input_data=[1])
    assert stage.workflow_run_id == run.id
    assert (stage.stage_id, stage.stage_name, stage.stage_number, stage.execution_group) == (
        "extract",
        "Stage extract",
        0,
        0,
    )
    assert (stage.status, stage.started_at, stage.completed_at, stage.output_data) == (
        Status.PENDING,
        None,
        None,
        None,
    )
    assert (stage.config, stage.input_data, stage.metrics, stage.error_message) == (
        {"model": "x"},
        [1],
        None,
        None,
    )
    assert await records.get_stage(run.id, "extract") == stage
    assert await records.get_stage_by_id(stage.id) == stage
    assert await records.get_stage_id_for_artifact(run.id, "extract") == stage.id
    assert await records.get_stage_id_for_artifact(run.id, "nope") is None
    assert await records.get_stage(run.id, "nope") is None
    started = await _stage(records, run.id, "load", 1, 1, status="running", started_at=NOW)
    assert (started.status, started.started_at) == (Status.RUNNING, NOW)


async def test_a_stage_needs_its_run_and_a_free_stage_id(records: Any) -> None:
    run = await _run(records)
    first = await _stage(records, run.id, "s", 0, 0)
    with pytest.raises(RecordExistsError):
        await _stage(records, run.id, "s", 5, 5)
    with pytest.raises(RunNotFoundError):
        await _stage(records, uuid.uuid4(), "s", 0, 0)
    with pytest.raises(UnknownStatusError):
        await _stage(records, run.id, "t", 0, 0, status="WAITING")
    with pytest.raises(ValueOutOfRangeError):
        await _stage(records, run.id, "t", -1, 0)
    assert await records.get_stages_by_run(run.id) == [first]


async def test_upsert_stage_creates_then_updates_in_place(records: Any) -> None:
    run = await _run(records)
    created = await records.upsert_stage(
        workflow_run_id=run.id,
        stage_id="s",
        stage_name="S",
        stage_number=0,
        execution_group=0,
        config={"v": 1},
    )
    assert (created.status, created.config) == (Status.PENDING, {"v": 1})
    updated = await records.upsert_stage(
        workflow_run_id=run.id,
        stage_id="s",
        stage_name="S2",
        stage_number=3,
        execution_group=2,
        status=Status.RUNNING,
        started_at=NOW,
    )
    assert updated.id == created.id
    assert (updated.stage_name, updated.stage_number, updated.execution_group) == ("S2", 3, 2)
    assert (updated.status, updated.started_at) == (Status.RUNNING, NOW)
    assert updated.config == {"v": 1}  # not given: kept
    assert updated.created_at == created.created_at
    assert await records.get_stages_by_run(run.id) == [updated]
    with pytest.raises(RunNotFoundError):
        await records.upsert_stage(
            workflow_run_id=uuid.uuid4(), stage_id="s", stage_name="S", stage_number=0, execution_group=0
        )


async def test_update_stage_by_id_and_by_run_and_stage_id(records: Any) -> None:
    run = await _run(records)
    stage = await _stage(records, run.id, "s", 0, 0)
    await records.update_stage(
        stage.id,
        status=Status.SUSPENDED,
        suspended_state={"batch": "b-1"},
        next_poll_at=NOW,
        poll_interval=30,
        max_wait_until=NOW + timedelta(hours=1),
        metrics={"tokens": 5},
        embedding_info={"dims": 3},
    )
    await records.update_stage_by_run_and_stage_id(
        run.id, "s", resume_data={"ok": 1}, output_data=[1, 2], error_message="boom"
    )
    after = await records.get_stage_by_id(stage.id)
    assert after.status is Status.SUSPENDED
    assert (after.suspended_state, after.next_poll_at, after.poll_interval) == ({"batch": "b-1"}, NOW, 30)
    assert (after.max_wait_until, after.metrics, after.embedding_info) == (
        NOW + timedelta(hours=1),
        {"tokens": 5},
        {"dims": 3},
    )
    assert (after.resume_data, after.output_data, after.error_message) == ({"ok": 1}, [1, 2], "boom")
    await records.update_stage(stage.id, next_poll_at=None, status="COMPLETED", completed_at=NOW, duration=7)
    after = await records.get_stage_by_id(stage.id)
    assert (after.next_poll_at, after.status, after.completed_at, after.duration) == (
        None,
        Status.COMPLETED,
        NOW,
        7,
    )
    assert after.updated_at >= stage.updated_at
    assert after.created_at == stage.created_at


async def test_updating_a_missing_stage_or_an_unknown_field_is_refused(records: Any) -> None:
    run = await _run(records)
    stage = await _stage(records, run.id, "s", 0, 0)
    with pytest.raises(StageNotFoundError):
        await records.update_stage(uuid.uuid4(), status=Status.FAILED)
    with pytest.raises(StageNotFoundError):
        await records.update_stage_by_run_and_stage_id(run.id, "nope", status=Status.FAILED)
    with pytest.raises(StageNotFoundError):
        await records.update_stage_by_run_and_stage_id(uuid.uuid4(), "s")
    with pytest.raises(InvalidInputError):
        await records.update_stage(stage.id, colour="red")
    with pytest.raises(UnknownStatusError):
        await records.update_stage(stage.id, status="DONE", error_message="x")
    with pytest.raises(ValueOutOfRangeError):
        await records.update_stage(stage.id, duration=-5)
    assert await records.get_stage_by_id(stage.id) == stage


async def test_stages_of_a_run_by_group_then_number_with_filters(records: Any) -> None:
    run = await _run(records)
    other = await _run(records)
    c = await _stage(records, run.id, "c", 2, 1, status=Status.COMPLETED)
    a = await _stage(records, run.id, "a", 0, 0, status=Status.COMPLETED)
    b2 = await _stage(records, run.id, "b2", 5, 1, status=Status.FAILED)
    b1 = await _stage(records, run.id, "b1", 1, 1)
    await _stage(records, other.id, "a", 0, 0)
    assert [s.stage_id for s in await records.get_stages_by_run(run.id)] == ["a", "b1", "c", "b2"]
    assert [s.id for s in await records.get_stages_by_run(run.id, status="completed")] == [a.id, c.id]
    assert [s.id for s in await records.get_stages_by_run(run.id, execution_group=1)] == [b1.id, c.id, b2.id]
    assert [
        s.id for s in await records.get_stages_by_run(run.id, status=Status.FAILED, execution_group=1)
    ] == [b2.id]
    assert await records.get_stages_by_run(uuid.uuid4()) == []


async def test_suspended_stages_due_before_a_time(records: Any) -> None:
    run = await _run(records)
    late = await _stage(records, run.id, "late", 0, 0, status=Status.SUSPENDED)
    early = await _stage(records, run.id, "early", 1, 1, status=Status.SUSPENDED)
    future = await _stage(records, run.id, "future", 2, 2, status=Status.SUSPENDED)
    waiting = await _stage(records, run.id, "signal", 3, 3, status=Status.SUSPENDED)  # no poll time
    pending = await _stage(records, run.id, "pending", 4, 4)
    await records.update_stage(late.id, next_poll_at=NOW - timedelta(minutes=1))
    await records.update_stage(early.id, next_poll_at=NOW - timedelta(minutes=5))
    await records.update_stage(future.id, next_poll_at=NOW + timedelta(minutes=5))
    await records.update_stage(pending.id, next_poll_at=NOW - timedelta(hours=1))
    due = await records.get_suspended_stages(NOW)
    assert [s.stage_id for s in due] == ["early", "late"]
    at_once = await records.get_suspended_stages(NOW - timedelta(minutes=1))
    assert [s.stage_id for s in at_once] == ["early", "late"]  # at the time counts
    assert waiting.id not in {s.id for s in await records.get_suspended_stages(NOW + timedelta(days=1))}


async def test_first_suspended_stage_ready_to_resume(records: Any) -> None:
    """Ready: suspended with its poll cleared (``next_poll_at`` NULL, as the design's orchestrator
    leaves it); the first by execution group, then stage number."""
    run = await _run(records)
    assert await records.get_first_suspended_stage_ready_to_resume(run.id) is None
    polling = await _stage(records, run.id, "polling", 0, 0, status=Status.SUSPENDED)
    await records.update_stage(polling.id, next_poll_at=NOW - timedelta(days=1))
    await _stage(records, run.id, "pending", 1, 0)
    assert await records.get_first_suspended_stage_ready_to_resume(run.id) is None
    later_group = await _stage(records, run.id, "g2", 0, 2, status=Status.SUSPENDED)
    second = await _stage(records, run.id, "g1b", 7, 1, status=Status.SUSPENDED)
    first = await _stage(records, run.id, "g1a", 3, 1, status=Status.SUSPENDED)
    ready = await records.get_first_suspended_stage_ready_to_resume(run.id)
    assert ready.id == first.id
    await records.update_stage(first.id, status=Status.RUNNING)
    assert (await records.get_first_suspended_stage_ready_to_resume(run.id)).id == second.id
    await records.update_stage(second.id, next_poll_at=NOW)
    assert (await records.get_first_suspended_stage_ready_to_resume(run.id)).id == later_group.id


async def test_first_failed_and_last_completed_stages(records: Any) -> None:
    run = await _run(records)
    assert await records.get_first_failed_stage(run.id) is None
    assert await records.get_last_completed_stage(run.id) is None
    await _stage(records, run.id, "a", 0, 0, status=Status.COMPLETED)
    b = await _stage(records, run.id, "b", 2, 1, status=Status.COMPLETED)
    c = await _stage(records, run.id, "c", 1, 1, status=Status.FAILED)
    d = await _stage(records, run.id, "d", 3, 2, status=Status.FAILED)
    await _stage(records, run.id, "e", 4, 3, status=Status.RUNNING)
    assert (await records.get_first_failed_stage(run.id)).id == c.id
    assert (await records.get_last_completed_stage(run.id)).id == b.id
    await records.update_stage(d.id, status=Status.COMPLETED)
    assert (await records.get_last_completed_stage(run.id)).id == d.id


async def test_last_completed_stage_before_an_execution_group(records: Any) -> None:
    run = await _run(records)
    a = await _stage(records, run.id, "a", 0, 0, status=Status.COMPLETED)
    b1 = await _stage(records, run.id, "b1", 1, 1, status=Status.COMPLETED)
    b2 = await _stage(records, run.id, "b2", 2, 1, status=Status.COMPLETED)
    await _stage(records, run.id, "b3", 3, 1, status=Status.FAILED)
    await _stage(records, run.id, "c", 4, 2, status=Status.COMPLETED)
    assert await records.get_last_completed_stage_before(run.id, 0) is None
    assert (await records.get_last_completed_stage_before(run.id, 1)).id == a.id
    assert (await records.get_last_completed_stage_before(run.id, 2)).id == b2.id  # last of group 1
    assert (await records.get_last_completed_stage_before(run.id, 3)).stage_id == "c"
    await records.update_stage(b2.id, status=Status.SKIPPED)
    assert (await records.get_last_completed_stage_before(run.id, 2)).id == b1.id


async def test_deleting_a_stage_deletes_its_logs_and_artifacts_only(records: Any) -> None:
    run = await _run(records)
    stage = await _stage(records, run.id, "s", 0, 0)
    other = await _stage(records, run.id, "t", 1, 1)
    await records.create_log(
        level="info", message="of the stage", workflow_run_id=run.id, workflow_stage_id=stage.id
    )
    await records.create_log(level="info", message="of the run", workflow_run_id=run.id)
    await records.save_artifact(run.id, "mine", "ARTIFACT", 1, workflow_stage_id=stage.id)
    await records.save_artifact(run.id, "theirs", "ARTIFACT", 2, workflow_stage_id=other.id)
    await records.save_artifact(run.id, "run's", "ARTIFACT", 3)
    assert await records.delete_stage(stage.id) is True
    assert await records.get_stage(run.id, "s") is None
    assert [log.message for log in await records.get_logs(run.id)] == ["of the run"]
    assert [a.key for a in await records.list_artifacts(run.id)] == ["run's", "theirs"]
    assert await records.delete_stage(stage.id) is False
    again = await _stage(records, run.id, "s", 0, 0)  # the stage id is free again
    assert again.id != stage.id


# --- logs ---------------------------------------------------------------------------------------


async def test_logs_in_the_order_written(records: Any) -> None:
    run = await _run(records)
    stage = await _stage(records, run.id, "s", 0, 0)
    for i, level in enumerate(["DEBUG", LogLevel.INFO, "warn", LogLevel.ERROR] * 3):
        await records.create_log(
            level=level,
            message=f"m{i}",
            workflow_run_id=run.id,
            workflow_stage_id=stage.id if i % 2 else None,
            metadata={"i": i} if i % 3 else None,
        )
    await records.create_log(level="INFO", message="orphan")  # no run, no stage: allowed
    logs = await records.get_logs(run.id)
    assert [log.message for log in logs] == [f"m{i}" for i in range(12)]
    assert [log.level for log in logs[:4]] == [LogLevel.DEBUG, LogLevel.INFO, LogLevel.WARN, LogLevel.ERROR]
    assert logs[1].workflow_stage_id == stage.id
    assert logs[0].workflow_stage_id is None
    assert (logs[0].metadata, logs[1].metadata) == (None, {"i": 1})
    assert [log.message for log in await records.get_logs(run.id, limit=2)] == ["m0", "m1"]


async def test_a_log_needs_its_run_and_stage(records: Any) -> None:
    run = await _run(records)
    with pytest.raises(RunNotFoundError):
        await records.create_log(level="INFO", message="x", workflow_run_id=uuid.uuid4())
    with pytest.raises(StageNotFoundError):
        await records.create_log(
            level="INFO", message="x", workflow_run_id=run.id, workflow_stage_id=uuid.uuid4()
        )
    with pytest.raises(UnknownStatusError):
        await records.create_log(level="LOUD", message="x", workflow_run_id=run.id)
    with pytest.raises(InvalidInputError):
        await records.create_log(level="INFO", message="nul \x00", workflow_run_id=run.id)
    assert await records.get_logs(run.id) == []


# --- artifacts ----------------------------------------------------------------------------------


async def test_save_artifact_stores_real_json_and_its_size(records: Any) -> None:
    run = await _run(records)
    data = {"b": [1, 2.5, "é"], "a": None, "big": 1e20}
    saved = await records.save_artifact(run.id, "result", ArtifactType.ARTIFACT, data, metadata={"m": 1})
    assert saved.size == len(canonical_json(data))
    assert (saved.key, saved.type, saved.metadata, saved.workflow_stage_id) == (
        "result",
        ArtifactType.ARTIFACT,
        {"m": 1},
        None,
    )
    assert await records.load_artifact(run.id, "result") == {"a": None, "b": [1, 2.5, "é"], "big": 10**20}
    assert await records.has_artifact(run.id, "result") is True
    assert await records.list_artifacts(run.id) == [saved]
    scalar = await records.save_artifact(run.id, "n", "metadata", 42)
    assert (scalar.size, scalar.type) == (2, ArtifactType.METADATA)
    assert await records.load_artifact(run.id, "n") == 42


async def test_saving_a_key_again_replaces_it(records: Any) -> None:
    run = await _run(records)
    stage = await _stage(records, run.id, "s", 0, 0)
    first = await records.save_artifact(run.id, "k", "ARTIFACT", [1, 2, 3])
    second = await records.save_artifact(run.id, "k", "STAGE_OUTPUT", {"x": "y"}, workflow_stage_id=stage.id)
    assert (second.id, second.created_at) == (first.id, first.created_at)
    assert (second.type, second.data, second.size, second.workflow_stage_id) == (
        ArtifactType.STAGE_OUTPUT,
        {"x": "y"},
        len(b'{"x":"y"}'),
        stage.id,
    )
    assert await records.list_artifacts(run.id) == [second]
    assert await records.load_artifact(run.id, "k") == {"x": "y"}


async def test_artifacts_listed_by_key_and_deleted(records: Any) -> None:
    run = await _run(records)
    for key in ["b", "a", "c"]:
        await records.save_artifact(run.id, key, "ARTIFACT", key)
    assert [a.key for a in await records.list_artifacts(run.id)] == ["a", "b", "c"]
    assert await records.delete_artifact(run.id, "b") is True
    assert await records.delete_artifact(run.id, "b") is False
    assert await records.has_artifact(run.id, "b") is False
    assert [a.key for a in await records.list_artifacts(run.id)] == ["a", "c"]


async def test_loading_a_missing_artifact_is_a_typed_error(records: Any) -> None:
    run = await _run(records)
    with pytest.raises(ArtifactNotFoundError) as caught:
        await records.load_artifact(run.id, "nothing")
    assert isinstance(caught.value, LookupError)
    with pytest.raises(ArtifactNotFoundError):
        await records.load_artifact(uuid.uuid4(), "nothing")


async def test_bad_artifacts_are_refused_and_write_nothing(records: Any, make_records: Any) -> None:
    small = make_records(max_payload_bytes=64)
    tiny = await _run(small)
    await small.save_artifact(tiny.id, "fits", "ARTIFACT", "x" * 50)
    with pytest.raises(PayloadTooLargeError):
        await small.save_artifact(tiny.id, "big", "ARTIFACT", "x" * 100)
    assert [a.key for a in await small.list_artifacts(tiny.id)] == ["fits"]
    with pytest.raises(PayloadTooLargeError):
        await small.create_log(level="INFO", message="m" * 100, workflow_run_id=tiny.id)
    assert await small.get_logs(tiny.id) == []
    run = await _run(records)
    with pytest.raises(ValueOutOfRangeError):
        await records.save_artifact(run.id, "k" * (MAX_ARTIFACT_KEY_LENGTH + 1), "ARTIFACT", 1)
    await records.save_artifact(run.id, "k" * MAX_ARTIFACT_KEY_LENGTH, "ARTIFACT", 1)  # the limit itself fits
    with pytest.raises(InvalidInputError):
        await records.save_artifact(run.id, "", "ARTIFACT", 1)
    with pytest.raises(UnstorableValueError):
        await records.save_artifact(run.id, "nan", "ARTIFACT", {"v": math.nan})
    with pytest.raises(UnstorableValueError):
        await records.save_artifact(run.id, "obj", "ARTIFACT", object())
    with pytest.raises(UnstorableValueError):
        await records.save_artifact(run.id, "nul", "ARTIFACT", "a\x00b")
    with pytest.raises(UnknownStatusError):
        await records.save_artifact(run.id, "t", "BLOB", 1)
    with pytest.raises(RunNotFoundError):
        await records.save_artifact(uuid.uuid4(), "k", "ARTIFACT", 1)
    with pytest.raises(StageNotFoundError):
        await records.save_artifact(run.id, "k", "ARTIFACT", 1, workflow_stage_id=uuid.uuid4())
    assert [a.key for a in await records.list_artifacts(run.id)] == ["k" * MAX_ARTIFACT_KEY_LENGTH]


async def test_save_stage_output(records: Any) -> None:
    run = await _run(records)
    stage = await _stage(records, run.id, "extract", 0, 0)
    key = await records.save_stage_output(run.id, "orders", "extract", {"rows": 3})
    assert key == f"workflow-v2/orders/{run.id}/extract/output.json"
    (artifact,) = await records.list_artifacts(run.id)
    assert (artifact.key, artifact.type, artifact.workflow_stage_id, artifact.data) == (
        key,
        ArtifactType.STAGE_OUTPUT,
        stage.id,
        {"rows": 3},
    )
    loose = await records.save_stage_output(run.id, "orders", "no-such-stage", [1])
    assert (await records.load_artifact(run.id, loose)) == [1]
    assert {a.key: a.workflow_stage_id for a in await records.list_artifacts(run.id)}[loose] is None


# --- units of work ------------------------------------------------------------------------------


async def test_a_unit_of_work_that_fails_leaves_no_record(records: Any) -> None:
    run = await _run(records)
    with pytest.raises(RuntimeError):
        async with records.transaction() as tx:
            await records.update_run(run.id, status=Status.RUNNING, tx=tx)
            stage = await _stage(records, run.id, "s", 0, 0, tx=tx)
            await records.create_log(level="INFO", message="x", workflow_run_id=run.id, tx=tx)
            await records.save_artifact(run.id, "k", "ARTIFACT", 1, workflow_stage_id=stage.id, tx=tx)
            await records.create_run(workflow_id="w", workflow_name="n", workflow_type="t", input=None, tx=tx)
            assert (await records.get_run(run.id, tx=tx)).status is Status.RUNNING
            raise RuntimeError("roll back")
    assert await records.get_run(run.id) == run
    assert await records.get_stages_by_run(run.id) == []
    assert await records.get_logs(run.id) == []
    assert await records.list_artifacts(run.id) == []
    assert await records.list_runs() == [run]


async def test_a_refused_write_inside_a_unit_of_work_leaves_it_usable(records: Any) -> None:
    """A taken stage id or a missing parent is answered without poisoning the transaction."""
    run = await _run(records)
    await _stage(records, run.id, "s", 0, 0)
    async with records.transaction() as tx:
        with pytest.raises(RecordExistsError):
            await _stage(records, run.id, "s", 1, 1, tx=tx)
        with pytest.raises(RunNotFoundError):
            await records.create_log(level="INFO", message="x", workflow_run_id=uuid.uuid4(), tx=tx)
        with pytest.raises(StageNotFoundError):
            await records.save_artifact(run.id, "k", "ARTIFACT", 1, workflow_stage_id=uuid.uuid4(), tx=tx)
        with pytest.raises(RecordExistsError):
            await _run(records, id=run.id, tx=tx)
        await records.update_run(run.id, status=Status.RUNNING, tx=tx)
    assert await records.get_run_status(run.id) is Status.RUNNING
