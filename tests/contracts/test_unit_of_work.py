"""The unit of work: appends (and, on PostgreSQL, the caller's own SQL) commit or roll back together."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest

from chem_persistence_async import (
    ConcurrencyConflict,
    Database,
    InMemoryEventStore,
    PgEventStore,
    TransactionError,
)
from tests.factories import artifact, failed, finished, started


class Boom(Exception):
    pass


async def test_a_failure_inside_rolls_back_every_append(store: Any) -> None:
    flow, other = uuid.uuid4(), uuid.uuid4()
    a = artifact(1)
    with pytest.raises(Boom):
        async with store.transaction() as tx:
            await store.append_kind(flow, started(), tx=tx)
            await store.append_many(flow, [failed(), started(attempt=2)], tx=tx)
            await store.append_kind(other, finished(outputs=(a.hash,)), artifacts=[a], tx=tx)
            assert [e.flow_version for e in await store.list(flow, tx=tx)] == [1, 2, 3]
            raise Boom
    assert await store.list(flow) == []
    assert await store.list(other) == []
    assert await store.list_errors(flow) == []
    assert await store.get_artifacts([a.hash]) == {}
    assert not tx.active


async def test_appends_commit_together_and_are_seen_after(store: Any) -> None:
    flow = uuid.uuid4()
    async with store.transaction() as tx:
        first = await store.append_kind(flow, started(), expected_version=0, tx=tx)
        rest = await store.append_many(flow, [failed(), started(attempt=2)], expected_version=1, tx=tx)
    assert [e.event_id for e in await store.list(flow)] == [first.event_id, *(e.event_id for e in rest)]
    assert [e.attempt_number for e in await store.list_errors(flow)] == [1]


async def test_a_conflict_inside_raises_and_leaves_the_unit_usable(store: Any) -> None:
    flow = uuid.uuid4()
    await store.append_kind(flow, started())
    async with store.transaction() as tx:
        with pytest.raises(ConcurrencyConflict) as conflict:
            await store.append_kind(flow, finished(), expected_version=0, tx=tx)
        assert conflict.value.actual_version == 1
        await store.append_kind(flow, finished(), expected_version=1, tx=tx)
    assert [e.flow_version for e in await store.list(flow)] == [1, 2]


async def test_a_retried_event_id_inside_returns_the_stored_event(store: Any) -> None:
    flow, event_id = uuid.uuid4(), uuid.uuid4()
    stored = await store.append_kind(flow, started(), event_id=event_id)
    async with store.transaction() as tx:
        again = await store.append_kind(flow, started(), event_id=event_id, expected_version=0, tx=tx)
    assert (again.seq, again.flow_version) == (stored.seq, stored.flow_version)
    assert len(await store.list(flow)) == 1


async def test_a_finished_unit_of_work_refuses_more_work(store: Any) -> None:
    async with store.transaction() as tx:
        pass
    with pytest.raises(TransactionError):
        await store.append_kind(uuid.uuid4(), started(), tx=tx)


async def test_a_unit_of_work_of_another_backend_or_database_is_refused(db: Database, db_url: str) -> None:
    memory, postgres = InMemoryEventStore(), PgEventStore(db)
    async with memory.transaction() as memory_tx:
        with pytest.raises(TransactionError):
            await postgres.append_kind(uuid.uuid4(), started(), tx=memory_tx)
    async with postgres.transaction() as pg_tx:
        with pytest.raises(TransactionError):
            await memory.append_kind(uuid.uuid4(), started(), tx=pg_tx)
    async with Database.connect(db_url, min_connections=0) as second, second.transaction() as foreign:
        with pytest.raises(TransactionError):
            await postgres.append_kind(uuid.uuid4(), started(), tx=foreign)


async def test_run_in_transaction_returns_what_fn_returns(store: Any) -> None:
    flow = uuid.uuid4()

    async def two(tx: Any) -> int:
        await store.append_kind(flow, started(), tx=tx)
        await store.append_kind(flow, finished(), tx=tx)
        return await store.flow_version(flow, tx=tx)

    assert await store.run_in_transaction(two) == 2
    assert len(await store.list(flow)) == 2


# --- PostgreSQL: the caller's own SQL in the same transaction ------------------------------------


@pytest.fixture
async def scratch(conn: asyncpg.Connection) -> str:
    await conn.execute("CREATE TABLE scratch_outbox (id int PRIMARY KEY, note text NOT NULL)")
    return "scratch_outbox"


async def test_an_append_and_a_failing_statement_of_the_caller_leave_nothing(
    db: Database, conn: asyncpg.Connection, scratch: str
) -> None:
    store = PgEventStore(db)
    flow = uuid.uuid4()
    await conn.execute("INSERT INTO scratch_outbox VALUES (1, 'taken')")
    with pytest.raises(asyncpg.UniqueViolationError):
        async with db.transaction() as tx:
            await store.append_kind(flow, started(), tx=tx)
            await tx.execute("INSERT INTO scratch_outbox VALUES (1, 'again')")
    assert await conn.fetchval("SELECT count(*) FROM event_log WHERE flow_id = $1", flow) == 0
    assert await conn.fetchval("SELECT count(*) FROM scratch_outbox") == 1


async def test_two_appends_and_a_raw_insert_commit_together(
    db: Database, conn: asyncpg.Connection, scratch: str
) -> None:
    store = PgEventStore(db)
    flow = uuid.uuid4()
    async with db.transaction() as tx:
        await store.append_kind(flow, started(), tx=tx)
        await store.append_kind(flow, finished(), tx=tx)
        await tx.execute("INSERT INTO scratch_outbox VALUES (7, 'sent')")
        # nothing is visible outside before the commit
        assert await conn.fetchval("SELECT count(*) FROM event_log WHERE flow_id = $1", flow) == 0
    assert await conn.fetchval("SELECT count(*) FROM event_log WHERE flow_id = $1", flow) == 2
    assert await conn.fetchval("SELECT note FROM scratch_outbox WHERE id = 7") == "sent"


async def test_a_stale_cached_version_inside_still_gives_a_conflict_not_an_aborted_transaction(
    db: Database, conn: asyncpg.Connection, scratch: str
) -> None:
    """The store's cached guess says version 1; another writer took 2. The lean statement inside
    the unit of work must not fail (that would poison the transaction): the judge decides."""
    store, other = PgEventStore(db), PgEventStore(db)
    flow = uuid.uuid4()
    await store.append_kind(flow, started())  # store's guess: 1
    await other.append_kind(flow, finished())  # the flow is at 2
    async with db.transaction() as tx:
        with pytest.raises(ConcurrencyConflict):
            await store.append_kind(flow, failed(), expected_version=1, tx=tx)
        appended = await store.append_kind(flow, started(attempt=2), tx=tx)  # at the end: 3
        await tx.execute("INSERT INTO scratch_outbox VALUES (1, 'still usable')")
    assert appended.flow_version == 3
    assert [e.flow_version for e in await store.list(flow)] == [1, 2, 3]
    assert await conn.fetchval("SELECT count(*) FROM scratch_outbox") == 1


async def test_the_version_cache_learns_only_after_the_commit(db: Database) -> None:
    store = PgEventStore(db)
    flow = uuid.uuid4()
    with pytest.raises(Boom):
        async with db.transaction() as tx:
            await store.append_many(flow, [started(), finished(), started(1, "s1")], tx=tx)
            raise Boom
    assert store._versions.get(flow) is None  # a rolled-back version is never believed
    event = await store.append_kind(flow, started())
    assert event.flow_version == 1
    async with db.transaction() as tx:
        await store.append_kind(flow, finished(), tx=tx)
        assert store._versions[flow] == 1
    assert store._versions[flow] == 2


async def _until_a_backend_waits_on_a_lock(conn: asyncpg.Connection, deadline_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while not await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    ):
        assert loop.time() < end, "no statement ever waited on the first transaction's rows"
        await asyncio.sleep(0.005)


async def test_concurrent_units_of_work_appending_at_the_end_take_turns(
    db: Database, conn: asyncpg.Connection
) -> None:
    """Two transactions append batches to the end of one flow at once: the second waits on the
    first's rows, skips the taken versions, and appends after them; neither aborts, no half batch."""
    store = PgEventStore(db)
    flow = uuid.uuid4()
    await store.append_kind(flow, started())
    first_inside = asyncio.Event()
    release_first = asyncio.Event()

    async def first() -> None:
        async with db.transaction() as tx:
            await store.append_many(flow, [finished(), started(1, "s1")], tx=tx)
            first_inside.set()
            await release_first.wait()

    async def second() -> list[Any]:
        await first_inside.wait()
        async with db.transaction() as tx:
            waiting = asyncio.ensure_future(store.append_many(flow, [failed(), started(attempt=2)], tx=tx))
            await _until_a_backend_waits_on_a_lock(conn)  # its INSERT waits on the first's rows
            assert not waiting.done()
            release_first.set()
            return await waiting

    _, events = await asyncio.wait_for(asyncio.gather(first(), second()), 30)
    assert [e.flow_version for e in events] == [4, 5]
    assert [e.flow_version for e in await store.list(flow)] == [1, 2, 3, 4, 5]
    assert len(await store.list_errors(flow)) == 1


async def test_concurrent_units_of_work_at_the_same_expected_version_one_conflicts(db: Database) -> None:
    store = PgEventStore(db)
    flow = uuid.uuid4()
    await store.append_kind(flow, started())
    barrier = asyncio.Barrier(2)

    async def attempt(n: int) -> str:
        async with db.transaction() as tx:
            await barrier.wait()
            try:
                await store.append_many(flow, [finished(), started(1, f"s{n}")], expected_version=1, tx=tx)
            except ConcurrencyConflict:
                return "conflict"
            return "won"

    outcomes = await asyncio.wait_for(asyncio.gather(attempt(1), attempt(2)), 30)
    assert sorted(outcomes) == ["conflict", "won"]
    assert [e.flow_version for e in await store.list(flow)] == [1, 2, 3]


async def test_run_in_transaction_retries_a_serialization_failure_from_the_start(
    db: Database, conn: asyncpg.Connection, scratch: str
) -> None:
    store = PgEventStore(db)
    flow = uuid.uuid4()
    await conn.execute("INSERT INTO scratch_outbox VALUES (1, '0')")
    calls = 0
    read_done = asyncio.Event()

    async def bump(tx: Any) -> str:
        nonlocal calls
        calls += 1
        note = await tx.fetchval("SELECT note FROM scratch_outbox WHERE id = 1")
        if calls == 1:
            read_done.set()
            # another transaction changes the row after this one read it: SERIALIZABLE refuses ours
            await conn.execute("UPDATE scratch_outbox SET note = 'x' WHERE id = 1")
        await store.append_kind(flow, started(attempt=calls), tx=tx)
        await tx.execute("UPDATE scratch_outbox SET note = $1 WHERE id = 1", f"{note}+{calls}")
        return str(note)

    seen = await db.run_in_transaction(bump, isolation="serializable")
    assert calls == 2
    assert seen == "x"
    assert await conn.fetchval("SELECT note FROM scratch_outbox WHERE id = 1") == "x+2"
    events = await store.list(flow)
    assert [e.kind.attempt for e in events] == [2]  # the first run's append rolled back
    assert db.metrics.snapshot()["retries"] == {"40001": 1}
