"""The baselines: raw asyncpg doing the same SQL work as the library, written as a user would.

A raw connection keeps asyncpg's defaults (``jsonb`` as text, ``json.dumps`` on the way in);
versions are counted by the client (no version check), and the raw pool is ``asyncpg.create_pool``
with its default reset on release.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from chem_persistence_async._bench.workload import ScriptAppend, ScriptOp
from chem_persistence_async.backends.postgres.sql import events as sql

EVENT_COLUMNS = ("event_id", "flow_id", "flow_version", "event_type", "payload")

INSERT_EVENT = """
INSERT INTO event_log (event_id, flow_id, flow_version, event_type, payload)
VALUES ($1, $2, $3, $4, $5)
"""

INSERT_EVENT_RETURNING = INSERT_EVENT + " RETURNING seq"

INSERT_EVENT_WITH_ARTIFACTS = """
WITH ev AS (
    INSERT INTO event_log (event_id, flow_id, flow_version, event_type, payload)
    VALUES ($1, $2, $3, $4, $5)
    RETURNING seq
)
INSERT INTO workflow_step_artifacts (artifact_hash, kind, payload, metadata, produced_in_seq)
SELECT a.h, a.k, a.p, NULL, ev.seq
FROM ev, unnest($6::text[], $7::text[], $8::jsonb[]) AS a(h, k, p)
ON CONFLICT (artifact_hash) DO NOTHING
"""

INSERT_ARTIFACTS = """
INSERT INTO workflow_step_artifacts (artifact_hash, kind, payload, metadata, produced_in_seq)
SELECT a.h, a.k, a.p, NULL, $4
FROM unnest($1::text[], $2::text[], $3::jsonb[]) AS a(h, k, p)
ON CONFLICT (artifact_hash) DO NOTHING
"""

INSERT_FAILED_WITH_ERROR = """
WITH ev AS (
    INSERT INTO event_log (event_id, flow_id, flow_version, event_type, payload)
    VALUES ($1, $2, $3, $4, $5)
    RETURNING seq, ts
)
INSERT INTO step_execution_errors (
    flow_id, step_id, attempt_number, error_class, error_message, details,
    retry_count, max_retries, event_seq, ts
)
SELECT $2, $6, $7, $8, $9, $10::jsonb, $11, $12, ev.seq, ev.ts FROM ev
"""
"""A ``StepFailed`` and its ``step_execution_errors`` row, as the library stores them, in one statement."""

LIST_EVENTS = sql.LIST_EVENTS.text
LIST_EVENTS_AFTER = sql.LIST_EVENTS_AFTER.text
LIST_ERRORS = sql.LIST_ERRORS.text
LOAD_FLOW = sql.LOAD_FLOW.text
"""The events and the error rows (as one JSON array in a last row) in one statement: ``load``'s."""


def optional_loads(module: str) -> Callable[[str | bytes], Any] | None:
    """``module.loads`` if ``module`` (orjson) is installed, else ``None``."""
    try:
        loaded = importlib.import_module(module)
    except ImportError:
        return None
    loads: Callable[[str | bytes], Any] = loaded.loads
    return loads


# --- writes -------------------------------------------------------------------------------------


async def insert_autocommit(conn: asyncpg.Connection, flow_id: UUID, events: Sequence[dict[str, Any]]) -> int:
    for version, event in enumerate(events, 1):
        await conn.execute(INSERT_EVENT, uuid4(), flow_id, version, event["event_type"], json.dumps(event))
    return len(events)


async def insert_in_transaction(
    conn: asyncpg.Connection, flow_id: UUID, events: Sequence[dict[str, Any]]
) -> int:
    for version, event in enumerate(events, 1):
        async with conn.transaction():
            await conn.execute(
                INSERT_EVENT, uuid4(), flow_id, version, event["event_type"], json.dumps(event)
            )
    return len(events)


async def insert_failed_autocommit(
    conn: asyncpg.Connection, flow_id: UUID, events: Sequence[dict[str, Any]]
) -> int:
    """One ``StepFailed`` per statement, with its error row (the work the library's append does)."""
    for version, event in enumerate(events, 1):
        error = event["error"]
        await conn.execute(
            INSERT_FAILED_WITH_ERROR,
            uuid4(),
            flow_id,
            version,
            event["event_type"],
            json.dumps(event),
            event["step_id"],
            event["attempt"],
            error["error_class"],
            error["message"],
            json.dumps(error["details"]),
            event["retry_count"],
            event["max_retries"],
        )
    return len(events)


ArtifactRow = tuple[str, str, Any]
"""(hash, kind, payload) of an artifact."""


async def insert_with_artifacts_cte(
    conn: asyncpg.Connection, flow_id: UUID, items: Sequence[tuple[dict[str, Any], Sequence[ArtifactRow]]]
) -> int:
    for version, (event, artifacts) in enumerate(items, 1):
        await _insert_event_with_artifacts(conn, flow_id, version, event, artifacts)
    return len(items)


async def _insert_event_with_artifacts(
    conn: asyncpg.Connection,
    flow_id: UUID,
    version: int,
    event: dict[str, Any],
    artifacts: Sequence[ArtifactRow],
) -> None:
    await conn.execute(
        INSERT_EVENT_WITH_ARTIFACTS,
        uuid4(),
        flow_id,
        version,
        event["event_type"],
        json.dumps(event),
        [a[0] for a in artifacts],
        [a[1] for a in artifacts],
        [json.dumps(a[2]) for a in artifacts],
    )


async def insert_with_artifacts_two_statements(
    conn: asyncpg.Connection, flow_id: UUID, items: Sequence[tuple[dict[str, Any], Sequence[ArtifactRow]]]
) -> int:
    for version, (event, artifacts) in enumerate(items, 1):
        async with conn.transaction():
            seq = await conn.fetchval(
                INSERT_EVENT_RETURNING, uuid4(), flow_id, version, event["event_type"], json.dumps(event)
            )
            await conn.execute(
                INSERT_ARTIFACTS,
                [a[0] for a in artifacts],
                [a[1] for a in artifacts],
                [json.dumps(a[2]) for a in artifacts],
                seq,
            )
    return len(items)


def _records(flow_id: UUID, first_version: int, events: Sequence[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (uuid4(), flow_id, first_version + i, event["event_type"], json.dumps(event))
        for i, event in enumerate(events)
    ]


async def copy_batches(
    conn: asyncpg.Connection, flow_id: UUID, batches: Sequence[Sequence[dict[str, Any]]]
) -> int:
    version = 1
    for batch in batches:
        await conn.copy_records_to_table(
            "event_log", records=_records(flow_id, version, batch), columns=EVENT_COLUMNS
        )
        version += len(batch)
    return version - 1


async def executemany_batches(
    conn: asyncpg.Connection, flow_id: UUID, batches: Sequence[Sequence[dict[str, Any]]]
) -> int:
    version = 1
    for batch in batches:
        async with conn.transaction():
            await conn.executemany(INSERT_EVENT, _records(flow_id, version, batch))
        version += len(batch)
    return version - 1


async def pool_insert_autocommit(pool: asyncpg.Pool, flow_id: UUID, events: Sequence[dict[str, Any]]) -> int:
    """One task of the concurrent baseline: acquire, INSERT (autocommit), release, per event."""
    for version, event in enumerate(events, 1):
        async with pool.acquire() as conn:
            await conn.execute(
                INSERT_EVENT, uuid4(), flow_id, version, event["event_type"], json.dumps(event)
            )
    return len(events)


# --- reads --------------------------------------------------------------------------------------


async def fetch_only(conn: asyncpg.Connection, flow_id: UUID) -> int:
    return len(await conn.fetch(LIST_EVENTS, flow_id))


async def fetch_decode(conn: asyncpg.Connection, flow_id: UUID, loads: Callable[[str], Any]) -> int:
    rows = await conn.fetch(LIST_EVENTS, flow_id)
    payloads = [loads(row[4]) for row in rows]
    return len(payloads)


async def fetch_flow_decode(conn: asyncpg.Connection, flow_id: UUID, loads: Callable[[str], Any]) -> int:
    """``FlowEngine.load``'s statement (events, then the error rows), every payload decoded; the
    events counted."""
    rows = await conn.fetch(LOAD_FLOW, flow_id)
    payloads = [loads(row[4]) for row in rows]
    return len(payloads) - 1


async def fetch_pages_decode(
    conn: asyncpg.Connection, flow_id: UUID, loads: Callable[[str], Any], batch_size: int
) -> int:
    count, after = 0, 0
    while True:
        rows = await conn.fetch(LIST_EVENTS_AFTER, flow_id, after, batch_size)
        count += len([loads(row[4]) for row in rows])
        if len(rows) < batch_size:
            return count
        after = rows[-1][2]  # the last flow_version: pages are keyed on (flow_id, flow_version)


# --- the demo flow ------------------------------------------------------------------------------


async def run_demo_script(conn: asyncpg.Connection, script: Sequence[ScriptOp], *, reads: bool) -> None:
    """Write (and, with ``reads``, read back as the engine does) one demo flow with raw asyncpg."""
    flow_id = uuid4()
    version = 0
    for op in script:
        if isinstance(op, ScriptAppend):
            version += 1
            event = op.event
            if op.artifacts:
                await _insert_event_with_artifacts(conn, flow_id, version, event, op.artifacts)
            else:
                await conn.execute(
                    INSERT_EVENT, uuid4(), flow_id, version, event["event_type"], json.dumps(event)
                )
        elif reads:
            rows = await conn.fetch(LIST_EVENTS, flow_id)
            [json.loads(row[4]) for row in rows]
            await conn.fetch(LIST_ERRORS, flow_id, None)
