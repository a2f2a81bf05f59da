"""``read_flow(after=...)``: the part of a flow after a copy a reader holds, or the whole flow when
the flow is no longer the one the copy was read from (every backend)."""

from __future__ import annotations

import uuid

from chem_persistence_async.ports.event_store import AsyncEventStore, FlowMark, FlowRecord
from tests.factories import failed, finished, started


async def _flow(store: AsyncEventStore) -> uuid.UUID:
    flow = uuid.uuid4()
    await store.append_many(flow, [started(), failed(attempt=1), started(attempt=2)])
    await store.append_many(flow, [failed(attempt=2), started(attempt=3), finished()])
    return flow


def _mark(record: FlowRecord, held: int) -> FlowMark:
    """The mark of a reader holding the first ``held`` events of ``record`` (a whole flow)."""
    seq = record.events[held - 1].seq
    return FlowMark.of(record.events[:held], sum(1 for e in record.errors if (e.event_seq or 0) <= seq))


async def test_after_a_mark_the_events_and_error_rows_after_it(store: AsyncEventStore) -> None:
    flow = await _flow(store)
    whole = await store.read_flow(flow)
    assert whole.since == 0
    for held in range(1, 7):
        mark = _mark(whole, held)
        part = await store.read_flow(flow, after=mark)
        assert part.since == held
        assert part.events == whole.events[held:]
        assert part.errors == [e for e in whole.errors if (e.event_seq or 0) > mark.seq]
        assert mark.errors + len(part.errors) == len(whole.errors)
    assert len((await store.read_flow(flow, after=_mark(whole, 2))).errors) == 1


async def test_a_mark_the_flow_does_not_have_gives_the_whole_flow(store: AsyncEventStore) -> None:
    flow = await _flow(store)
    whole = await store.read_flow(flow)
    mark = _mark(whole, 3)
    other = await store.read_flow(await _flow(store))
    strangers = [
        mark._replace(event_id=uuid.uuid4()),
        mark._replace(seq=mark.seq + 1_000),
        mark._replace(first_seq=mark.first_seq + 1),
        mark._replace(version=7),
        mark._replace(version=0),
        mark._replace(errors=mark.errors + 1),
        mark._replace(errors=mark.errors - 1),
        _mark(other, 3),  # another flow's events at the same versions
        _mark(whole, 1)._replace(first_seq=whole.events[1].seq),
    ]
    for stranger in strangers:
        record = await store.read_flow(flow, after=stranger)
        assert (record.since, record.events, record.errors) == (0, whole.events, whole.errors), stranger


async def test_after_a_mark_of_a_flow_with_no_events_reads_nothing(store: AsyncEventStore) -> None:
    flow = await _flow(store)
    mark = _mark(await store.read_flow(flow), 6)
    record = await store.read_flow(uuid.uuid4(), after=mark)
    assert (record.since, record.events, record.errors) == (0, [], [])


async def test_the_mark_after_reading_on_extends_as_a_whole_read_would(store: AsyncEventStore) -> None:
    flow = await _flow(store)
    first = await store.read_flow(flow)
    mark = _mark(first, 6)
    await store.append_many(flow, [started(1, "s1"), failed(1, "s1")])
    part = await store.read_flow(flow, after=mark)
    whole = await store.read_flow(flow)
    assert first.events + part.events == whole.events
    assert first.errors + part.errors == whole.errors
    extended = FlowMark.of(part.events, mark.errors + len(part.errors), mark.first_seq)
    assert extended == _mark(whole, 8)
