"""The lean append (a plain INSERT at a known or guessed version) never duplicates, never leaves a
gap, and hands a retried event id to the full statement, which returns what is stored."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest

from chem_persistence_async import ConcurrencyConflict, Database, PgEventStore
from tests.factories import artifact, failed, finished, started
from tests.support.harness import Harness


async def _versions(conn: asyncpg.Connection, flow_id: uuid.UUID) -> list[int]:
    rows = await conn.fetch(
        "SELECT flow_version FROM event_log WHERE flow_id = $1 ORDER BY flow_version", flow_id
    )
    return [row[0] for row in rows]


async def test_stale_cached_guess_never_duplicates_nor_gaps(
    harness: Harness, store: Any, make_store: Any
) -> None:
    """Two stores on one flow: each one's cached last version goes stale as the other appends."""
    other = make_store() if harness.has("shared") else store
    flow = uuid.uuid4()
    for i in range(6):
        await store.append_kind(flow, started(i))
        await other.append_kind(flow, started(i))
        await other.append_kind(flow, started(i + 10))
    events = await store.list(flow)
    assert [e.flow_version for e in events] == list(range(1, 19))
    assert len({e.event_id for e in events}) == 18


async def test_stale_guess_with_concurrent_writers(db: Database) -> None:
    stores = [PgEventStore(db) for _ in range(4)]
    flow = uuid.uuid4()
    for s in stores:
        await s.append_kind(flow, started(0))  # every store now has a (soon stale) guess

    async def writer(s: Any, n: int) -> None:
        for i in range(n):
            await s.append_kind(flow, started(i))

    await asyncio.gather(*(writer(s, 10) for s in stores))
    events = await stores[0].list(flow)
    assert [e.flow_version for e in events] == list(range(1, 45))


async def test_lean_path_with_expected_version_conflicts(store: Any) -> None:
    flow = uuid.uuid4()
    await store.append_kind(flow, started(0), expected_version=0)
    await store.append_kind(flow, started(1), expected_version=1)
    for wrong in (0, 1, 3, 7):
        with pytest.raises(ConcurrencyConflict):
            await store.append_kind(flow, started(2), expected_version=wrong)
    assert [e.flow_version for e in await store.list(flow)] == [1, 2]


async def test_retried_event_id_returns_stored_event(store: Any) -> None:
    """A retry after a commit whose acknowledgement was lost: same event id, same expected version."""
    flow = uuid.uuid4()
    eid = uuid.uuid4()
    first = await store.append_kind(flow, started(0), expected_version=0, event_id=eid)
    again = await store.append_kind(flow, started(0), expected_version=0, event_id=eid)
    assert again == first
    # also when the store's guess moved on meanwhile (no expected version)
    await store.append_kind(flow, started(1))
    again = await store.append_kind(flow, started(0), event_id=eid)
    assert again == first
    assert [e.flow_version for e in await store.list(flow)] == [1, 2]


async def test_retried_batch_with_artifacts_and_errors_writes_nothing_twice(store: Any) -> None:
    flow = uuid.uuid4()
    art = artifact(7)
    kinds = [started(0), finished(0, outputs=(art.hash,)), failed(1)]
    ids = [uuid.uuid4() for _ in kinds]
    first = await store.append_many(flow, kinds, artifacts=[art], expected_version=0, event_ids=ids)
    again = await store.append_many(flow, kinds, artifacts=[art], expected_version=0, event_ids=ids)
    assert again == first
    assert len(await store.list_errors(flow)) == 1
    assert [e.flow_version for e in await store.list(flow)] == [1, 2, 3]


async def test_lean_insert_after_lost_acknowledgement(db: Database, conn: asyncpg.Connection) -> None:
    """The first attempt commits but the caller never hears of it: the retry finds the stored row."""
    store = PgEventStore(db)
    flow = uuid.uuid4()
    await store.append_kind(flow, started(0))
    eid = uuid.uuid4()
    calls = 0
    real_run = db.run

    async def run_twice(fn: Any, *, operation: str = "query") -> Any:
        nonlocal calls
        calls += 1
        if operation == "append" and calls == 1:
            await real_run(fn, operation=operation)  # committed; the answer is "lost"
        return await real_run(fn, operation=operation)

    db.run = run_twice  # type: ignore[method-assign]
    try:
        event = await store.append_kind(flow, started(1), event_id=eid)
    finally:
        del db.run
    assert event.flow_version == 2
    assert event.event_id == eid
    assert await _versions(conn, flow) == [1, 2]
