"""What only PostgreSQL can show of the records: plans, triggers, cascades and rows written."""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from chem_persistence_async import (
    ConcurrencyConflict,
    Database,
    FlowEngine,
    FlowRepository,
    PgEventStore,
    RetryPolicy,
    Status,
    WorkflowRecords,
    rebuild_records,
    replay,
)
from chem_persistence_async.backends.postgres.sql import events as event_sql
from chem_persistence_async.backends.postgres.sql import records as sql
from chem_persistence_async.domain.events import StepStarted
from chem_persistence_async.domain.records import duration_ms
from chem_persistence_async.engine.engine import projected_append
from chem_persistence_async.errors import PayloadTooLargeError, UnknownStatusError, ValueOutOfRangeError
from chem_persistence_async.worker.worker import Worker
from tests.engine.flows import flaky_definition
from tests.support.faults import LostAckProxy
from tests.support.waiting import until
from tests.worker.flows import three_steps

RUNS = 100_000


async def _plan(conn: asyncpg.Connection, q: Any, values: dict[str, Any]) -> str:
    rows = await conn.fetch("EXPLAIN (FORMAT JSON) " + q.text, *q.args(values))
    return json.dumps(json.loads(rows[0][0]))


async def test_runs_by_status_on_100000_never_analyzed_runs_uses_its_index(conn: asyncpg.Connection) -> None:
    await conn.execute("ALTER TABLE workflow_runs SET (autovacuum_enabled = false)")
    await conn.execute(
        """
        INSERT INTO workflow_runs (id, workflow_id, workflow_name, workflow_type, status, input, created_at)
        SELECT gen_random_uuid(), 'wf', 'wf', 'type-' || (n % 10),
               CASE WHEN n % 100 = 0 THEN 'FAILED' WHEN n % 7 = 0 THEN 'RUNNING' ELSE 'COMPLETED' END,
               '{}'::jsonb, now() - make_interval(secs => n)
        FROM generate_series(1, $1::int) AS n
        """,
        RUNS,
    )
    assert await conn.fetchval(
        "SELECT last_analyze IS NULL AND last_autoanalyze IS NULL "
        "FROM pg_stat_user_tables WHERE relname = 'workflow_runs'"
    )
    for mode in ("force_custom_plan", "force_generic_plan"):  # planned for the values, and not
        await conn.execute(f"SET plan_cache_mode = {mode}")
        for values in ({"status": "FAILED", "limit": None}, {"status": "COMPLETED", "limit": 100}):
            plan = await _plan(conn, sql.RUNS_BY_STATUS, values)
            assert "workflow_runs_status_idx" in plan, (mode, plan)
            assert "Seq Scan" not in plan, (mode, plan)
        # The first page of a status most runs are in: read in index order, no sort.
        plan = await _plan(conn, sql.RUNS_BY_STATUS, {"status": "COMPLETED", "limit": 100})
        assert '"Sort"' not in plan, (mode, plan)
    db_rows = await conn.fetch(
        sql.RUNS_BY_STATUS.text, *sql.RUNS_BY_STATUS.args({"status": "FAILED", "limit": None})
    )
    assert len(db_rows) == RUNS // 100


async def test_updated_at_is_kept_by_the_database(db: Database, conn: asyncpg.Connection) -> None:
    records = WorkflowRecords(db)
    run = await records.create_run(workflow_id="w", workflow_name="n", workflow_type="t", input={})
    await conn.execute(
        "UPDATE workflow_runs SET updated_at = '2000-01-01', priority = 1 WHERE id = $1", run.id
    )
    after = await records.get_run(run.id)
    assert after.updated_at > run.updated_at  # the trigger's time, not the one written
    stage = await records.create_stage(
        workflow_run_id=run.id, stage_id="s", stage_name="S", stage_number=0, execution_group=0
    )
    await records.update_stage(stage.id, status=Status.RUNNING)
    assert (await records.get_stage_by_id(stage.id)).updated_at > stage.updated_at
    artifact = await records.save_artifact(run.id, "k", "ARTIFACT", 1)
    again = await records.save_artifact(run.id, "k", "ARTIFACT", 2)
    assert (again.created_at, again.updated_at > artifact.updated_at) == (artifact.created_at, True)


async def test_the_engine_records_carry_the_time_of_the_append_that_wrote_them(
    db: Database, conn: asyncpg.Connection
) -> None:
    """The projection sets ``updated_at`` itself (the triggers skip rows already at ``now()``): a
    run holds its last append's time, a stage the time of the append that last changed it."""
    engine = FlowEngine(
        db.event_store(), FlowRepository(), flaky_definition(failures=0), records=WorkflowRecords(db)
    )
    fid = await engine.run_to_end()
    last_ts = await conn.fetchval("SELECT max(ts) FROM event_log WHERE flow_id = $1", fid)
    assert await conn.fetchval("SELECT updated_at FROM workflow_runs WHERE id = $1", fid) == last_ts
    stages = await conn.fetch(
        """SELECT s.updated_at, (SELECT max(l.ts) FROM event_log l WHERE l.flow_id = s.workflow_run_id
                                 AND l.payload ->> 'step_id' = s.stage_id) AS changed
           FROM workflow_stages s WHERE s.workflow_run_id = $1""",
        fid,
    )
    assert len(stages) == 3
    assert all(row["updated_at"] == row["changed"] for row in stages)


async def test_sql_writes_are_held_to_the_record_rules(db: Database, conn: asyncpg.Connection) -> None:
    """The rules the records' domains keep (migration 0009) hold for SQL written by hand."""
    records = WorkflowRecords(db)
    run = await records.create_run(workflow_id="w", workflow_name="n", workflow_type="t", input={})
    stage = await records.create_stage(
        workflow_run_id=run.id, stage_id="s", stage_name="S", stage_number=0, execution_group=0
    )
    refused = [
        ("workflow_runs", "status = 'DONE'"),
        ("workflow_runs", "workflow_name = ''"),
        ("workflow_runs", "workflow_id = repeat('w', 501)"),
        ("workflow_runs", "total_tokens = -1"),
        ("workflow_runs", "total_cost = -0.5"),
        ("workflow_runs", "duration = -1"),
        ("workflow_stages", "status = 'done'"),
        ("workflow_stages", "stage_name = repeat('s', 201)"),
        ("workflow_stages", "stage_number = -1"),
        ("workflow_stages", "execution_group = -1"),
    ]
    for table, change in refused:
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(f"UPDATE {table} SET {change}")
    await conn.execute(
        "UPDATE workflow_stages SET status = 'SKIPPED', duration = NULL WHERE id = $1", stage.id
    )
    assert (await records.get_stage_by_id(stage.id)).status is Status.SKIPPED


async def test_deleting_rows_in_sql_cascades(db: Database, conn: asyncpg.Connection) -> None:
    records = WorkflowRecords(db)
    run = await records.create_run(workflow_id="w", workflow_name="n", workflow_type="t", input={})
    stage = await records.create_stage(
        workflow_run_id=run.id, stage_id="s", stage_name="S", stage_number=0, execution_group=0
    )
    await records.create_log(level="INFO", message="m", workflow_run_id=run.id, workflow_stage_id=stage.id)
    await records.create_log(level="INFO", message="m", workflow_run_id=run.id)
    await records.save_artifact(run.id, "a", "ARTIFACT", 1, workflow_stage_id=stage.id)
    await records.save_artifact(run.id, "b", "ARTIFACT", 1)
    await conn.execute("DELETE FROM workflow_stages WHERE id = $1", stage.id)
    counts = "SELECT (SELECT count(*) FROM workflow_logs), (SELECT count(*) FROM workflow_artifacts)"
    assert tuple(await conn.fetchrow(counts)) == (1, 1)
    await conn.execute("DELETE FROM workflow_runs WHERE id = $1", run.id)
    assert tuple(await conn.fetchrow(counts)) == (0, 0)


async def test_artifacts_are_jsonb_with_their_size(db: Database, conn: asyncpg.Connection) -> None:
    records = WorkflowRecords(db)
    run = await records.create_run(workflow_id="w", workflow_name="n", workflow_type="t", input={})
    await records.save_artifact(run.id, "k", "ARTIFACT", {"b": [1, 2], "a": "x"})
    row = await conn.fetchrow(
        "SELECT jsonb_typeof(data), data->'b'->>1, size FROM workflow_artifacts WHERE key = 'k'"
    )
    assert tuple(row) == ("object", "2", len(b'{"a":"x","b":[1,2]}'))


async def test_refused_input_leaves_the_tables_as_they_were(db: Database, conn: asyncpg.Connection) -> None:
    records = WorkflowRecords(db, max_payload_bytes=100)
    run = await records.create_run(workflow_id="w", workflow_name="n", workflow_type="t", input={})
    before = await conn.fetch("SELECT * FROM workflow_runs")
    with pytest.raises(UnknownStatusError):
        await records.update_run(run.id, status="DONE")
    with pytest.raises(ValueOutOfRangeError):
        await records.update_run(run.id, total_tokens=-3)
    with pytest.raises(PayloadTooLargeError):
        await records.update_run(run.id, output="x" * 200)
    with pytest.raises(PayloadTooLargeError):
        await records.save_artifact(run.id, "k", "ARTIFACT", ["x" * 200])
    with pytest.raises(ValueOutOfRangeError):
        await records.save_artifact(run.id, "k" * 501, "ARTIFACT", 1)
    assert await conn.fetch("SELECT * FROM workflow_runs") == before
    assert await conn.fetchval("SELECT count(*) FROM workflow_artifacts") == 0


async def test_the_engine_writes_runs_and_stages_in_one_statement(
    db: Database, conn: asyncpg.Connection
) -> None:
    """The record of an append is one statement: its run, then its stages, in the same unit of
    work; a stage whose projection did not change is not written again (no new row version)."""
    engine = FlowEngine(
        db.event_store(), FlowRepository(), flaky_definition(failures=0), records=WorkflowRecords(db)
    )
    fid = await engine.run_to_end()
    xmins = await conn.fetch(
        "SELECT stage_id, xmin::text::bigint AS x FROM workflow_stages WHERE workflow_run_id = $1 ORDER BY stage_number",
        fid,
    )
    run_xmin = await conn.fetchval("SELECT xmin::text::bigint FROM workflow_runs WHERE id = $1", fid)
    last = await conn.fetchval("SELECT max(xmin::text::bigint) FROM event_log WHERE flow_id = $1", fid)
    assert run_xmin == last  # the run was written by the last append's transaction
    assert xmins[0]["x"] < last  # the first stage was left alone once it had finished
    assert xmins[-1]["x"] == last


async def _equal_to_rebuild(store: Any, records: Any, definitions: list[Any], flows: list[Any]) -> None:
    """Every flow's runs and stages equal their rebuild from the log (``updated_at`` aside)."""

    async def rows() -> list[Any]:
        out = []
        for fid in flows:
            run = replace(await records.get_run(fid), updated_at=None)
            stages = [replace(s, updated_at=None) for s in await records.get_stages_by_run(fid)]
            out.append((run, stages))
        return out

    kept = await rows()
    report = await rebuild_records(store, records, definitions=definitions, flow_ids=flows)
    assert report.rebuilt == len(flows)
    assert await rows() == kept


async def test_recorded_appends_are_autocommit_statements_grouped_like_any_other(db_url: str) -> None:
    """With ``WorkflowRecords`` an append stays ONE autocommit statement (no unit of work, no
    second statement), grouped with concurrent ones; the records equal their rebuild."""
    async with Database.connect(db_url, max_connections=8, group_commit_writers=1) as db:
        store, records = db.event_store(), db.workflow_records()
        definitions = [flaky_definition(failures=0), flaky_definition(failures=1)]
        engines = [
            FlowEngine(
                store, FlowRepository(), d, records=records, retry_policy=RetryPolicy(initial_delay=0.0)
            )
            for d in definitions
        ]
        flows = await asyncio.gather(*(engines[n % 2].run_to_end() for n in range(16)))
        stats = store.group_commit_stats
        assert stats is not None
        appends = sum([len({e.seq for e in await store.list(f)}) for f in flows])  # upper bound
        assert 0 < stats["alone"] + stats["grouped"] <= appends
        assert stats["groups"] > 0
        statuses = {(await records.get_run(f)).status for f in flows}
        assert statuses == {Status.COMPLETED}
        await _equal_to_rebuild(store, records, definitions, flows)


@pytest.mark.parametrize("marker", [b"INSERT INTO event_log", b"WITH items AS"])
async def test_a_lost_acknowledgement_of_a_recorded_append_records_once(db_url: str, marker: bytes) -> None:
    """The append and its records commit, the answer is lost: the retry finds the events stored
    and records nothing again (alone, and as a member of a group)."""
    definition = flaky_definition(failures=1)
    async with (
        LostAckProxy(db_url, marker=marker) as proxy,
        Database.connect(
            proxy.url, max_connections=4, retry_delays_ms=(5, 10, 20, 40), group_commit_writers=1
        ) as db,
    ):
        store, records = db.event_store(), db.workflow_records()
        engine = FlowEngine(
            store,
            FlowRepository(),
            definition,
            records=records,
            retry_policy=RetryPolicy(initial_delay=0.0),
        )
        flows = []
        for _ in range(3):
            proxy.arm()
            flows += await asyncio.gather(*(engine.run_to_end() for _ in range(4)))
        assert proxy.cuts == 3
        assert sum(db.metrics.snapshot()["retries"].values()) == 3
        for fid in flows:
            events = await store.list(fid)
            assert [e.flow_version for e in events] == list(range(1, len(events) + 1))
            run = await records.get_run(fid)
            assert (run.status, run.flow_version) == (Status.COMPLETED, len(events))
        await _equal_to_rebuild(store, records, [definition], flows)


async def test_a_group_records_only_the_members_whose_events_go_in(db_url: str) -> None:
    """Many recorded appends committed as one group, one member at a stale version: the group's
    statement writes the others' runs and stages, and neither the events nor the records of the
    stale one; every flow equals its rebuild."""
    definition = flaky_definition(failures=0)
    async with Database.connect(db_url, max_connections=4, group_commit_writers=1) as db:
        store, records = db.event_store(), db.workflow_records()
        engine = FlowEngine(store, FlowRepository(), definition, records=records)
        flows = [await engine.start() for _ in range(12)]
        kinds = [StepStarted(step_index=0, step_id="first", attempt=1, lease_until=engine.now())]
        at = {fid: replay(fid, await store.list(fid), definition) for fid in flows}

        async def append(fid: Any, version: int) -> Any:
            projection = projected_append(at[fid], kinds, definition)[1]
            return await store.append_recorded(
                fid, kinds, projection, recorder=records, expected_version=version
            )

        results = await asyncio.gather(
            *(append(fid, 0 if n == 6 else 1) for n, fid in enumerate(flows)), return_exceptions=True
        )
        stats = store.group_commit_stats
        assert stats is not None
        assert stats["grouped"] >= 2
        assert stats["failed_groups"] == 0
        assert isinstance(results[6], ConcurrencyConflict)
        for n, fid in enumerate(flows):
            run = await records.get_run(fid)
            stage = await records.get_stage(fid, "first")
            if n == 6:
                assert (run.status, run.flow_version, stage.status) == (Status.PENDING, 1, Status.PENDING)
            else:
                assert (run.status, run.flow_version, stage.status) == (Status.RUNNING, 2, Status.RUNNING)
                assert stage.started_at == run.started_at == results[n][0].ts
        await _equal_to_rebuild(store, records, [definition], flows)


async def test_an_engine_updates_the_records_it_knows_are_stored(
    db: Database, conn: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After its own recorded append, an engine's next appends of the flow update the stored run
    and stages (``stored_flow_records_ctes``: no upsert, nothing the flow's start fixed sent
    again), and the rows still equal their rebuild, a failed and retried step's included."""
    stored: list[bool] = []
    lean = event_sql.lean_append

    def spy(**flags: Any) -> Any:
        stored.append(flags.get("stored", False))
        return lean(**flags)

    monkeypatch.setattr(event_sql, "lean_append", spy)
    definition = flaky_definition(failures=1)
    store, records = db.event_store(), db.workflow_records()
    engine = FlowEngine(
        store, FlowRepository(), definition, records=records, retry_policy=RetryPolicy(initial_delay=0.0)
    )
    fid = await engine.run_to_end()
    assert stored[0] is False  # the flow's start: nothing stored yet
    assert len(stored) > 1
    assert all(stored[1:])
    assert (await records.get_run(fid)).status is Status.COMPLETED
    flaky = await records.get_stage(fid, "flaky")  # failed once, retried, finished
    assert (flaky.status, flaky.error_message) == (Status.COMPLETED, "attempt 1 failed on purpose")
    assert flaky.metrics == {"attempts": 2, "retry_count": 1}
    await _equal_to_rebuild(store, records, [definition], [fid])


async def _runs_toast_bytes(conn: asyncpg.Connection) -> int:
    return int(
        await conn.fetchval(
            "SELECT pg_relation_size(reltoastrelid) FROM pg_class WHERE oid = 'workflow_runs'::regclass"
        )
    )


async def test_recorded_appends_never_write_the_runs_input_again(
    db: Database, conn: asyncpg.Connection
) -> None:
    """A flow's input is written to its run once, when the run is made: no later recorded append
    (a second engine's first, which upserts the run; a Worker's, in group commits) writes it again.
    Each time it did, a large input went to the table (and the WAL) whole once more. A rebuild
    writes it from the log."""
    definition = three_steps()
    inputs = {"doc": [os.urandom(32).hex() for _ in range(1_000)]}  # ~66 KB, stored out of line
    first = FlowEngine(
        db.event_store(), FlowRepository(), definition, queue=db.work_queue(), records=db.workflow_records()
    )
    fids = [await first.submit(inputs=inputs) for _ in range(4)]
    written = await _runs_toast_bytes(conn)
    assert written > 4 * 32_000  # each run's input, once, out of line
    edited = fids[0]
    await conn.execute("UPDATE workflow_runs SET input = '{\"edited\": true}' WHERE id = $1", edited)

    other = FlowEngine(db.event_store(), FlowRepository(), definition, records=db.workflow_records())
    await other.run_next(fids[1])  # an engine that never wrote this flow's records upserts its run
    async with Worker(db, definition, concurrency=4, poll_interval=0.05, records=True) as worker:

        async def done() -> bool:
            return worker.stats.completed == len(fids)

        await until(done, 60, "the worker ran every flow")

    runs = await db.workflow_records().get_runs_by_status(Status.COMPLETED)
    assert {run.id for run in runs} == set(fids)
    assert {run.id: run.input for run in runs} == {
        fid: {"edited": True} if fid == edited else inputs for fid in fids
    }
    assert await _runs_toast_bytes(conn) == written  # no chunk written again

    await rebuild_records(db.event_store(), db.workflow_records(), definitions=[definition])
    assert (await db.workflow_records().get_run(edited)).input == inputs


async def test_grouped_appends_of_stored_flows_keep_their_runs_and_never_remake_a_deleted_one(
    db_url: str,
) -> None:
    """In a group commit, a member whose engine knows its records are stored sends no input: its run
    is updated and keeps its input; a run or stage deleted by hand meanwhile is not made again (as a
    lone append leaves it), until a rebuild."""
    database = await Database.open(db_url, min_connections=1, max_connections=8, group_commit_writers=1)
    try:
        store = PgEventStore(database)
        records = WorkflowRecords(database)
        definition = three_steps()
        engine = FlowEngine(store, FlowRepository(), definition, records=records)
        fids = [await engine.start(inputs={"n": n}) for n in range(10)]
        deleted = set(fids[::2])
        for fid in deleted:
            assert await records.delete_run(fid)
        without_a = fids[1]
        stage_a = await records.get_stage(without_a, "a")
        assert stage_a is not None
        assert await records.delete_stage(stage_a.id)

        await asyncio.gather(*(engine.run_next(fid) for fid in fids))  # bursts: one alone, then a group

        assert store.group_commit_stats["grouped"] >= 9
        for n, fid in enumerate(fids):
            run = await records.get_run(fid)
            if fid in deleted:
                assert run is None
                assert await records.get_stages_by_run(fid) == []
            else:
                assert run is not None
                assert (run.status, run.input, run.flow_version) == (Status.RUNNING, {"n": n}, 3)
                stages = {s.stage_id: s.status for s in await records.get_stages_by_run(fid)}
                if fid == without_a:
                    assert stages == {"b": Status.PENDING, "c": Status.PENDING}
                else:
                    assert stages == {"a": Status.COMPLETED, "b": Status.PENDING, "c": Status.PENDING}
        await rebuild_records(store, records, definitions=[definition])
        for n, fid in enumerate(fids):
            rebuilt = await records.get_run(fid)
            assert rebuilt is not None
            assert (rebuilt.input, rebuilt.flow_version) == ({"n": n}, 3)
            assert len(await records.get_stages_by_run(fid)) == 3
    finally:
        await database.close()


async def test_the_servers_duration_is_the_domains(conn: asyncpg.Connection) -> None:
    """``chem_duration_ms`` (what PostgreSQL's projection writes) equals ``duration_ms`` (what the
    in-memory backend writes) for every class of pair: sub-millisecond, equal, an end before the
    start (no duration, not a negative one the domain would refuse), a missing time."""
    t0 = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    pairs = [
        (t0, t0 + timedelta(microseconds=1999)),
        (t0, t0),
        (t0, t0 + timedelta(days=400, microseconds=1)),
        (t0, t0 - timedelta(microseconds=1)),
        (t0, t0 - timedelta(days=1)),
        (None, t0),
        (t0, None),
    ]
    for started, completed in pairs:
        server = await conn.fetchval("SELECT chem_duration_ms($1, $2)", started, completed)
        assert server == duration_ms(started, completed), (started, completed)
