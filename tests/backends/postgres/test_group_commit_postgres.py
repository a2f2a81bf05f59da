"""Group commit on PostgreSQL: one statement for many callers, each with its own exact outcome.

The store is opened with one writer (``group_commit_writers=1``): the first append of a burst is
written alone, and every append that arrives while it is in flight joins the next group. Tasks
created together all reach ``submit`` before the first one's statement returns, so the grouping is
decided by the test, not by timing.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from chem_persistence_async import (
    ConcurrencyConflict,
    Database,
    ErrorClass,
    JobCancelledError,
    JobSpec,
    LeaseLostError,
    PgEventStore,
    WorkQueue,
)
from chem_persistence_async.domain.jobs import JobWrite
from tests.factories import artifact, failed, finished, started

_INSERT = (
    "INSERT INTO event_log (event_id, flow_id, flow_version, event_type, payload) "
    "VALUES ($1, $2, $3, 'stepstarted', $4)"
)

_WAITING_ON_A_LOCK = (
    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
)


@pytest.fixture
async def one_writer(db_url: str) -> AsyncIterator[Database]:
    database = await Database.open(db_url, min_connections=1, max_connections=8, group_commit_writers=1)
    yield database
    await database.close()


async def _rows(conn: asyncpg.Connection, flow_id: uuid.UUID) -> list[tuple[int, str]]:
    rows = await conn.fetch(
        "SELECT flow_version, event_type FROM event_log WHERE flow_id = $1 ORDER BY flow_version", flow_id
    )
    return [(r[0], r[1]) for r in rows]


async def test_a_burst_is_written_as_one_alone_and_one_group(
    one_writer: Database, conn: asyncpg.Connection
) -> None:
    store = PgEventStore(one_writer)
    flows = [uuid.uuid4() for _ in range(10)]
    events = await asyncio.gather(*(store.append_kind(f, started()) for f in flows))
    assert [e.flow_version for e in events] == [1] * 10
    assert [e.flow_id for e in events] == flows
    assert len({e.seq for e in events}) == 10
    assert store.group_commit_stats == {
        "alone": 1,
        "groups": 1,
        "grouped": 9,
        "largest_group": 9,
        "fallbacks": 0,
        "failed_groups": 0,
    }
    stored = await conn.fetch("SELECT event_id, seq, flow_id FROM event_log ORDER BY seq")
    assert [(r[0], r[1], r[2]) for r in stored] == [(e.event_id, e.seq, e.flow_id) for e in events]


async def test_members_of_one_group_get_their_own_outcomes(
    one_writer: Database, conn: asyncpg.Connection
) -> None:
    store = PgEventStore(one_writer)
    blocker, ok_flow, stale_flow, retried_flow, art_flow, err_flow = (uuid.uuid4() for _ in range(6))
    await store.append_kind(stale_flow, started())
    stored_before = await store.append_kind(retried_flow, started())
    a1, a2 = artifact(1), artifact(2)

    results = await asyncio.gather(
        store.append_kind(blocker, started()),
        store.append_kind(ok_flow, started(), expected_version=0),
        store.append_kind(stale_flow, finished(), expected_version=0),  # the flow is at 1
        store.append_kind(retried_flow, started(), event_id=stored_before.event_id),  # a retry
        store.append_many(art_flow, [started(), finished(outputs=(a1.hash, a2.hash))], artifacts=[a1, a2]),
        store.append_many(err_flow, [started(), failed(error_class=ErrorClass.RUNTIME)]),
        return_exceptions=True,
    )
    assert store.group_commit_stats is not None
    assert store.group_commit_stats["groups"] == 1
    assert store.group_commit_stats["grouped"] == 5

    ok, stale, retried, with_artifacts, with_error = results[1:]
    assert not isinstance(ok, BaseException)
    assert ok.flow_version == 1
    assert isinstance(stale, ConcurrencyConflict)
    assert (stale.flow_id, stale.expected_version, stale.actual_version) == (stale_flow, 0, 1)
    assert await _rows(conn, stale_flow) == [(1, "stepstarted")]  # nothing written for it
    assert retried == stored_before  # the stored event back, not a second one
    assert await _rows(conn, retried_flow) == [(1, "stepstarted")]
    assert isinstance(with_artifacts, list)
    assert [e.flow_version for e in with_artifacts] == [1, 2]
    produced = await conn.fetch(
        "SELECT artifact_hash, produced_in_seq FROM workflow_step_artifacts ORDER BY artifact_hash"
    )
    assert {(r[0], r[1]) for r in produced} == {
        (a1.hash, with_artifacts[1].seq),
        (a2.hash, with_artifacts[1].seq),
    }
    assert isinstance(with_error, list)
    errors = await store.list_errors(err_flow)
    assert [(e.step_id, e.attempt_number, e.error_class, e.event_seq) for e in errors] == [
        ("s0", 1, ErrorClass.RUNTIME, with_error[1].seq)
    ]
    assert errors[0].ts == with_error[1].ts
    assert (errors[0].retry_count, errors[0].max_retries) == (0, 3)


async def test_two_appends_to_one_flow_in_a_burst_take_consecutive_versions(
    one_writer: Database, conn: asyncpg.Connection
) -> None:
    store = PgEventStore(one_writer)
    flow = uuid.uuid4()
    others = [uuid.uuid4() for _ in range(3)]
    results = await asyncio.gather(
        store.append_kind(others[0], started()),
        store.append_kind(flow, started()),
        store.append_kind(others[1], started()),
        store.append_kind(flow, finished()),
        store.append_kind(others[2], started()),
        store.append_kind(flow, started(attempt=2)),
    )
    mine = [results[1], results[3], results[5]]
    assert [e.flow_version for e in mine] == [1, 2, 3]
    assert await _rows(conn, flow) == [(1, "stepstarted"), (2, "stepfinished"), (3, "stepstarted")]


async def test_a_group_raced_by_an_outside_writer_falls_back_and_loses_nothing(
    one_writer: Database, conn: asyncpg.Connection, db_url: str
) -> None:
    """A writer outside the store takes version 1 of a grouped flow while the group statement runs:
    the statement fails as a whole, and each member is written alone, at the right version."""
    store = PgEventStore(one_writer)
    raced, calm, blocker = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    outsider = await asyncpg.connect(db_url)
    try:
        tx = outsider.transaction()
        await tx.start()
        await outsider.execute(_INSERT, uuid.uuid4(), raced, 1, '{"event_type": "stepstarted"}')
        burst = asyncio.gather(
            store.append_kind(blocker, started()),
            store.append_kind(raced, finished()),
            store.append_kind(calm, finished()),
        )
        # The group statement is waiting on the outsider's uncommitted version 1 of ``raced``.
        async with asyncio.timeout(10):
            while not await conn.fetchval(_WAITING_ON_A_LOCK):  # noqa: ASYNC110 - the server has no event to await
                await asyncio.sleep(0.01)
        await tx.commit()
        _, raced_event, calm_event = await burst
    finally:
        await outsider.close()
    assert (raced_event.flow_version, calm_event.flow_version) == (2, 1)
    assert await _rows(conn, raced) == [(1, "stepstarted"), (2, "stepfinished")]
    assert await _rows(conn, calm) == [(1, "stepfinished")]
    assert store.group_commit_stats is not None
    assert store.group_commit_stats["failed_groups"] == 1
    assert store.group_commit_stats["fallbacks"] == 2


async def test_a_member_cancelled_mid_group_is_written_once_and_its_retry_finds_it(
    one_writer: Database, conn: asyncpg.Connection
) -> None:
    """Cancelling a caller does not cancel the group statement its append is part of: the others are
    unaffected, and the cancelled caller's retry with the same event id returns the stored event."""
    store = PgEventStore(one_writer)
    blocker, mine, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    my_id = uuid.uuid4()
    first = asyncio.create_task(store.append_kind(blocker, started()))
    doomed = asyncio.create_task(store.append_kind(mine, started(), event_id=my_id))
    survivor = asyncio.create_task(store.append_kind(other, started()))
    async with asyncio.timeout(10):
        while not (store.group_commit_stats or {}).get("groups"):  # noqa: ASYNC110 - no event to await
            await asyncio.sleep(0)
    doomed.cancel()  # the group statement holding it is on its way
    with pytest.raises(asyncio.CancelledError):
        await doomed
    await first
    assert (await survivor).flow_version == 1
    again = await store.append_kind(mine, started(), event_id=my_id)
    assert (again.event_id, again.flow_version) == (my_id, 1)
    assert await conn.fetchval("SELECT count(*) FROM event_log WHERE flow_id = $1", mine) == 1


async def test_many_tasks_many_flows_everything_once(db: Database, conn: asyncpg.Connection) -> None:
    """32 tasks x 20 appends each, on 8 flows (so 4 tasks share a flow), default settings."""
    store = PgEventStore(db)
    flows = [uuid.uuid4() for _ in range(8)]

    async def task(i: int) -> list[int]:
        return [(await store.append_kind(flows[i % 8], started(attempt=1 + k))).seq for k in range(20)]

    seqs = [s for task_seqs in await asyncio.gather(*(task(i) for i in range(32))) for s in task_seqs]
    assert len(seqs) == len(set(seqs)) == 640
    for flow in flows:
        versions = [v for v, _ in await _rows(conn, flow)]
        assert versions == list(range(1, 81))
    stats = store.group_commit_stats
    assert stats is not None
    assert stats["alone"] + stats["grouped"] == 640  # every append once, alone or in a group
    assert stats["groups"] > 0


async def test_group_commit_can_be_turned_off(one_writer: Database) -> None:
    store = PgEventStore(one_writer, group_commit=False)
    await asyncio.gather(*(store.append_kind(uuid.uuid4(), started()) for _ in range(5)))
    assert store.group_commit_stats is None


async def test_appends_with_job_writes_share_a_group_and_each_gets_its_own_outcome(
    one_writer: Database, conn: asyncpg.Connection
) -> None:
    """Submits (event + job) and last commits (events + the held job's end) join one group; a
    member whose job is no longer held, or whose flow moved on, writes nothing and gets its own
    error, while the others commit with their jobs."""
    store, queue = PgEventStore(one_writer), WorkQueue(one_writer)

    def flow_job(flow: uuid.UUID) -> JobWrite:
        return JobWrite.enqueue(
            JobSpec("flow", None, key=str(flow), max_attempts=None, flow_id=flow).checked()
        )

    held_flows = [uuid.uuid4() for _ in range(4)]
    for flow in held_flows:
        await store.append_with_job(flow, [started()], flow_job(flow), queue=queue, expected_version=0)
    claimed = {j.flow_id: j for j in await queue.claim("w1", limit=4)}
    done, waiting, lost, cancelled = (claimed[f] for f in held_flows)
    stolen = replace(lost, lease_token=uuid.uuid4())  # as if another claim had taken it over
    assert cancelled.key is not None
    assert await queue.cancel(cancelled.key)
    stale = uuid.uuid4()
    await store.append_kind(stale, started())
    new_flows = [uuid.uuid4() for _ in range(4)]
    until = datetime.now(UTC) + timedelta(hours=1)

    blocker = uuid.uuid4()
    results = await asyncio.gather(
        store.append_kind(blocker, started()),  # written alone: the others queue up behind it
        *(
            store.append_with_job(f, [started()], flow_job(f), queue=queue, expected_version=0)
            for f in new_flows
        ),
        store.append_with_job(
            done.flow_id, [finished()], JobWrite.complete(done), queue=queue, expected_version=1
        ),
        store.append_with_job(
            waiting.flow_id, [failed()], JobWrite.suspend(waiting, until), queue=queue, expected_version=1
        ),
        store.append_with_job(
            lost.flow_id, [finished()], JobWrite.complete(stolen), queue=queue, expected_version=1
        ),
        store.append_with_job(
            cancelled.flow_id, [finished()], JobWrite.complete(cancelled), queue=queue, expected_version=1
        ),
        store.append_with_job(stale, [started()], flow_job(stale), queue=queue, expected_version=0),
        return_exceptions=True,
    )
    stats = store.group_commit_stats
    assert stats is not None
    assert (stats["groups"], stats["grouped"]) == (1, 9), stats
    assert stats["fallbacks"] == 2, stats  # the lost and the cancelled member told why alone
    *submitted, r_done, r_waiting, r_lost, r_cancelled, r_stale = results[1:]
    assert all(isinstance(r, list) and [e.flow_version for e in r] == [1] for r in submitted)
    assert isinstance(r_done, list)
    assert isinstance(r_waiting, list)
    assert isinstance(r_lost, LeaseLostError)
    assert isinstance(r_cancelled, JobCancelledError)
    assert isinstance(r_stale, ConcurrencyConflict)

    versions = dict(await conn.fetch("SELECT flow_id, max(flow_version) FROM event_log GROUP BY flow_id"))
    assert [
        versions[f] for f in (*new_flows, done.flow_id, waiting.flow_id, lost.flow_id, cancelled.flow_id)
    ] == [1, 1, 1, 1, 2, 2, 1, 1]
    active = {
        r["flow_id"]: r
        for r in await conn.fetch("SELECT flow_id, state, not_before, attempt FROM work_queue")
    }
    assert {f for f in new_flows} <= set(active)
    assert stale not in active
    assert done.flow_id not in active
    assert active[waiting.flow_id]["state"] == "ready"
    assert active[waiting.flow_id]["not_before"] == until
    assert active[waiting.flow_id]["attempt"] == waiting.attempt - 1
    assert active[lost.flow_id]["state"] == "claimed"
    assert active[cancelled.flow_id]["state"] == "claimed"
    history = await conn.fetch("SELECT id, state FROM work_queue_history")
    assert [(r["id"], r["state"]) for r in history] == [(done.id, "completed")]
    assert (
        await conn.fetchval("SELECT count(*) FROM step_execution_errors WHERE flow_id = $1", waiting.flow_id)
        == 1
    )
