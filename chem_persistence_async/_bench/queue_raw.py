"""The queue's baselines: raw asyncpg writing the same rows and running the same claim.

The raw side inserts what the library's ``enqueue`` inserts (queue, kind, payload as ``json.dumps``
text, priority, max_attempts; the table's defaults do the rest) and gets the ids back; it claims
with the library's own claim statement (``sql.claim_query``: the text ``WorkQueue.claim`` sends for
one queue and that batch size, with the same arguments) and finishes a
batch with one ``DELETE`` (the primary baseline) or with one statement that moves the batch to the
history as the library's ``complete`` does (the second one).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import asyncpg

from chem_persistence_async.backends.postgres.sql import queue as sql

INSERT_JOB = """
INSERT INTO work_queue (queue, kind, payload, priority, max_attempts)
VALUES ($1, $2, $3::jsonb, $4, $5)
RETURNING id
"""

INSERT_JOBS = """
INSERT INTO work_queue (queue, kind, payload, priority, max_attempts)
SELECT $1, $2, p, 0, 3 FROM unnest($3::jsonb[]) AS p
RETURNING id
"""

FILL = """
INSERT INTO work_queue (queue, kind, payload)
SELECT $1, 'bench', jsonb_build_object('n', g) FROM generate_series(1, $2::int) AS g
"""
"""Untimed: the jobs a claim benchmark drains, written by the server."""

DELETE_JOBS = "DELETE FROM work_queue WHERE id = ANY($1::bigint[])"

MOVE_JOBS = """
WITH gone AS (
    DELETE FROM work_queue WHERE id = ANY($1::bigint[]) RETURNING *
)
INSERT INTO work_queue_history (id, queue, kind, key, payload, priority, attempt, max_attempts, flow_id,
    definition, state, lease_token, worker_id, last_error, created_at)
SELECT id, queue, kind, key, payload, priority, attempt, max_attempts, flow_id, definition, 'completed',
    lease_token, worker_id, last_error, created_at
FROM gone
"""

LEASE = timedelta(seconds=30)


def claim_text(limit: int, *, completing: bool = False) -> str:
    """The statement ``WorkQueue.claim(limit=limit, queues=(one,))`` sends (with ``completing``:
    ``claim(..., complete=jobs)``)."""
    return sql.claim_query(limit, 1, completing=completing).text


def claim_args(queue: str, limit: int, rows: Sequence[Any] | None = None) -> list[Any]:
    """The library's claim statement's arguments, as ``WorkQueue.claim`` binds them; with ``rows``
    (claimed rows, as the claim returned them), those of the claim that completes them."""
    values: dict[str, Any] = {
        "worker_id": "raw",
        "limit": limit,
        "lease": LEASE,
        "queue": queue,
        "queues": [queue],
        "kinds": None,
        "definitions": None,
    }
    if rows is None:
        return list(sql.claim_query(limit, 1).args(values))
    values["ids"] = [row[0] for row in rows]
    values["tokens"] = [row[9] for row in rows]
    return list(sql.claim_query(limit, 1, completing=True).args(values))


def payloads(count: int, start: int = 0) -> list[dict[str, Any]]:
    """What every enqueue benchmark sends: a small JSON object per job."""
    return [{"n": n, "task": "bench", "tags": ["a", "b"]} for n in range(start, start + count)]


async def insert_each(conn: asyncpg.Connection, queue: str, jobs: Sequence[dict[str, Any]]) -> int:
    """One autocommit ``INSERT … RETURNING id`` per job, one after the other."""
    for payload in jobs:
        await conn.fetchval(INSERT_JOB, queue, "bench", json.dumps(payload), 0, 3)
    return len(jobs)


async def insert_batches(
    conn: asyncpg.Connection, queue: str, batches: Sequence[Sequence[dict[str, Any]]]
) -> int:
    """One multi-row ``INSERT … SELECT unnest … RETURNING id`` per batch."""
    total = 0
    for batch in batches:
        ids = await conn.fetch(INSERT_JOBS, queue, "bench", [json.dumps(p) for p in batch])
        total += len(ids)
    return total


async def fill(conn: asyncpg.Connection, queue: str, count: int) -> None:
    await conn.execute(FILL, queue, count)


async def claim_and_finish(conn: asyncpg.Connection, queue: str, batch: int, finish: str) -> int:
    """Drain ``queue``: the library's claim of ``batch`` jobs, then ``finish`` (one statement) for
    their ids, until a claim finds nothing."""
    args, text = claim_args(queue, batch), claim_text(batch)
    done = 0
    while True:
        rows = await conn.fetch(text, *args)
        if not rows:
            return done
        await conn.execute(finish, [row[0] for row in rows])
        done += len(rows)


async def produce_consume(
    url: str, queue: str, total: int, *, consumers: int = 5, batch: int = 10, bundled: bool = False
) -> tuple[int, float]:
    """PgQueuer's benchmark shape in raw asyncpg: one enqueuer inserting ``batch`` jobs per
    statement, ``consumers`` tasks each claiming ``batch`` with the library's claim and deleting
    them in one statement; each on a connection of its own. An in-process event wakes idle
    consumers (as the library's local wake does). With ``bundled``, each consumer instead sends
    the library's claim that completes (its previous batch finished, with its history rows, in the
    claim of the next). Returns (jobs done, seconds)."""
    loop = asyncio.get_running_loop()
    conns = [await asyncpg.connect(url) for _ in range(consumers + 1)]
    try:
        jobs = payloads(total)
        encoded = [json.dumps(p) for p in jobs]
        more = asyncio.Event()
        done = 0
        finished = asyncio.Event()
        args, text, completing = (
            claim_args(queue, batch),
            claim_text(batch),
            claim_text(batch, completing=True),
        )

        async def enqueuer(conn: asyncpg.Connection) -> None:
            for low in range(0, total, batch):
                await conn.fetch(INSERT_JOBS, queue, "bench", encoded[low : low + batch])
                more.set()

        async def bundled_consumer(conn: asyncpg.Connection) -> None:
            nonlocal done
            held: list[Any] = []
            while not finished.is_set():
                more.clear()
                rows = await conn.fetch(completing, *claim_args(queue, batch, held))
                done += len(held)
                held = [row[1:] for row in rows if row[0]]
                if done >= total:
                    finished.set()
                if not held:
                    await wait_either(more, finished, 0.05)

        async def consumer(conn: asyncpg.Connection) -> None:
            nonlocal done
            while not finished.is_set():
                more.clear()  # before looking: a batch inserted after this wakes the wait below
                rows = await conn.fetch(text, *args)
                if not rows:
                    await wait_either(more, finished, 0.05)
                    continue
                await conn.execute(DELETE_JOBS, [row[0] for row in rows])
                done += len(rows)
                if done >= total:
                    finished.set()

        start = loop.time()
        tasks = [loop.create_task((bundled_consumer if bundled else consumer)(c)) for c in conns[1:]]
        await enqueuer(conns[0])
        await finished.wait()
        seconds = loop.time() - start
        await asyncio.gather(*tasks)
        return done, seconds
    finally:
        for conn in conns:
            await conn.close()


async def wait_either(event: asyncio.Event, finished: asyncio.Event, timeout: float) -> None:
    waiters = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(finished.wait())]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
