"""The records benchmark runs end to end on a tiny workload and reports every figure (not timed)."""

from __future__ import annotations

import io
import uuid

import asyncpg

from chem_persistence_async import Database
from chem_persistence_async._bench.records import (
    RecordsBenchConfig,
    flow_definition,
    render,
    run_records_bench,
)
from chem_persistence_async._bench.records_raw import run_raw_flow
from chem_persistence_async._bench.runner import Progress
from chem_persistence_async.backends.postgres.records import WorkflowRecords
from chem_persistence_async.engine.engine import FlowEngine
from chem_persistence_async.engine.repository import FlowRepository


async def test_the_records_benchmark_reports_every_figure(db_url: str) -> None:
    cfg = RecordsBenchConfig(
        rounds=1, calls=200, raw_calls=20, flows=4, concurrent_flows=8, tasks=4, worker_flows=8
    )
    result = await run_records_bench(db_url, cfg, Progress(stream=io.StringIO()))
    log = result["log_call"]
    assert log["logger"]["median"] > 0
    assert log["raw_one_by_one"]["median"] > 0
    assert log["ratio_logger_vs_raw_one_by_one"] > 0
    records = result["records"]
    assert set(records["overhead_sequential"]) == {"with WorkflowRecords", "with a recorder writing nothing"}
    assert set(records["overhead_worker"]) == {"with WorkflowRecords"}
    table = render(result)
    assert "log_call / raw one by one" in table
    assert "time added with WorkflowRecords" in table
    assert "the floor" in table
    assert records["floor_sequential"] > -1
    assert set(records["added_ms_sequential"]) == {"library", "raw"}
    cpu = records["cpu_sequential"]
    assert all(figure["median"] > 0 for figure in cpu["client"].values())
    assert set(cpu["added_ms"]) <= {"client", "server"}
    assert "client" in cpu["added_ms"]
    assert "client CPU added per flow" in table


async def test_the_raw_floor_writes_the_records_the_engine_writes(
    db: Database, conn: asyncpg.Connection
) -> None:
    """The raw pair does the library's work: the same events and the same run and stage rows (but
    for the ids and times each side makes)."""
    engine = FlowEngine(db.event_store(), FlowRepository(), flow_definition(), records=WorkflowRecords(db))
    ours = await engine.run_to_end()
    raw = await run_raw_flow(conn, records=True)
    bare = await run_raw_flow(conn, records=False)

    async def written(fid: uuid.UUID) -> tuple[object, ...]:
        events = await conn.fetch(
            "SELECT flow_version, event_type FROM event_log WHERE flow_id = $1 ORDER BY flow_version", fid
        )
        run = await conn.fetchrow(
            "SELECT status, flow_version, started_at IS NOT NULL, completed_at IS NOT NULL, duration IS NOT NULL, "
            "output ? 'artifacts' FROM workflow_runs WHERE id = $1",
            fid,
        )
        stages = await conn.fetch(
            "SELECT stage_id, stage_number, status, started_at IS NOT NULL, completed_at IS NOT NULL, "
            "duration IS NOT NULL, output_data ? 'artifacts', metrics FROM workflow_stages "
            "WHERE workflow_run_id = $1 ORDER BY stage_number",
            fid,
        )
        return [tuple(e) for e in events], None if run is None else tuple(run), [tuple(s) for s in stages]

    assert await written(raw) == await written(ours)
    events, run, stages = await written(bare)
    assert events == (await written(ours))[0]
    assert run is None
    assert stages == []
