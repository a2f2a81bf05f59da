"""What only PostgreSQL can show: constraints, append-only tables, atomicity, and a stress run."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import asyncpg
import pytest

from chem_persistence_async import Database, DatabaseError, ErrorClass, PgEventStore
from tests.factories import artifact, failed, finished, started

_INSERT = (
    "INSERT INTO event_log (event_id, flow_id, flow_version, event_type, payload) VALUES ($1, $2, $3, $4, $5)"
)


def _payload(event_type: str) -> bytes:
    return json.dumps({"event_type": event_type}).encode()


async def _raw_insert(conn: asyncpg.Connection, event_type: str, payload_type: str | None = None) -> None:
    await conn.execute(
        _INSERT,
        uuid.uuid4(),
        uuid.uuid4(),
        1,
        event_type,
        json.dumps({"event_type": payload_type or event_type}),
    )


@pytest.mark.parametrize("event_type", ["StepStarted", "STEPSTARTED", "stepexploded", ""])
async def test_event_type_check_rejects_unknown_or_upper_case(
    conn: asyncpg.Connection, event_type: str
) -> None:
    with pytest.raises(asyncpg.CheckViolationError, match="event_log_event_type_check"):
        await _raw_insert(conn, event_type)


async def test_payload_must_agree_with_event_type(conn: asyncpg.Connection) -> None:
    with pytest.raises(asyncpg.CheckViolationError, match="event_log_payload_check"):
        await _raw_insert(conn, "stepstarted", payload_type="stepfinished")


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE event_log SET event_type = 'stepstarted'",
        "DELETE FROM event_log",
        "TRUNCATE event_log CASCADE",
        "UPDATE workflow_step_artifacts SET kind = 'x'",
        "DELETE FROM workflow_step_artifacts",
        "UPDATE step_execution_errors SET error_message = 'x'",
        "DELETE FROM step_execution_errors",
        "TRUNCATE step_execution_errors",
    ],
)
async def test_tables_are_append_only(db: Database, conn: asyncpg.Connection, statement: str) -> None:
    store = PgEventStore(db)
    a = artifact(1)
    flow = uuid.uuid4()
    await store.append_kind(flow, finished(outputs=(a.hash,)), artifacts=[a])
    await store.append_kind(flow, failed())
    with pytest.raises(asyncpg.RestrictViolationError, match="append-only"):
        await conn.execute(statement)
    assert await conn.fetchval("SELECT count(*) FROM event_log") == 2
    assert await conn.fetchval("SELECT count(*) FROM workflow_step_artifacts") == 1
    assert await conn.fetchval("SELECT count(*) FROM step_execution_errors") == 1


@pytest.mark.parametrize(
    ("column", "value", "constraint"),
    [
        ("error_class", "catastrophic", "step_execution_errors_error_class_check"),
        ("attempt_number", 0, "step_execution_errors_attempt_number_check"),
    ],
)
async def test_error_table_checks(
    conn: asyncpg.Connection, column: str, value: object, constraint: str
) -> None:
    row = {"flow_id": uuid.uuid4(), "step_id": "s", "attempt_number": 1, "error_class": "runtime"}
    row[column] = value
    with pytest.raises(asyncpg.CheckViolationError, match=constraint):
        await conn.execute(
            "INSERT INTO step_execution_errors (flow_id, step_id, attempt_number, error_class) VALUES ($1,$2,$3,$4)",
            *row.values(),
        )


async def test_artifact_hash_check(db: Database, conn: asyncpg.Connection) -> None:
    event = await PgEventStore(db).append_kind(uuid.uuid4(), started())
    with pytest.raises(asyncpg.CheckViolationError, match="workflow_step_artifacts_hash_check"):
        await conn.execute(
            "INSERT INTO workflow_step_artifacts (artifact_hash, kind, payload, produced_in_seq) VALUES ($1,$2,$3,$4)",
            "NOT-A-HASH",
            "k",
            "{}",
            event.seq,
        )


async def _fail_inserts_into(conn: asyncpg.Connection, table: str) -> None:
    await conn.execute(
        """
        CREATE FUNCTION test_fail_insert() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'injected failure' USING ERRCODE = 'P0001'; END $$;
        """
    )
    await conn.execute(
        f"CREATE TRIGGER test_fail BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION test_fail_insert()"
    )


async def test_a_failing_artifact_insert_leaves_neither_event_nor_artifacts(
    db: Database, conn: asyncpg.Connection
) -> None:
    """The event row is inserted first; a failure after it must take it back with the rest."""
    await _fail_inserts_into(conn, "workflow_step_artifacts")
    store = PgEventStore(db)
    flow = uuid.uuid4()
    a, b = artifact(1), artifact(2)
    with pytest.raises(DatabaseError, match="injected failure") as refused:
        await store.append_kind(flow, finished(outputs=(a.hash, b.hash)), artifacts=[a, b])
    assert refused.value.sqlstate == "P0001"
    assert isinstance(refused.value.__cause__, asyncpg.RaiseError)
    assert await conn.fetchval("SELECT count(*) FROM event_log") == 0
    assert await conn.fetchval("SELECT count(*) FROM workflow_step_artifacts") == 0
    assert await store.list(flow) == []


async def test_a_failing_error_row_insert_leaves_no_step_failed(
    db: Database, conn: asyncpg.Connection
) -> None:
    await _fail_inserts_into(conn, "step_execution_errors")
    store = PgEventStore(db)
    flow = uuid.uuid4()
    with pytest.raises(DatabaseError, match="injected failure"):
        await store.append_many(flow, [started(), failed()])
    assert await conn.fetchval("SELECT count(*) FROM event_log") == 0


async def test_error_rows_follow_their_events(db: Database, conn: asyncpg.Connection) -> None:
    store = PgEventStore(db)
    flow = uuid.uuid4()
    events = await store.append_many(
        flow,
        [
            started(),
            failed(attempt=1),
            started(attempt=2),
            failed(attempt=2, error_class=ErrorClass.PERMANENT),
        ],
    )
    rows = await conn.fetch(
        "SELECT e.event_seq, l.event_type, e.attempt_number, e.ts = l.ts FROM step_execution_errors e "
        "JOIN event_log l ON l.seq = e.event_seq ORDER BY e.id"
    )
    assert [tuple(r) for r in rows] == [
        (events[1].seq, "stepfailed", 1, True),
        (events[3].seq, "stepfailed", 2, True),
    ]


@pytest.mark.slow  # 12-17 s each on this machine: a soak run (.ci/run runs the slow tests too)
@pytest.mark.parametrize("with_artifacts", [False, True], ids=["events", "events+artifacts"])
async def test_stress_10000_events(db_url: str, with_artifacts: bool) -> None:
    """10,000 appends from 16 concurrent tasks over 50 flows: every one stored once, versions gap-free."""
    total, tasks, flows = 10_000, 16, 50
    flow_ids = [uuid.uuid4() for _ in range(flows)]
    async with Database.connect(db_url, min_connections=tasks, max_connections=tasks) as db:
        store = PgEventStore(db)
        queue: asyncio.Queue[int] = asyncio.Queue()
        for n in range(total):
            queue.put_nowait(n)
        locks = {f: asyncio.Lock() for f in flow_ids}

        async def worker() -> None:
            while not queue.empty():
                n = queue.get_nowait()
                flow = flow_ids[n % flows]
                if with_artifacts:
                    a, b = artifact(n), artifact(n, kind="copy")
                    kind, arts = finished(outputs=(a.hash, b.hash)), [a, b]
                else:
                    kind, arts = started(attempt=n + 1), []
                async with locks[flow]:  # one writer per flow, as the engine has
                    await store.append_kind(flow, kind, artifacts=arts)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(tasks)))
        elapsed = time.perf_counter() - began

        async with db.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM event_log") == total
            assert await conn.fetchval("SELECT count(DISTINCT seq) FROM event_log") == total
            bad = await conn.fetchval(
                "SELECT count(*) FROM (SELECT flow_id, max(flow_version) m, count(*) c FROM event_log "
                "GROUP BY flow_id) t WHERE m <> c"
            )
            assert bad == 0
            expected_artifacts = 2 * total if with_artifacts else 0
            assert await conn.fetchval("SELECT count(*) FROM workflow_step_artifacts") == expected_artifacts
        for flow in flow_ids[:3]:
            assert [e.flow_version for e in await store.list(flow)] == list(range(1, total // flows + 1))
        raw_elapsed = await _raw_inserts(db, total, tasks, with_artifacts)
    print(
        f"\nstress {'with' if with_artifacts else 'without'} artifacts, {tasks} tasks: "
        f"store {total / elapsed:,.0f} events/s; raw asyncpg same INSERTs {total / raw_elapsed:,.0f} events/s"
    )


async def _raw_inserts(db: Database, total: int, tasks: int, with_artifacts: bool) -> float:
    """The same rows through plain asyncpg on the same pool: the figure the store is compared with."""
    raw_event = (
        "INSERT INTO event_log (event_id, flow_id, flow_version, event_type, payload) "
        "VALUES ($1, $2, $3, 'stepstarted', $4) RETURNING seq"
    )
    raw_with_artifacts = (
        "WITH e AS (INSERT INTO event_log (event_id, flow_id, flow_version, event_type, payload) "
        "VALUES ($1, $2, $3, 'stepfinished', $4) RETURNING seq) "
        "INSERT INTO workflow_step_artifacts (artifact_hash, kind, payload, produced_in_seq) "
        "SELECT h, 'k', $6, e.seq FROM e, unnest($5::text[]) AS h"
    )
    counter = iter(range(total))
    flows = [uuid.uuid4() for _ in range(tasks)]

    async def worker(flow: uuid.UUID) -> None:
        for version, n in enumerate(counter, start=1):
            async with db.acquire() as conn:
                if with_artifacts:
                    hashes = [f"{n:032x}{0:032x}", f"{n:032x}{1:032x}"]
                    await conn.execute(
                        raw_with_artifacts,
                        uuid.uuid4(),
                        flow,
                        version,
                        _payload("stepfinished"),
                        hashes,
                        b'{"n": 1}',
                    )
                else:
                    await conn.fetchval(raw_event, uuid.uuid4(), flow, version, _payload("stepstarted"))

    began = time.perf_counter()
    await asyncio.gather(*(worker(flow) for flow in flows))
    return time.perf_counter() - began
