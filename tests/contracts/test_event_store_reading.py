"""Reading in bulk: chunked decoding, the paused collector, and the stream's prefetched page."""

from __future__ import annotations

import asyncio
import gc
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from chem_persistence_async import CorruptEventError, Database, PgEventStore
from chem_persistence_async.codec.decode import decode_events
from chem_persistence_async.domain.events import kind_to_payload
from tests.factories import finished, started

FLOW = uuid.UUID("00000000-0000-4000-8000-000000000001")
TS = datetime(2026, 1, 1, tzinfo=UTC)


def _rows(count: int) -> list[tuple[int, uuid.UUID, int, datetime, bytes]]:
    kinds = [started(attempt=i + 1) if i % 2 else finished() for i in range(count)]
    return [(100 + i, uuid.uuid4(), i + 1, TS, kind_to_payload(k)) for i, k in enumerate(kinds)]


@pytest.fixture
def collector_off() -> Iterator[None]:
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def test_many_rows_decode_across_chunks_in_order() -> None:
    rows = _rows(2_345)
    events = decode_events(FLOW, rows)
    assert [(e.seq, e.event_id, e.flow_version, e.ts) for e in events] == [r[:4] for r in rows]
    assert all(e.flow_id == FLOW for e in events)
    assert [kind_to_payload(e.kind) for e in events] == [r[4] for r in rows]
    assert gc.isenabled()


@pytest.mark.parametrize(
    "bad",
    [
        b'{"event_type": "stepstarted", "step_index": -1, "step_id": "s", "attempt": 1}',
        b'{"event_type": "nosuchthing"}',
        # Two values in one row would shift every later row if the chunk were trusted.
        b'{"event_type": "stepstarted", "step_index": 0, "step_id": "s", "attempt": 1},'
        b'{"event_type": "stepstarted", "step_index": 0, "step_id": "s", "attempt": 1}',
    ],
)
def test_a_bad_row_in_a_later_chunk_is_named_by_its_seq(bad: bytes) -> None:
    rows = _rows(2_500)
    seq, event_id, version, ts, _ = rows[1_700]
    rows[1_700] = (seq, event_id, version, ts, bad)
    with pytest.raises(CorruptEventError, match=f"seq={seq} does not decode") as info:
        decode_events(FLOW, rows)
    assert info.value.seq == seq
    assert gc.isenabled()


@pytest.mark.parametrize("count", [1, 50, 1_000, 2_500])
def test_a_decode_runs_no_collection_and_leaves_the_collector_on(collections: list[int], count: int) -> None:
    rows = _rows(count)
    collections.clear()
    events = decode_events(FLOW, rows)
    assert collections == []  # each decoded event is a few tracked objects: 10 would start one
    assert gc.isenabled()
    assert [e.seq for e in events] == [r[0] for r in rows]
    rows[-1] = (*rows[-1][:4], b"{}")
    with pytest.raises(CorruptEventError):
        decode_events(FLOW, rows)
    assert gc.isenabled()


def test_decoding_leaves_a_paused_collector_paused(collector_off: None) -> None:
    assert len(decode_events(FLOW, _rows(2_000))) == 2_000
    assert not gc.isenabled()


# --- PostgreSQL: a bad row far into a flow, and the stream's page in flight -----------------------

_SEED = """
INSERT INTO event_log (event_id, flow_id, flow_version, event_type, payload)
SELECT gen_random_uuid(), $1::uuid, g, 'stepstarted',
    jsonb_build_object('event_type', 'stepstarted', 'step_index', 0, 'step_id', 's0', 'attempt', g)
FROM generate_series($2::int, $3::int) AS g
"""


async def _seed(conn: asyncpg.Connection, flow: uuid.UUID, first: int, last: int) -> None:
    await conn.execute(_SEED, flow, first, last)


async def test_postgres_names_a_bad_row_deep_in_a_flow(db: Database, conn: asyncpg.Connection) -> None:
    store = PgEventStore(db)
    flow = uuid.uuid4()
    await _seed(conn, flow, 1, 1_500)
    bad = {"event_type": "stepstarted", "step_index": 0, "step_id": "s0", "attempt": 0}
    bad_seq = await conn.fetchval(
        "INSERT INTO event_log (event_id, flow_id, flow_version, event_type, payload)"
        " VALUES ($1, $2, 1501, 'stepstarted', $3::jsonb) RETURNING seq",
        uuid.uuid4(),
        flow,
        json.dumps(bad),
    )
    await _seed(conn, flow, 1_502, 2_600)
    with pytest.raises(CorruptEventError) as listed:
        await store.list(flow)
    assert listed.value.seq == bad_seq
    assert not _stream_tasks()  # the page after the bad one landed, and nothing waits for it
    seen: list[int] = []
    with pytest.raises(CorruptEventError) as streamed:
        await _collect(store.stream(flow, batch_size=400), seen)
    assert streamed.value.seq == bad_seq
    assert seen == list(range(1, 1_201))  # every page before the bad one, nothing of its page
    assert await store.flow_version(flow) == 2_600  # the pool is still usable


@pytest.mark.parametrize("count", [0, 1, 99, 100, 101, 1_000])
async def test_stream_pages_end_exactly(db: Database, conn: asyncpg.Connection, count: int) -> None:
    store = PgEventStore(db)
    flow = uuid.uuid4()
    if count:
        await _seed(conn, flow, 1, count)
    streamed = [e.flow_version async for e in store.stream(flow, batch_size=100)]
    assert streamed == list(range(1, count + 1))


@pytest.mark.parametrize("count", [0, 1, 999, 1_000, 1_001, 2_345])
async def test_list_pages_join_into_the_flow(db: Database, conn: asyncpg.Connection, count: int) -> None:
    """Outside a unit of work ``list`` reads pages of ``LIST_PAGE`` (1,000): the same events as
    the one statement it sends inside one."""
    store = PgEventStore(db)
    flow = uuid.uuid4()
    if count:
        await _seed(conn, flow, 1, count)
    paged = await store.list(flow)
    assert [e.flow_version for e in paged] == list(range(1, count + 1))
    async with db.transaction() as tx:
        assert await store.list(flow, tx=tx) == paged
    assert not _stream_tasks()


async def test_a_list_of_many_pages_runs_no_collection_after_its_first(
    db: Database, conn: asyncpg.Connection, collections: list[int]
) -> None:
    """The collector stays paused across a long list's later pages (each page's collections
    would walk the events kept so far), is on again afterwards, and one switched off before
    stays off. The first page is read as any one-page list is, with the collector running."""
    store = PgEventStore(db)
    one_page, flow = uuid.uuid4(), uuid.uuid4()
    await _seed(conn, one_page, 1, 999)
    await _seed(conn, flow, 1, 3_500)
    await store.list(one_page)  # (each statement prepared before the counts)
    await store.list(flow)
    collections.clear()
    await store.list(one_page)
    first_page = len(collections)
    collections.clear()
    assert len(await store.list(flow)) == 3_500
    assert first_page > 10  # the threshold would set collections off: the pages after it set none
    assert len(collections) <= first_page + 2, (first_page, len(collections))
    assert gc.isenabled()
    gc.disable()
    try:
        assert len(await store.list(flow)) == 3_500
        assert not gc.isenabled()
    finally:
        gc.enable()


async def test_a_list_during_appends_is_the_flow_at_one_moment(
    db: Database, conn: asyncpg.Connection
) -> None:
    """Pages read while appends go on join into a gap-free prefix of the flow: never a hole, never
    an event twice, never shorter than an earlier list."""
    store = PgEventStore(db)
    flow = uuid.uuid4()
    await _seed(conn, flow, 1, 2_990)
    listing = asyncio.Event()
    lengths: list[int] = []

    async def append() -> None:
        version = 2_990
        while not listing.is_set() or len(lengths) < 20:
            await store.append_kind(flow, started(attempt=version + 1), expected_version=version)
            version += 1

    async def read() -> None:
        while len(lengths) < 20:
            versions = [e.flow_version for e in await store.list(flow)]
            assert versions == list(range(1, len(versions) + 1))
            assert not lengths or len(versions) >= lengths[-1]
            lengths.append(len(versions))
            listing.set()

    await asyncio.wait_for(asyncio.gather(append(), read()), 60)
    assert lengths[-1] > 3_000  # the appends crossed a page boundary while lists ran


def _stream_tasks() -> set[asyncio.Task[Any]]:
    current = asyncio.current_task()
    return {t for t in asyncio.all_tasks() if t is not current and "_page" in repr(t.get_coro())}


async def test_a_stream_stopped_early_leaves_no_page_in_flight(
    db: Database, conn: asyncpg.Connection
) -> None:
    store = PgEventStore(db)
    flow = uuid.uuid4()
    await _seed(conn, flow, 1, 1_000)
    stream = store.stream(flow, batch_size=100)
    first = [e.flow_version async for e in _take(stream, 150)]
    assert first == list(range(1, 151))
    assert _stream_tasks()  # the third page is on its way
    await stream.aclose()  # type: ignore[attr-defined]
    assert not _stream_tasks()
    assert [e.flow_version for e in await store.list(flow)] == list(range(1, 1_001))


async def test_a_cancelled_consumer_leaves_no_page_behind(db: Database, conn: asyncpg.Connection) -> None:
    store = PgEventStore(db)
    flow = uuid.uuid4()
    await _seed(conn, flow, 1, 1_000)
    consumed = asyncio.Event()

    async def consume() -> None:
        async for event in store.stream(flow, batch_size=100):
            if event.flow_version == 150:
                consumed.set()
                await asyncio.sleep(3600)

    task = asyncio.create_task(consume())
    await consumed.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    in_flight = _stream_tasks()  # the abandoned generator is closed, and its page lands
    if in_flight:
        await asyncio.wait(in_flight, timeout=10)
    assert not _stream_tasks()
    assert await store.flow_version(flow) == 1_000


async def _take(stream: Any, count: int) -> Any:
    async for event in stream:
        yield event
        count -= 1
        if not count:
            return


async def _collect(stream: Any, into: list[int]) -> None:
    async for event in stream:
        into.append(event.flow_version)
