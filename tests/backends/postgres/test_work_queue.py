"""The PostgreSQL queue under concurrency, and the plans its claim is served by."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from chem_persistence_async import Database, JobSpec, WorkQueue
from chem_persistence_async.backends.postgres.sql import queue as sql
from chem_persistence_async.backends.postgres.sql.query import Query
from tests.support.plans import nodes, plan_of, scans, sequential_scans_of


async def test_eight_claimers_over_ten_thousand_jobs_each_claimed_once(db: Database) -> None:
    queue = WorkQueue(db)
    ids = await queue.enqueue_many([JobSpec("k", {"n": n}) for n in range(10_000)])
    assert len(set(ids)) == 10_000
    claims: Counter[int] = Counter()
    tokens: dict[int, str] = {}

    async def claimer(worker: str) -> None:
        while jobs := await queue.claim(worker, limit=25, lease=timedelta(minutes=10)):
            for job in jobs:
                claims[job.id] += 1
                tokens[job.id] = str(job.lease_token)

    await asyncio.wait_for(asyncio.gather(*(claimer(f"w{i}") for i in range(8))), 120)
    assert set(claims) == set(ids)
    assert set(claims.values()) == {1}  # while its lease lives, nobody else got it
    assert len(set(tokens.values())) == 10_000
    depth = await queue.depth()
    assert (depth.ready, depth.claimed) == (0, 10_000)


async def test_concurrent_enqueues_of_one_key_make_one_job(db: Database) -> None:
    queue = WorkQueue(db)
    results = await asyncio.gather(*(queue.enqueue("k", {"n": n}, key="same") for n in range(20)))
    assert len(set(results)) == 1
    assert (await queue.depth()).ready == 1


# --- plans ---------------------------------------------------------------------------------------


@pytest.fixture
async def big_queue(conn: asyncpg.Connection) -> asyncpg.Connection:
    """100,000 active jobs, never analyzed (autovacuum off for the table): ready ones due and
    not yet due across queues, claimed ones with live and run-out leases."""
    await conn.execute("ALTER TABLE work_queue SET (autovacuum_enabled = false)")
    await conn.execute(
        """
        INSERT INTO work_queue (queue, kind, payload, priority, not_before, state, lease_token,
                                lease_expires_at, attempt, created_at)
        SELECT 'q' || (n % 5), 'k', 'null'::jsonb, n % 3,
               now() + CASE WHEN n % 4 = 0 THEN interval '1 hour' ELSE interval '-1 minute' END,
               CASE WHEN n % 10 = 0 THEN 'claimed' ELSE 'ready' END,
               CASE WHEN n % 10 = 0 THEN gen_random_uuid() END,
               CASE WHEN n % 10 = 0 THEN now() + (CASE WHEN n % 20 = 0 THEN -1 ELSE 1 END) * interval '1 minute' END,
               CASE WHEN n % 10 = 0 THEN 1 ELSE 0 END, now()
        FROM generate_series(1, 100000) AS n
        """
    )
    assert await conn.fetchval(
        "SELECT last_analyze IS NULL AND last_autoanalyze IS NULL FROM pg_stat_user_tables WHERE relname = 'work_queue'"
    )
    return conn


CLAIM_VALUES = {
    "worker_id": "w",
    "limit": 10,
    "lease": timedelta(seconds=30),
    "queue": "q1",
    "queues": ["q1"],
    "kinds": None,
    "definitions": None,
}

COMPLETING_VALUES = {
    **CLAIM_VALUES,
    "ids": list(range(10, 110, 10)),  # claimed rows of the big queue
    "tokens": [uuid.uuid4() for _ in range(10)],
}

CLAIMS = {
    "claim": sql.CLAIM,  # any size, any queues: the size and the queues are parameters
    "claim-10-of-one-queue": sql.claim_query(10, 1),  # written for its size: a generic plan is kept
}
CLAIMS_COMPLETING = {
    "claim-completing": sql.CLAIM_COMPLETING,
    "claim-10-of-one-queue-completing": sql.claim_query(10, 1, completing=True),
}
GENERIC = pytest.mark.parametrize("generic", [True, False], ids=["generic", "custom"])


def _searches(plan: dict[str, Any]) -> list[str]:
    """The indexes the locking halves (the search for jobs) read."""
    found = [scans(node) for node in nodes(plan) if node["Node Type"] == "LockRows"]
    return sorted(str(index) for each in found for _, _, index in each)


@GENERIC
@pytest.mark.parametrize("statement", CLAIMS.values(), ids=CLAIMS.keys())
async def test_the_claim_uses_its_two_partial_indexes_on_a_large_unanalyzed_table(
    big_queue: asyncpg.Connection, generic: bool, statement: Query
) -> None:
    plan = await plan_of(big_queue, statement, CLAIM_VALUES, generic=generic)
    assert sequential_scans_of(plan, ["work_queue"]) == [], scans(plan)
    assert _searches(plan) == ["work_queue_expired_idx", "work_queue_ready_idx"], scans(plan)
    indexes = {index for _, relation, index in scans(plan) if relation == "work_queue"}
    assert "work_queue_pkey" in indexes, scans(plan)  # the picked rows, changed by id


@GENERIC
@pytest.mark.parametrize("statement", CLAIMS_COMPLETING.values(), ids=CLAIMS_COMPLETING.keys())
async def test_the_claim_that_completes_keeps_the_claims_indexes_and_finishes_by_primary_key(
    big_queue: asyncpg.Connection, generic: bool, statement: Query
) -> None:
    plan = await plan_of(big_queue, statement, COMPLETING_VALUES, generic=generic)
    found = scans(plan)
    assert sequential_scans_of(plan, ["work_queue", "work_queue_history"]) == [], found
    assert _searches(plan) == ["work_queue_expired_idx", "work_queue_ready_idx"], found
    indexes = {index for _, relation, index in found if relation == "work_queue"}
    assert "work_queue_pkey" in indexes, found  # the finish: each job by its id
    history = {index for _, relation, index in found if relation == "work_queue_history" and index}
    assert history == {"work_queue_history_pkey"}, found  # (empty, never analyzed)


@GENERIC
async def test_complete_many_reads_an_empty_history_by_primary_key(
    big_queue: asyncpg.Connection, generic: bool
) -> None:
    """The history is empty here and was never analyzed: a plan made now is the one a pooled
    connection keeps while the history grows to millions of rows."""
    plan = await plan_of(big_queue, sql.FINISH_MANY, COMPLETING_VALUES, generic=generic)
    found = scans(plan)
    assert sequential_scans_of(plan, ["work_queue", "work_queue_history"]) == [], found
    assert {index for _, relation, index in found if relation == "work_queue_history" and index} == {
        "work_queue_history_pkey"
    }, found


@pytest.mark.parametrize("statement", [*CLAIMS.values(), *CLAIMS_COMPLETING.values()])
async def test_the_claim_plan_made_on_an_empty_table_still_finds_jobs_through_the_indexes(
    conn: asyncpg.Connection, statement: Query
) -> None:
    """The plan a pooled connection caches while the table is empty is the one it keeps: the
    search for jobs (the locking halves) stays on the partial indexes."""
    await conn.execute("ALTER TABLE work_queue SET (autovacuum_enabled = false)")
    plan = await plan_of(conn, statement, COMPLETING_VALUES, generic=True)
    assert _searches(plan) == ["work_queue_expired_idx", "work_queue_ready_idx"], scans(plan)


@pytest.mark.parametrize("completing", [False, True], ids=["claim", "claim-completing"])
async def test_a_claim_of_one_queue_keeps_a_generic_plan_instead_of_planning_every_call(
    big_queue: asyncpg.Connection, completing: bool
) -> None:
    """Planning the claim at every call cost about half of its server time. Written for its size
    and one queue, the statement gets PostgreSQL's generic plan from its sixth run on (the plan the
    tests above hold to the indexes); with the size and the queues as parameters, the generic plan
    is estimated far costlier and a claim was planned again at every call."""
    statement = sql.claim_query(10, 1, completing=completing)
    prepared = await big_queue.prepare(statement.text)
    held: list[Any] = []
    for _ in range(8):
        values = {**CLAIM_VALUES, "ids": [r[1] for r in held], "tokens": [r[10] for r in held]}
        rows = await prepared.fetch(*statement.args(values))
        assert len([r for r in rows if not completing or r[0]]) == 10
        held = [r for r in rows if r[0]] if completing else []
    generic, custom = await big_queue.fetchrow(
        "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE name = $1", prepared.get_name()
    )
    assert (generic, custom) == (3, 5)


async def test_claims_on_the_large_table_find_the_right_jobs(
    big_queue: asyncpg.Connection, db: Database
) -> None:
    queue = WorkQueue(db)
    jobs = await queue.claim("w", queues=["q1"], limit=50)
    assert len(jobs) == 50
    due = await big_queue.fetch(
        "SELECT id FROM work_queue WHERE queue = 'q1' AND lease_expires_at < now() AND state = 'claimed'"
    )
    assert {row[0] for row in due} <= {j.id for j in jobs}  # run-out leases come back first
