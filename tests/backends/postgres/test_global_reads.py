"""``read_all`` on PostgreSQL: the order is the writing transactions' ids as numbers, then ``seq``."""

from __future__ import annotations

import uuid

import asyncpg

from chem_persistence_async import Database
from tests.factories import started
from tests.support.servers import url_with_database


async def test_events_are_read_by_transaction_id_as_a_number(db: Database, conn: asyncpg.Connection) -> None:
    """Rows written behind the library's back with ids across a digit boundary (9 < 10 < 99 < 100,
    whose texts sort the other way) and with seq against their transactions' order."""
    seqs = {}
    for tx_id in (100, 10, 99, 9):
        seqs[tx_id] = await conn.fetchval(
            """INSERT INTO event_log (event_id, flow_id, flow_version, event_type, payload, tx_id)
            VALUES (gen_random_uuid(), gen_random_uuid(), 1, 'stepstarted',
                    '{"event_type": "stepstarted", "step_index": 0, "step_id": "s", "attempt": 1}', $1::text::xid8)
            RETURNING seq""",
            str(tx_id),
        )
    store = db.event_store()
    events = await store.read_all()
    assert [e.position.group for e in events] == [9, 10, 99, 100]
    assert [e.seq for e in events] == [seqs[9], seqs[10], seqs[99], seqs[100]]
    assert [e.event_id for e in await store.read_all(events[1].position)] == [e.event_id for e in events[2:]]


async def test_only_transactions_of_this_database_hold_the_read_back(db: Database, db_url: str) -> None:
    """An open transaction holding an id in another database of the server cannot write this log:
    it does not hold ``read_all`` back (the cluster-wide ``pg_snapshot_xmin`` would). One in this
    database does, until it ends."""
    store = db.event_store()
    here = await asyncpg.connect(db_url)
    elsewhere = await asyncpg.connect(url_with_database(db_url, "postgres"))
    try:
        for conn in (elsewhere, here):
            await conn.execute("BEGIN")
            await conn.fetchval("SELECT pg_current_xact_id()")  # the transaction takes its id now
        await store.append_kind(uuid.uuid4(), started())
        assert await store.read_all() == []  # held back by the one here
        await here.execute("ROLLBACK")
        (event,) = await store.read_all()  # not by the one elsewhere, still open
        assert await elsewhere.fetchval("SELECT pg_current_xact_id_if_assigned() IS NOT NULL")
        assert event.position.group > int(await elsewhere.fetchval("SELECT pg_current_xact_id()::text"))
    finally:
        await here.close()
        await elsewhere.close()
