"""Throughput as the log grows (issue 10): does any hot statement get slower as ``event_log`` grows
from empty to a million events when its statistics never catch up?

32 tasks run 3-step flows with ``run_to_end`` (group commit on) at each log size; between sizes the
log is filled behind the library's back (one bulk INSERT of synthetic flows), and autovacuum is off
for the log's tables, so the planner never learns the new size: what a pooled connection planned on
the small table is what it runs on the large one. Flat figures mean no plan scans.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import asyncpg

from chem_persistence_async._bench.flows import noop3
from chem_persistence_async.backends.postgres.database import Database
from chem_persistence_async.engine.engine import FlowEngine
from chem_persistence_async.engine.repository import FlowRepository

_TABLES = ("event_log", "workflow_step_artifacts", "step_execution_errors")

_FILL = """
INSERT INTO event_log (event_id, flow_id, flow_version, event_type, payload)
SELECT gen_random_uuid(), f.id, v, 'stepstarted',
       jsonb_build_object('event_type', 'stepstarted', 'step_index', 0, 'step_id', 's', 'attempt', v)
FROM (SELECT gen_random_uuid() AS id FROM generate_series(1, $1::int)) AS f, generate_series(1, 50) AS v
"""
"""``$1`` flows of 50 events each."""


async def log_growth(
    db: Database,
    conn: asyncpg.Connection,
    *,
    sizes: tuple[int, ...],
    flows: int,
    tasks: int,
    note: Callable[[str], None],
) -> dict[str, Any]:
    for table in _TABLES:
        await conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
    definition = noop3()
    engine = FlowEngine(db.event_store(), FlowRepository(), definition)
    rows: list[dict[str, Any]] = []
    try:
        for size in sizes:
            have = int(await conn.fetchval("SELECT count(*) FROM event_log"))
            while have < size:
                batch = min(size - have, 250_000)
                await conn.execute(_FILL, max(1, batch // 50))
                have = int(await conn.fetchval("SELECT count(*) FROM event_log"))
            rate = await _flows_per_second(engine, flows, tasks)
            rows.append({"log_events": have, "flows_per_s": rate})
            note(f"log growth: {have:,} events in the log: {rate:,.0f} flows/s")
    finally:
        for table in _TABLES:
            await conn.execute(f"ALTER TABLE {table} RESET (autovacuum_enabled)")
    first, last = rows[0]["flows_per_s"], rows[-1]["flows_per_s"]
    return {
        "tasks": tasks,
        "flows_per_sample": flows,
        "rows": rows,
        "last_over_first": last / first if first else None,
    }


async def _flows_per_second(engine: FlowEngine, flows: int, tasks: int) -> float:
    per_task = max(1, flows // tasks)

    async def runner() -> None:
        for _ in range(per_task):
            await engine.run_to_end()

    started = time.perf_counter()
    await asyncio.gather(*(runner() for _ in range(tasks)))
    return per_task * tasks / (time.perf_counter() - started)
