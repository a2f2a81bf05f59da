"""A PostgreSQL restart in the middle of workers running flows (issue 12, SPEC 8.4).

Two workers, each on a ``Database`` of its own (as two processes would be), listen for NOTIFY and
poll only every ``POLL`` seconds, longer than the whole test: only a notification, or a job they put
off coming due, makes them claim. Flows (whose middle step fails transiently at random) are running
when the server is stopped and started again. Then:

* both listeners reconnected: each logged ``listener reconnected``, and the restarted server has
  two listening sessions again;
* every flow in flight during the restart completes (the commits the restart broke come back when
  their backoff or lease runs out, their attempts closed as lost);
* flows submitted afterwards, from a third ``Database``, start within ``STARTS_WITHIN`` seconds (a
  NOTIFY heard by a reconnected listener), far sooner than a poll;
* nothing was lost or duplicated: every flow completed with the in-memory fingerprint, the attempt
  rules hold in every log, each failure has one error row, one completed job per flow and none left.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from contextlib import AsyncExitStack
from datetime import timedelta

import asyncpg
import pytest

from chem_persistence_async import Database, FlowEngine, FlowRepository, RetryPolicy, Worker
from tests.chaos.checks import check_flows, describe
from tests.chaos.flows import chaos_definition
from tests.chaos.test_worker_chaos import check_queue
from tests.support.chaos import unfinished, wait_for
from tests.support.faults import PrivateServer

FLOWS = 30
"""Flows submitted before the restart (eight run at once: the restart finds some in flight)."""
POLL = 120.0
"""Seconds between a worker's polls: longer than the whole test."""
STARTS_WITHIN = 5.0
"""A flow submitted after the restart starts within this many seconds (it was measured at ~0.1 s)."""
RECONNECTED = "listener reconnected"
POLICY = RetryPolicy(max_retries=30, initial_delay=0.01, max_delay=0.1)
"""Retries enough that no flow fails for good (0.3**31: never)."""


async def _open(url: str) -> Database:
    return await Database.open(url, min_connections=1, max_connections=4)


async def _count(db: Database, sql: str, *args: object) -> int:
    async with db.acquire() as conn:
        return int(await conn.fetchval(sql, *args))


async def test_workers_ride_out_a_server_restart_and_wake_on_notify_afterwards(
    private_server: PrivateServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chem_persistence_async.wakeup")
    definition = chaos_definition(p=0.3, sleep=0.05)
    async with AsyncExitStack() as stack:
        submitter = await _open(private_server.url)
        stack.push_async_callback(submitter.close)
        engine = FlowEngine(
            submitter.event_store(), FlowRepository(), definition, queue=submitter.work_queue()
        )
        workers = []
        for _ in range(2):
            db = await _open(private_server.url)
            stack.push_async_callback(db.close)
            worker = Worker(
                db,
                definition,
                concurrency=4,
                poll_interval=POLL,
                lease=timedelta(seconds=3),
                retry_policy=POLICY,
            )
            workers.append(await stack.enter_async_context(worker))

        async def started(flow: uuid.UUID | None = None) -> int:
            return await _count(
                submitter,
                "SELECT count(DISTINCT flow_id) FROM event_log WHERE event_type = 'stepstarted'"
                " AND ($1::uuid IS NULL OR flow_id = $1)",
                flow,
            )

        async def completed() -> int:
            return await _count(
                submitter, "SELECT count(*) FROM event_log WHERE event_type = 'flowcompleted'"
            )

        async def explain() -> str:
            async with submitter.acquire() as conn:
                return await unfinished(conn) + f"\nworkers: {[(w.stats, w.running) for w in workers]}"

        flows = {await engine.submit(inputs={"start": n}): n for n in range(FLOWS)}
        await wait_for(lambda: _at_least(started(), 4), 30, "a few flows to be running")
        in_flight = len(flows) - await completed()
        await asyncio.to_thread(private_server.stop, "fast")
        await asyncio.to_thread(private_server.start)
        restarted = time.monotonic()

        await wait_for(lambda: _reconnects(caplog) >= len(workers), 30, "both listeners to reconnect")
        await wait_for(
            lambda: _at_least(completed(), len(flows)), 60, "the flows in flight to complete", explain=explain
        )
        listening = await _count(
            submitter, "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE '%:listen'"
        )
        assert listening == len(workers)
        recovered = time.monotonic()

        latencies = []
        for n in range(FLOWS, FLOWS + 6):  # one at a time, each on idle workers: only its NOTIFY wakes them
            await wait_for(lambda: all(w.running == 0 for w in workers), 30, "idle workers")
            submitted = time.monotonic()
            flow = await engine.submit(inputs={"start": n})
            flows[flow] = n
            await wait_for(lambda f=flow: _at_least(started(f), 1), STARTS_WITHIN, f"flow {n} to start")
            latencies.append(time.monotonic() - submitted)
        await wait_for(
            lambda: _at_least(completed(), len(flows)), 60, "every flow to complete", explain=explain
        )
        stats = [w.stats for w in workers]

    async with Database.connect(private_server.url, min_connections=1) as db:
        conn: asyncpg.Connection
        async with db.acquire() as conn:
            tally = await check_flows(
                conn, FlowEngine(db.event_store(), FlowRepository(), definition), flows, total_added=14
            )
            await check_queue(conn, set(flows))
    print(
        f"\n[server restart] {in_flight} flows in flight at the restart, done "
        f"{recovered - restarted:.1f}s after it; later submits started after "
        f"{', '.join(f'{s:.3f}' for s in latencies)}s; {stats}; {describe(tally)}"
    )
    assert in_flight >= 1, "every flow was done before the restart: the test proved nothing"
    assert _reconnects(caplog) == len(workers)  # once each: no flapping after the restart
    assert tally.interrupted == tally.other_failures == 0


async def _at_least(count: object, n: int) -> bool:
    assert asyncio.iscoroutine(count)
    return int(await count) >= n


def _reconnects(caplog: pytest.LogCaptureFixture) -> int:
    return sum(1 for r in caplog.records if r.getMessage() == RECONNECTED)
