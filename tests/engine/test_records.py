"""Runs and stages of the engine's own flows (SPEC 9.1): a projection of the event log, kept in
the same unit of work as the events, and rebuilt from the log to the same rows. Both backends."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chem_persistence_async import (
    ConcurrencyConflict,
    FlowDefinition,
    FlowEngine,
    FlowRepository,
    InMemoryBackend,
    RetryPolicy,
    Status,
    Worker,
    rebuild_records,
    replay,
)
from chem_persistence_async.domain.events import FlowEvent, StepSignal, StepStarted
from chem_persistence_async.domain.projection import stage_record_id
from chem_persistence_async.engine.engine import projected_append
from chem_persistence_async.ports.backend import Backend
from chem_persistence_async.ports.records import RecordingEventStore
from tests.engine.flows import Produce, flaky_definition
from tests.worker.flows import three_steps

FAST = RetryPolicy(max_retries=3, initial_delay=0.0)


@pytest.fixture
def parts(backend: Backend) -> tuple[Any, Any, Any]:
    """(event store, records, definition registry) of one backend."""
    return backend.event_store(), backend.workflow_records(), backend.definition_registry()


def _engine(parts: tuple[Any, Any, Any], definition: FlowDefinition, **kwargs: Any) -> FlowEngine:
    store, records, _ = parts
    return FlowEngine(store, FlowRepository(), definition, records=records, **kwargs)


async def _snapshot(records: Any, flow_ids: list[uuid.UUID]) -> dict[uuid.UUID, Any]:
    """Every run and stage row of the flows, without ``updated_at`` (the database's own clock)."""
    out = {}
    for fid in flow_ids:
        run = asdict(await records.get_run(fid))
        run.pop("updated_at")
        stages = [asdict(s) for s in await records.get_stages_by_run(fid)]
        for stage in stages:
            stage.pop("updated_at")
        out[fid] = (run, stages)
    return out


async def test_records_follow_a_flow_attempt_by_attempt(parts: tuple[Any, Any, Any]) -> None:
    store, records, _ = parts
    policy = RetryPolicy(max_retries=3, initial_delay=0.05)
    engine = _engine(parts, flaky_definition(failures=1), retry_policy=policy)
    fid = await engine.start(inputs={"batch": 7})
    run = await records.get_run(fid)
    (init,) = await store.list(fid)
    assert (run.status, run.created_at, run.flow_version, run.input) == (
        Status.PENDING,
        init.ts,
        1,
        {"batch": 7},
    )
    assert (run.workflow_name, run.workflow_type, run.workflow_id) == (
        "flaky",
        "flaky",
        engine.definition_ref,
    )
    stages = await records.get_stages_by_run(fid)
    assert [(s.stage_id, s.stage_name, s.stage_number, s.status) for s in stages] == [
        ("first", "Produce", 0, Status.PENDING),
        ("flaky", "FailUntil", 1, Status.PENDING),
        ("last", "Produce", 2, Status.PENDING),
    ]
    assert [s.id for s in stages] == [stage_record_id(fid, s.stage_id) for s in stages]
    assert stages[1].config == {"failures": 1, "kind": "transient"}

    await engine.run_next(fid)  # step 0 runs and finishes
    events = await store.list(fid)
    first = await records.get_stage(fid, "first")
    assert first.status is Status.COMPLETED
    assert (first.started_at, first.completed_at) == (events[1].ts, events[2].ts)
    assert first.duration == (events[2].ts - events[1].ts) // timedelta(milliseconds=1)
    assert first.metrics == {"attempts": 1, "retry_count": 0}
    instance = await engine.load(fid)
    assert first.output_data == {
        "artifacts": list(instance.steps[0].outputs),
        "fingerprint": instance.steps[0].fingerprint,
    }
    assert (await records.get_run(fid)).status is Status.RUNNING
    assert (await records.get_run(fid)).started_at == events[1].ts

    await engine.run_next(fid)  # step 1 fails once: a retry waits
    waiting = await records.get_stage(fid, "flaky")
    instance = await engine.load(fid)
    assert waiting.status is Status.PENDING
    assert waiting.next_poll_at == instance.steps[1].not_before is not None
    assert waiting.error_message == "attempt 1 failed on purpose"
    assert (waiting.completed_at, waiting.duration) == (None, None)
    assert waiting.metrics == {"attempts": 1, "retry_count": 1}

    await engine.run_next(fid)  # the retry succeeds
    done = await records.get_stage(fid, "flaky")
    events = await store.list(fid)
    starts = [e.ts for e in events if e.kind.event_type == "stepstarted" and e.kind.step_id == "flaky"]
    (finished,) = [e.ts for e in events if e.kind.event_type == "stepfinished" and e.kind.step_id == "flaky"]
    assert (done.status, done.next_poll_at, done.started_at, done.completed_at) == (
        Status.COMPLETED,
        None,
        starts[0],
        finished,
    )
    assert done.metrics == {"attempts": 2, "retry_count": 1}

    await engine.run_to_end(fid)
    run = await records.get_run(fid)
    events = await store.list(fid)
    instance = await engine.load(fid)
    assert run.status is Status.COMPLETED
    assert run.completed_at == events[-1].ts
    assert run.duration == (events[-1].ts - events[1].ts) // timedelta(milliseconds=1)
    assert run.output == {"fingerprint": instance.fingerprint, "artifacts": list(instance.steps[-1].outputs)}
    assert run.flow_version == instance.version == len(events)
    assert [s.status for s in await records.get_stages_by_run(fid)] == [Status.COMPLETED] * 3
    assert await records.get_runs_by_status(Status.COMPLETED) == [run]


async def test_a_running_attempt_shows_as_running(parts: tuple[Any, Any, Any]) -> None:
    store, records, _ = parts
    engine = _engine(parts, flaky_definition(failures=0))
    fid = await engine.start()
    instance = await engine.load(fid)
    await engine.begin(instance, engine.plan(instance))
    (started,) = [e for e in await store.list(fid) if e.kind.event_type == "stepstarted"]
    stage = await records.get_stage(fid, "first")
    assert (stage.status, stage.started_at, stage.completed_at) == (Status.RUNNING, started.ts, None)
    assert (await records.get_run(fid)).status is Status.RUNNING


async def test_failed_flows_are_found_by_status_with_where_they_stopped(parts: tuple[Any, Any, Any]) -> None:
    store, records, _ = parts
    fine = await _engine(parts, flaky_definition(failures=0)).run_to_end()
    engine = _engine(parts, flaky_definition(failures=9, kind="permanent"))
    broken = await engine.run_to_end()
    exhausted_engine = _engine(parts, flaky_definition(failures=9, kind="runtime"), retry_policy=FAST)
    exhausted = await exhausted_engine.run_to_end()
    failed = await records.get_runs_by_status(Status.FAILED)
    assert {r.id for r in failed} == {broken, exhausted}
    assert (await records.get_run_status(fine)) is Status.COMPLETED
    stage = await records.get_first_failed_stage(broken)
    events = await store.list(broken)
    assert (stage.stage_id, stage.error_message, stage.completed_at) == (
        "flaky",
        "attempt 1 failed on purpose",
        events[-1].ts,
    )
    assert (await records.get_run(broken)).completed_at == events[-1].ts
    assert (await records.get_last_completed_stage(broken)).stage_id == "first"
    assert (await records.get_stage(broken, "last")).status is Status.PENDING
    worn = await records.get_stage(exhausted, "flaky")
    assert (worn.status, worn.metrics) == (Status.FAILED, {"attempts": 4, "retry_count": 3})
    assert worn.error_message == "attempt 4 failed on purpose"


async def test_records_commit_and_roll_back_with_the_events(parts: tuple[Any, Any, Any]) -> None:
    store, records, _ = parts
    engine = _engine(parts, flaky_definition(failures=0))
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            fid = await engine.start(tx=tx)
            assert (await records.get_run(fid, tx=tx)).status is Status.PENDING
            raise RuntimeError("roll back")
    assert await store.flow_version(fid) == 0
    assert await records.get_run(fid) is None
    assert await records.get_stages_by_run(fid) == []

    fid = await engine.start()
    stale = await engine.load(fid)
    await engine.run_next(fid)
    before = await _snapshot(records, [fid])
    with pytest.raises(ConcurrencyConflict):  # another engine moved the flow on: nothing is written
        await engine.begin(stale, engine.plan(stale))
    assert await _snapshot(records, [fid]) == before
    assert (await records.get_run(fid)).flow_version == await store.flow_version(fid)


async def test_200_flows_through_the_engine_equal_their_records_rebuilt_from_the_log(
    parts: tuple[Any, Any, Any],
) -> None:
    store, records, _ = parts
    definitions = [
        three_steps(),
        flaky_definition(failures=1),  # one retry, then done
        flaky_definition(failures=9, kind="permanent"),  # failed for good at once
        flaky_definition(failures=9, kind="transient"),  # retries run out
    ]
    engines = [_engine(parts, d, retry_policy=FAST) for d in definitions]

    async def run(n: int) -> uuid.UUID:
        return await engines[n % len(engines)].run_to_end(inputs={"start": n})

    flows: list[uuid.UUID] = []
    for chunk in range(0, 200, 25):
        flows += await asyncio.gather(*(run(n) for n in range(chunk, chunk + 25)))
    recorded = await _snapshot(records, flows)
    statuses = [recorded[f][0]["status"] for f in flows]
    assert statuses.count(Status.COMPLETED) == 100
    assert statuses.count(Status.FAILED) == 100
    for fid in flows:
        assert recorded[fid][0]["flow_version"] == await store.flow_version(fid)

    report = await rebuild_records(store, records, definitions=definitions)  # over the rows in place
    assert (report.flows, report.rebuilt, report.newer, report.skipped) == (200, 200, 0, {})
    assert await _snapshot(records, flows) == recorded

    for fid in flows:  # and from nothing at all
        assert await records.delete_run(fid)
    assert await records.list_runs() == []
    report = await rebuild_records(store, records, definitions=definitions)
    assert report.rebuilt == 200
    assert await _snapshot(records, flows) == recorded


async def test_a_rebuild_never_takes_a_flow_back_to_an_older_version(parts: tuple[Any, Any, Any]) -> None:
    store, records, _ = parts
    definition = flaky_definition(failures=0)
    engine = _engine(parts, definition)
    fid = await engine.run_to_end()
    recorded = await _snapshot(records, [fid])
    events = await store.list(fid)
    older = events[:3]
    assert await records.rebuild_flow(replay(fid, older, definition), definition, older) is False
    assert await _snapshot(records, [fid]) == recorded


async def test_a_rebuild_finds_definitions_in_the_registry(parts: tuple[Any, Any, Any]) -> None:
    store, records, registry = parts
    known, unknown = flaky_definition(failures=1), flaky_definition(failures=2)
    flows = [await _engine(parts, known, retry_policy=FAST).run_to_end() for _ in range(3)]
    stray = await _engine(parts, unknown, retry_policy=FAST).run_to_end()
    recorded = await _snapshot(records, flows)
    for fid in [*flows, stray]:
        await records.delete_run(fid)
    await registry.register(known)
    report = await rebuild_records(store, records, registry=registry)
    assert (report.flows, report.rebuilt, report.skipped) == (4, 3, {"unknown definition": 1})
    assert report.unknown_definitions == {f"{unknown.name}@{unknown.hash}"}
    assert await _snapshot(records, flows) == recorded
    assert await records.get_run(stray) is None


async def test_records_turned_on_midway_cover_every_step_and_a_rebuild_fills_the_times(
    parts: tuple[Any, Any, Any],
) -> None:
    store, records, _ = parts
    definition = flaky_definition(failures=0)
    plain = FlowEngine(store, FlowRepository(), definition)
    fid = await plain.start()
    await plain.run_next(fid)  # step 0 ran before records were kept
    await _engine(parts, definition).run_next(fid)
    stages = await records.get_stages_by_run(fid)
    assert [(s.stage_id, s.status) for s in stages] == [
        ("first", Status.COMPLETED),
        ("flaky", Status.COMPLETED),
        ("last", Status.PENDING),
    ]
    assert stages[0].started_at is None  # its events came before the records
    await rebuild_records(store, records, definitions=[definition])
    events = await store.list(fid)
    first = await records.get_stage(fid, "first")
    assert (first.started_at, first.completed_at) == (events[1].ts, events[2].ts)
    assert (await records.get_run(fid)).created_at == events[0].ts


@pytest.fixture
def whole_backend(backend: Backend) -> Backend:
    """A ``Backend`` (what a worker takes)."""
    return backend


async def test_a_worker_keeps_records_by_default(whole_backend: Any) -> None:
    backend = whole_backend
    definition = three_steps()
    records = backend.workflow_records()
    assert records is backend.workflow_records()  # one per backend
    engine = FlowEngine(
        backend.event_store(), FlowRepository(), definition, queue=backend.work_queue(), records=records
    )
    flows = [await engine.submit(inputs={"start": n}) for n in range(4)]
    assert {r.id for r in await records.get_runs_by_status(Status.PENDING)} == set(flows)

    async def done() -> bool:
        return len(await records.get_runs_by_status(Status.COMPLETED)) == len(flows)

    async with Worker(backend, definition, poll_interval=0.05):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while not await done():
            assert loop.time() < deadline, "the worker's flows never showed as completed"
            await asyncio.sleep(0.01)
    for fid in flows:
        stages = await records.get_stages_by_run(fid)
        assert [s.status for s in stages] == [Status.COMPLETED] * 3
        assert (await records.get_run(fid)).flow_version == await backend.event_store().flow_version(fid)


async def test_a_worker_without_records_keeps_none() -> None:
    backend = InMemoryBackend()
    definition = three_steps()
    engine = FlowEngine(backend.event_store(), FlowRepository(), definition, queue=backend.work_queue())
    fid = await engine.submit()
    async with Worker(backend, definition, poll_interval=0.05, records=False):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while not (await engine.load(fid)).completed:
            assert loop.time() < deadline
            await asyncio.sleep(0.01)
    assert await backend.workflow_records().list_runs() == []


def test_stage_record_ids_are_stable() -> None:
    fid = uuid.UUID(int=7)
    assert stage_record_id(fid, "a") == stage_record_id(uuid.UUID(int=7), "a")
    assert stage_record_id(fid, "a") != stage_record_id(fid, "b")
    assert stage_record_id(fid, "a") != stage_record_id(uuid.UUID(int=8), "a")


# --- records written by the append itself (RecordingEventStore) -------------------------------


async def _rows(records: Any, fid: uuid.UUID) -> tuple[Any, list[Any]]:
    """The run and stage rows exactly as stored, ``updated_at`` included: a rewrite shows."""
    return await records.get_run(fid), await records.get_stages_by_run(fid)


async def _rebuilt_equal(store: Any, records: Any, definition: FlowDefinition, fid: uuid.UUID) -> None:
    """The records equal their rebuild from the log (``updated_at`` aside)."""
    kept = await _snapshot(records, [fid])
    report = await rebuild_records(store, records, definitions=[definition], flow_ids=[fid])
    assert report.rebuilt == 1
    assert await _snapshot(records, [fid]) == kept


async def test_a_recorded_append_records_only_what_it_writes(parts: tuple[Any, Any, Any]) -> None:
    """The store writes the records with the events, and only when it writes them: a retried
    append (its events stored already, even after the flow moved on) neither rewrites nor takes
    the records back, a conflicting one records nothing; the records equal their rebuild."""
    store, records, _ = parts
    assert isinstance(store, RecordingEventStore)
    assert store.carries(records)
    definition = flaky_definition(failures=0)
    engine = _engine(parts, definition)
    fid = await engine.start()
    started = [StepStarted(step_index=0, step_id="first", attempt=1, lease_until=engine.now())]
    signal = [StepSignal(step_index=0, step_id="first", signal="go", data=1, send_id="s1")]

    async def append(kinds: list[Any], version: int, ids: list[uuid.UUID], tx: Any = None) -> list[FlowEvent]:
        at = replay(fid, (await store.list(fid))[:version], definition)
        return await store.append_recorded(
            fid,
            kinds,
            projected_append(at, kinds, definition)[1],
            recorder=records,
            expected_version=version,
            event_ids=ids,
            tx=tx,
        )

    first_ids, signal_ids = [uuid.uuid4()], [uuid.uuid4()]
    first = await append(started, 1, first_ids)
    run = await records.get_run(fid)
    assert (run.status, run.started_at, run.flow_version) == (Status.RUNNING, first[0].ts, 2)
    assert (await records.get_stage(fid, "first")).started_at == first[0].ts
    await append(signal, 2, signal_ids)
    stored = await _rows(records, fid)
    assert stored[0].flow_version == 3

    assert await append(started, 1, first_ids) == first  # a retry after the flow moved on
    assert await _rows(records, fid) == stored  # nothing rewritten, nothing taken back
    assert (await append(signal, 2, signal_ids))[0].flow_version == 3
    assert await _rows(records, fid) == stored
    with pytest.raises(ConcurrencyConflict):  # a stale version, fresh ids: nothing written
        await append(signal, 2, [uuid.uuid4()])
    with pytest.raises(ConcurrencyConflict):
        await append(started, 1, [uuid.uuid4()])
    assert await _rows(records, fid) == stored
    assert await store.flow_version(fid) == 3
    await _rebuilt_equal(store, records, definition, fid)


async def test_a_recorded_append_commits_and_rolls_back_with_a_unit_of_work(
    parts: tuple[Any, Any, Any],
) -> None:
    store, records, _ = parts
    definition = flaky_definition(failures=0)
    engine = _engine(parts, definition)
    fid = await engine.run_to_end()
    before = await _rows(records, fid)
    other = await engine.start()
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            instance = await engine.load(other, tx=tx)
            await engine.begin(instance, engine.plan(instance), tx=tx)
            assert (await records.get_run(other, tx=tx)).status is Status.RUNNING
            assert (await records.get_stage(other, "first", tx=tx)).status is Status.RUNNING
            raise RuntimeError("roll back")
    assert await store.flow_version(other) == 1
    assert (await records.get_run(other)).status is Status.PENDING
    assert (await records.get_stage(other, "first")).status is Status.PENDING
    assert await _rows(records, fid) == before

    async with store.transaction() as tx:
        instance = await engine.load(other, tx=tx)
        await engine.begin(instance, engine.plan(instance), tx=tx)
    assert (await records.get_run(other)).flow_version == await store.flow_version(other) == 2
    assert (await records.get_stage(other, "first")).status is Status.RUNNING
    await _rebuilt_equal(store, records, definition, other)


async def test_an_engine_that_recorded_a_flow_writes_every_stage_again_after_an_unrecorded_append(
    parts: tuple[Any, Any, Any],
) -> None:
    """An engine sends only the stages an append names while the stored records are at the version
    its own last recorded append left; after another writer appended without records, its next
    append (on the flow reloaded at the newer version) writes every stage again, the one the other
    writer ran included (as when records are turned on midway: its times come with a rebuild)."""
    store, records, _ = parts
    definition = flaky_definition(failures=0)
    recorded = _engine(parts, definition)
    plain = FlowEngine(store, FlowRepository(), definition)
    fid = await recorded.start()
    await recorded.run_next(fid)  # step 0, recorded: only its stage is sent from here on
    await _rebuilt_equal(store, records, definition, fid)
    await plain.run_next(fid)  # step 1, not recorded: the stored run is now behind
    await recorded.run_to_end(fid)  # the last step and the end, on the flow reloaded at the newer version
    stages = await records.get_stages_by_run(fid)
    assert [(s.stage_id, s.status) for s in stages] == [
        ("first", Status.COMPLETED),
        ("flaky", Status.COMPLETED),
        ("last", Status.COMPLETED),
    ]
    assert (await records.get_run(fid)).status is Status.COMPLETED
    flaky = await records.get_stage(fid, "flaky")  # written whole by the last append alone
    assert flaky.started_at is None  # its events were not recorded: a rebuild fills its times
    await rebuild_records(store, records, definitions=[definition], flow_ids=[fid])
    await _rebuilt_equal(store, records, definition, fid)


async def test_a_long_flow_recorded_step_by_step_equals_its_rebuild(parts: tuple[Any, Any, Any]) -> None:
    """Forty steps, each append sending only its own stages: every stage ends as the log says."""
    store, records, _ = parts
    definition = FlowDefinition("forty", [Produce(f"s{i}") for i in range(40)])
    engine = _engine(parts, definition)
    fid = await engine.start()
    await engine.run_to_end(fid)
    stages = await records.get_stages_by_run(fid)
    assert len(stages) == 40
    assert all(s.status is Status.COMPLETED for s in stages)
    await _rebuilt_equal(store, records, definition, fid)


async def test_a_run_deleted_by_hand_is_made_again_by_a_rebuild_not_by_the_engine(
    parts: tuple[Any, Any, Any],
) -> None:
    """After the engine's own recorded append, a run deleted by hand stays deleted through the
    flow's later appends, on every backend; a rebuild writes it from the log."""
    store, records, _ = parts
    definition = three_steps()
    engine = _engine(parts, definition)
    fid = await engine.start(inputs={"n": 1})
    await engine.run_next(fid)
    assert await records.delete_run(fid)

    await engine.run_to_end(fid)

    assert await records.get_run(fid) is None
    assert await records.get_stages_by_run(fid) == []
    await rebuild_records(store, records, definitions=[definition])
    run = await records.get_run(fid)
    assert (run.status, run.input) == (Status.COMPLETED, {"n": 1})
    assert [s.status for s in await records.get_stages_by_run(fid)] == [Status.COMPLETED] * 3


async def test_a_stage_deleted_by_hand_is_made_again_by_a_rebuild_not_by_the_engine(
    parts: tuple[Any, Any, Any],
) -> None:
    """After the engine's own recorded append, a stage row deleted by hand stays deleted while the
    flow goes on (its other stages and its run are kept current), on every backend; a rebuild
    writes it from the log."""
    store, records, _ = parts
    definition = three_steps()
    engine = _engine(parts, definition)
    fid = await engine.start()
    await engine.run_next(fid)
    stage = await records.get_stage(fid, "b")
    assert stage is not None
    assert await records.delete_stage(stage.id)

    await engine.run_to_end(fid)

    assert [s.stage_id for s in await records.get_stages_by_run(fid)] == ["a", "c"]
    assert (await records.get_run(fid)).status is Status.COMPLETED
    assert (await records.get_stage(fid, "c")).status is Status.COMPLETED
    await rebuild_records(store, records, definitions=[definition])
    assert [(s.stage_id, s.status) for s in await records.get_stages_by_run(fid)] == [
        ("a", Status.COMPLETED),
        ("b", Status.COMPLETED),
        ("c", Status.COMPLETED),
    ]


@pytest.mark.parametrize("writer", ["the same engine", "another engine", "concurrent flows"])
async def test_what_a_flows_start_fixed_is_left_as_the_row_has_it(
    parts: tuple[Any, Any, Any], writer: str
) -> None:
    """A run's workflow id, name, type, config and input, a stage's name, number, group and config
    are written when the row is made and by a rebuild; an append leaves them as the row has them
    (here: a run made by hand before its flow started, a stage's config edited by hand), whichever
    form it takes on whichever backend: the engine's own next append (which knows its records are
    stored), another engine's (which does not), appends of several flows at once (grouped on
    PostgreSQL). A rebuild writes them from the log."""
    store, records, _ = parts
    definition = three_steps()
    engine = _engine(parts, definition)
    fids = [uuid.uuid4() for _ in range(3)]
    for n, fid in enumerate(fids):
        await records.create_run(
            id=fid,
            workflow_id="by hand",
            workflow_name="edited",
            workflow_type="hand",
            input={"by": "hand"},
            config={"edited": True},
        )
        await engine.start(flow_id=fid, inputs={"n": n})
        await engine.run_next(fid)
        await records.update_stage_by_run_and_stage_id(fid, "b", config=None)
    runner = engine if writer != "another engine" else _engine(parts, definition)
    if writer == "concurrent flows":
        await asyncio.gather(*(runner.run_to_end(fid) for fid in fids))
    else:
        for fid in fids:
            await runner.run_to_end(fid)

    for fid in fids:
        run = await records.get_run(fid)
        assert (run.status, run.workflow_id, run.workflow_name, run.workflow_type) == (
            Status.COMPLETED,
            "by hand",
            "edited",
            "hand",
        )
        assert (run.config, run.input) == ({"edited": True}, {"by": "hand"})
        stage = await records.get_stage(fid, "b")
        assert (stage.status, stage.stage_name, stage.config) == (Status.COMPLETED, "Add", None)
    await rebuild_records(store, records, definitions=[definition], flow_ids=fids)
    for n, fid in enumerate(fids):
        run = await records.get_run(fid)
        assert (run.workflow_name, run.input, run.config["steps"]) == ("sum3", {"n": n}, 3)
        assert (await records.get_stage(fid, "b")).config == {"n": 2}


async def test_a_start_moved_by_hand_past_the_end_leaves_no_duration_and_the_flow_goes_on(
    parts: tuple[Any, Any, Any],
) -> None:
    """An operator moves a run's and a stage's start after the time the flow ends: the appends that
    end them must still commit (a negative duration once refused the whole append on PostgreSQL),
    and such rows have no duration, on every backend. A rebuild writes the log's times again."""
    store, records, _ = parts
    definition = three_steps()
    engine = _engine(parts, definition)
    fid = await engine.start()
    await engine.run_next(fid)
    later = datetime.now(UTC) + timedelta(days=365)
    await records.update_run(fid, started_at=later)
    await records.update_stage_by_run_and_stage_id(fid, "b", started_at=later)

    await engine.run_to_end(fid)

    run, stage = await records.get_run(fid), await records.get_stage(fid, "b")
    assert (run.status, run.started_at, run.duration) == (Status.COMPLETED, later, None)
    assert (stage.status, stage.started_at, stage.duration) == (Status.COMPLETED, later, None)
    assert run.completed_at is not None
    assert stage.completed_at is not None
    await rebuild_records(store, records, definitions=[definition], flow_ids=[fid])
    run = await records.get_run(fid)
    assert run.started_at < run.completed_at
    assert run.duration == (run.completed_at - run.started_at) // timedelta(milliseconds=1)
