"""Every hot event-store statement stays an index lookup whatever the statistics say (issue 10:
a plan made on a never-analyzed ``event_log`` and kept by a pooled connection must not scan it)."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest

from chem_persistence_async.backends.postgres.sql import events as sql
from chem_persistence_async.backends.postgres.sql.query import Query, query
from tests.support.plans import nodes, plan_of, scans, sequential_scans_of

HOT = [
    "event_log",
    "workflow_step_artifacts",
    "step_execution_errors",
    "workflow_runs",
    "workflow_stages",
    "work_queue",
    "work_queue_history",
]
FLOW = uuid.uuid4()
IDS = [uuid.uuid4(), uuid.uuid4()]
PAYLOADS = (
    b'[{"event_type":"stepstarted","step_index":0,"step_id":"a","attempt":1,"lease_until":null},'
    b'{"event_type":"stepstarted","step_index":0,"step_id":"a","attempt":2,"lease_until":null}]'
)
ONE = b'{"event_type":"stepstarted","step_index":0,"step_id":"a","attempt":1,"lease_until":null}'
ARTIFACTS = b'[{"o":1,"h":"' + b"a" * 64 + b'","k":"k","p":{},"m":null}]'
RECORDS = (
    b'[{"i":1,"w":"f@h","n":"f","y":"f","s":"RUNNING","in":{},"o":null,"c":{},"v":4,"p":3,'
    b'"cn":false,"sn":true,"dn":false,"g":[{"id":"' + str(uuid.uuid4()).encode() + b'","k":"a","n":"A",'
    b'"x":0,"s":"RUNNING","e":null,"np":null,"sn":true,"dn":false,"c":{},"o":null,"m":{},"t":true}]}]'
)
"""One recorded flow (``appended_records_ctes``'s ``:records``, the group's)."""
FLOW_RECORDS = {
    "rec_w": "f@h",
    "rec_n": "f",
    "rec_y": "f",
    "rec_s": "RUNNING",
    "rec_in": b"{}",
    "rec_o": None,
    "rec_c": b"{}",
    "rec_v": 4,
    "rec_p": 3,
    "rec_cn": False,
    "rec_sn": True,
    "rec_dn": False,
    "rec_g": b'[{"id":"' + str(uuid.uuid4()).encode() + b'","k":"a","n":"A","x":0,"s":"RUNNING","e":null,'
    b'"np":null,"sn":true,"dn":false,"c":{},"o":null,"m":{},"t":false}]',
}
"""The same flow's records as a lean or judged append carries them (``appended_flow_records_ctes``);
its stage is not touched, so the plan must also look up the stored run's version."""
STORED_RECORDS = {
    "rec_s": "RUNNING",
    "rec_o": None,
    "rec_v": 4,
    "rec_sn": False,
    "rec_dn": True,
    "rec_g": b'[{"k":"a","s":"COMPLETED","e":null,"np":null,"sn":false,"dn":true,"o":null,"m":{}}]',
}
"""The same flow's records as an append of a writer that knows them stored carries them
(``stored_flow_records_ctes``): updates of the run and stage rows by their keys."""
JOBS = (
    b'[{"i":1,"k":"complete","id":7,"t":"' + str(uuid.uuid4()).encode() + b'","u":null},'
    b'{"i":2,"k":"enqueue","q":"default","n":"flow","y":"k","p":null,"r":0,"b":null,"m":null,'
    b'"f":null,"d":null}]'
)
"""A claimed job completed and a flow job enqueued (``queue.JOB_WRITES_BEFORE``'s ``:jobs``)."""
GROUP = {
    "flow_ids": [FLOW, uuid.uuid4()],
    "expected": [None, None],
    "items": [1, 2],
    "ordinals": [1, 1],
    "event_ids": IDS,
    "payloads": PAYLOADS,
    "artifacts": b"[]",
}

CASES: list[tuple[str, Query, dict[str, Any]]] = [
    (
        "lean one",
        sql.lean_append(many=False, artifacts=False, errors=False, in_tx=False),
        {"flow_id": FLOW, "base": 3, "event_id": IDS[0], "payload": ONE},
    ),
    (
        "lean many with artifacts and errors, in a unit of work",
        sql.lean_append(many=True, artifacts=True, errors=True, in_tx=True),
        {"flow_id": FLOW, "base": 3, "event_ids": IDS, "payloads": PAYLOADS, "artifacts": ARTIFACTS},
    ),
    (
        "judge",
        sql.judge_append(artifacts=True, errors=True, in_tx=False),
        {"flow_id": FLOW, "expected": 3, "event_ids": IDS, "payloads": PAYLOADS, "artifacts": ARTIFACTS},
    ),
    (
        "judge in a unit of work",
        sql.judge_append(artifacts=False, errors=False, in_tx=True),
        {"flow_id": FLOW, "expected": None, "event_ids": IDS, "payloads": PAYLOADS},
    ),
    ("group", sql.GROUP_APPEND, GROUP),
    (
        "lean one with records",
        sql.lean_append(many=False, artifacts=False, errors=False, in_tx=False, records=True),
        {"flow_id": FLOW, "base": 3, "event_id": IDS[0], "payload": ONE} | FLOW_RECORDS,
    ),
    (
        "judge with records, in a unit of work",
        sql.judge_append(artifacts=False, errors=False, in_tx=True, records=True),
        {"flow_id": FLOW, "expected": 3, "event_ids": IDS, "payloads": PAYLOADS} | FLOW_RECORDS,
    ),
    (
        "lean many with stored records",
        sql.lean_append(many=True, artifacts=False, errors=True, in_tx=False, records=True, stored=True),
        {"flow_id": FLOW, "base": 3, "event_ids": IDS, "payloads": PAYLOADS} | STORED_RECORDS,
    ),
    (
        "lean one with stored records and a job",
        sql.lean_append(
            many=False, artifacts=False, errors=False, in_tx=False, records=True, stored=True, jobs=True
        ),
        {"flow_id": FLOW, "base": 3, "event_id": IDS[0], "payload": ONE, "jobs": JOBS} | STORED_RECORDS,
    ),
    ("group with records", sql.group_append(records=True), GROUP | {"records": RECORDS}),
    (
        "lean many with records and a job",
        sql.lean_append(many=True, artifacts=False, errors=True, in_tx=False, records=True, jobs=True),
        {
            "flow_id": FLOW,
            "base": 3,
            "event_ids": IDS,
            "payloads": PAYLOADS,
            "jobs": JOBS,
        }
        | FLOW_RECORDS,
    ),
    (
        "group with records and jobs",
        sql.group_append(records=True, jobs=True),
        GROUP | {"records": RECORDS, "jobs": JOBS},
    ),
    ("read flows", sql.LOAD_FLOWS, {"flow_ids": [FLOW, uuid.uuid4()]}),
    ("missing artifacts", sql.MISSING_ARTIFACTS, {"hashes": ["a" * 64, "b" * 64]}),
    ("get artifacts", sql.GET_ARTIFACTS, {"hashes": ["a" * 64, "b" * 64]}),
    ("flow version", sql.FLOW_VERSION, {"flow_id": FLOW}),
    ("list", sql.LIST_EVENTS, {"flow_id": FLOW}),
    ("page", sql.LIST_EVENTS_AFTER, {"flow_id": FLOW, "after": 10, "limit": 1000}),
    ("read flow", sql.LOAD_FLOW, {"flow_id": FLOW}),
    (
        "read flow after",
        sql.LOAD_FLOW_AFTER,
        {"flow_id": FLOW, "after": 5, "after_id": uuid.uuid4(), "after_seq": 50, "first_seq": 1, "errors": 0},
    ),
    ("errors", sql.LIST_ERRORS, {"flow_id": FLOW, "step_id": None}),
    ("read all", sql.READ_ALL, {"after_tx": "0", "after_seq": 0, "limit": 1000}),
]


async def _fill(conn: asyncpg.Connection, flows: int, per_flow: int) -> None:
    """``flows * per_flow`` events (every tenth a failure with its error row, every fifth a
    finish with an artifact), written behind the library's back and never analyzed."""
    for table in HOT:
        await conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
    await conn.execute(
        """
        INSERT INTO event_log (event_id, flow_id, flow_version, event_type, payload)
        SELECT gen_random_uuid(), f.id, v, 'stepstarted',
               jsonb_build_object('event_type', 'stepstarted', 'step_index', 0, 'step_id', 's', 'attempt', v)
        FROM (SELECT gen_random_uuid() AS id FROM generate_series(1, $1)) AS f,
             generate_series(1, $2) AS v
        """,
        flows,
        per_flow,
    )
    await conn.execute(
        """
        INSERT INTO step_execution_errors (flow_id, step_id, attempt_number, error_class, event_seq)
        SELECT flow_id, 's', flow_version, 'runtime', seq FROM event_log WHERE seq % 10 = 0
        """
    )
    await conn.execute(
        """
        INSERT INTO workflow_step_artifacts (artifact_hash, kind, payload, produced_in_seq)
        SELECT encode(sha256(seq::text::bytea), 'hex'), 'k', '{}'::jsonb, seq FROM event_log WHERE seq % 5 = 0
        """
    )
    never = await conn.fetchval(
        "SELECT bool_and(last_analyze IS NULL AND last_autoanalyze IS NULL) FROM pg_stat_user_tables"
        " WHERE relname = ANY($1::text[])",
        HOT,
    )
    assert never


@pytest.mark.parametrize("size", ["empty", "large"])
async def test_no_generic_plan_scans_a_hot_table(conn: asyncpg.Connection, size: str) -> None:
    """The plan a pooled connection keeps (generic) for every hot statement, made on an empty table
    or a large one (100,000 events) that was never analyzed: no sequential scan of the log, the
    artifacts or the error rows."""
    if size == "large":
        await _fill(conn, flows=2_000, per_flow=50)
    else:
        for table in HOT:
            await conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
    scanned = {}
    for name, q, values in CASES:
        plan = await plan_of(conn, q, values, generic=True)
        if sequential_scans_of(plan, HOT):
            scanned[name] = scans(plan)
    assert scanned == {}


async def test_the_check_sees_a_scan_when_there_is_one(conn: asyncpg.Connection) -> None:
    """The control: the old way of finding stored event ids (a join of the ids with the log) is
    planned as a scan of a never-analyzed log, and the check says so."""
    await _fill(conn, flows=200, per_flow=50)
    old = query(
        "SELECT l.seq FROM unnest(:ids::uuid[]) AS e(id) JOIN event_log l ON l.event_id = e.id"
        " UNION ALL SELECT seq FROM event_log WHERE payload ->> 'step_id' = :step"
    )
    plan = await plan_of(conn, old, {"ids": IDS, "step": "s"}, generic=True)
    assert "event_log" in sequential_scans_of(plan, HOT)


async def test_reading_one_flow_walks_its_own_index_in_a_table_of_a_few_large_flows(
    conn: asyncpg.Connection,
) -> None:
    """Analyzed while it holds a few large flows (a young table, right after an import), the log
    tempted the planner to walk ``seq`` and filter on ``flow_id`` for a flow's page of the stream:
    a walk of the whole log for a flow of ten events. Reading a flow orders by ``flow_version``,
    which only the flow's own index gives, so every plan reads that flow's index entries alone."""
    await _fill(conn, flows=5, per_flow=20_000)
    await conn.execute("ANALYZE event_log")
    flow_indexes = {"event_log_flow_version_key", "event_log_flow_id_seq_idx"}  # (flow_id, ...)
    walked = {}
    for name, q, values in CASES:
        if name not in ("list", "page", "read flow"):
            continue
        for generic in (True, False):
            plan = await plan_of(conn, q, values, generic=generic)
            log = [n for n in nodes(plan) if n.get("Relation Name") == "event_log" or _on_log(n)]
            indexes = {n.get("Index Name") for n in log} - {None}
            if any(n["Node Type"] == "Seq Scan" for n in log) or not indexes or indexes - flow_indexes:
                walked[(name, generic)] = [(n["Node Type"], n.get("Index Name")) for n in log]
    assert walked == {}


def _on_log(node: dict[str, Any]) -> bool:
    """A bitmap index scan names its index, not its table."""
    return node["Node Type"] == "Bitmap Index Scan" and str(node.get("Index Name", "")).startswith(
        "event_log"
    )


@pytest.mark.parametrize("analyzed", [False, True])
async def test_read_all_walks_its_index_in_order(conn: asyncpg.Connection, analyzed: bool) -> None:
    """``read_all`` from the start and from midway, on 100,000 events (analyzed or not), custom or
    generic: ``event_log_tx_order_idx`` in index order, with no sort of what it matched (a catch-up
    from the start would sort the whole log for every batch)."""
    await _fill(conn, flows=2_000, per_flow=50)
    if analyzed:
        await conn.execute("ANALYZE event_log")
    middle = await conn.fetchrow(
        "SELECT tx_id::text, seq FROM event_log ORDER BY tx_id, seq OFFSET 50000 LIMIT 1"
    )
    assert middle is not None
    walked = {}
    for after_tx, after_seq in (("0", 0), (middle[0], middle[1])):
        for generic in (True, False):
            values = {"after_tx": after_tx, "after_seq": after_seq, "limit": 1000}
            plan = await plan_of(conn, sql.READ_ALL, values, generic=generic)
            kinds = [(n["Node Type"], n.get("Index Name")) for n in nodes(plan)]
            if ("Index Scan", "event_log_tx_order_idx") not in kinds or any(k == "Sort" for k, _ in kinds):
                walked[(after_seq, generic)] = kinds
    assert walked == {}
