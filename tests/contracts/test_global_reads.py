"""Global ordered reads (SPEC 8.5): ``read_all`` on every backend, in an order into which no later
commit can insert, and its positions."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from typing import Any

import pytest

from chem_persistence_async import InvalidInputError, Position
from tests.factories import artifact, finished, started


async def _append(store: Any, flow: uuid.UUID, *, tx: Any = None) -> Any:
    return await store.append_kind(flow, started(), tx=tx)


async def test_read_all_returns_every_flows_events_in_commit_order_with_positions(store: Any) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    written = [await _append(store, a), await _append(store, b)]
    written += await store.append_many(a, [finished(), started(1, "s1")], expected_version=1)
    events = await store.read_all()
    assert [(e.flow_id, e.flow_version, e.event_id) for e in events] == [
        (e.flow_id, e.flow_version, e.event_id) for e in written
    ]
    assert [e.kind for e in events] == [e.kind for e in written]
    positions = [e.position for e in events]
    assert positions == sorted(positions)
    assert len(set(positions)) == len(positions)
    assert all(isinstance(p, Position) for p in positions)


async def test_read_all_pages_by_position_and_limit(store: Any) -> None:
    flows = [uuid.uuid4() for _ in range(7)]
    for flow in flows:
        await _append(store, flow)
    everything = await store.read_all()
    pages, after = [], None
    while page := await store.read_all(after, limit=3):
        assert len(page) <= 3
        pages += page
        after = page[-1].position
    assert pages == everything
    assert [e.flow_id for e in everything] == flows


async def test_a_position_survives_json_and_compares_as_it_did(store: Any) -> None:
    for _ in range(3):
        await _append(store, uuid.uuid4())
    first, second, third = await store.read_all()
    saved = json.loads(json.dumps({"checkpoint": first.position}))["checkpoint"]
    assert [e.event_id for e in await store.read_all(saved)] == [second.event_id, third.event_id]
    assert first.position < second.position < third.position
    assert Position(saved) == first.position


async def test_an_open_unit_of_work_holds_back_what_committed_after_it(store: Any) -> None:
    """A reader that has seen position p never later sees an event at or before p: an append still
    uncommitted stops the read before every event written after it, until it ends."""
    before, held, after_it = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await _append(store, before)
    seen = await store.read_all()
    async with store.transaction() as tx:
        await _append(store, held, tx=tx)
        await _append(store, after_it)  # commits at once, after the open one began
        assert await store.read_all(seen[-1].position) == []
    rest = await store.read_all(seen[-1].position)
    assert [e.flow_id for e in rest] == [held, after_it]


async def test_a_rolled_back_append_is_never_read(store: Any) -> None:
    kept, dropped = uuid.uuid4(), uuid.uuid4()

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with store.transaction() as tx:
            await _append(store, dropped, tx=tx)
            raise Boom
    await _append(store, kept)
    assert [e.flow_id for e in await store.read_all()] == [kept]


async def test_artifacts_and_failures_are_read_as_their_events(store: Any) -> None:
    flow = uuid.uuid4()
    a = artifact(1)
    await _append(store, flow)
    await store.append_kind(flow, finished(outputs=(a.hash,)), artifacts=[a])
    (_, done) = await store.read_all()
    assert done.kind.outputs == (a.hash,)


async def test_concurrent_writers_are_read_in_an_order_no_commit_inserts_into(store: Any) -> None:
    """Writers commit in an order of their own (units of work held open for a random number of
    loop turns) while a reader follows: what it reads, batch after batch, is in ascending positions,
    misses nothing, and equals one read of everything at the end."""
    rng = random.Random(8)
    followed: list[Any] = []
    done = asyncio.Event()

    async def writer(n: int) -> None:
        for _ in range(6):
            async with store.transaction() as tx:
                await _append(store, uuid.uuid4(), tx=tx)
                for _ in range(rng.randrange(4)):
                    await asyncio.sleep(0)
                if rng.random() < 0.5:
                    await _append(store, uuid.uuid4(), tx=tx)

    async def reader() -> None:
        after = None
        while True:
            finished_writing = done.is_set()
            batch = await store.read_all(after, limit=5)
            followed.extend(batch)
            if batch:
                after = batch[-1].position
            elif finished_writing:
                return
            await asyncio.sleep(0)

    reading = asyncio.create_task(reader())
    await asyncio.gather(*(writer(n) for n in range(6)))
    done.set()
    await asyncio.wait_for(reading, 30)
    positions = [e.position for e in followed]
    assert positions == sorted(positions)
    assert len(set(positions)) == len(positions)
    assert followed == await store.read_all(limit=1000)


@pytest.mark.parametrize(
    "after",
    ["", "12", "1.2", "x" * 41, "0" * 20 + "." + "0" * 19 + "a", b"0" * 41, 5, 1.5, ["0"]],
)
async def test_a_malformed_position_is_refused(store: Any, after: Any) -> None:
    with pytest.raises(InvalidInputError, match="position"):
        await store.read_all(after)


@pytest.mark.parametrize("limit", [0, -1, 100_001, True, 1.0, "10", None])
async def test_a_bad_limit_is_refused(store: Any, limit: Any) -> None:
    with pytest.raises(InvalidInputError, match="limit"):
        await store.read_all(limit=limit)


def test_positions_order_as_their_pairs() -> None:
    pairs = [(0, 0), (0, 9), (0, 10), (1, 0), (9, 99), (10, 1), (2**64 - 1, 2**63 - 1)]
    positions = [Position.of(g, s) for g, s in pairs]
    assert sorted(positions) == positions
    assert [(p.group, p.seq) for p in positions] == pairs
    assert Position(str(positions[3])) == positions[3]
    for bad in [(-1, 0), (0, -1), (10**20, 0), (True, 0), (0, 1.0)]:
        with pytest.raises(InvalidInputError):
            Position.of(*bad)


async def test_a_unit_of_work_is_read_in_the_place_of_its_first_write(store: Any) -> None:
    """The order is that of the moments units of work took their commit groups (their first
    write), not of their commits: a unit of work that wrote first and appended a flow's next
    version afterwards is read before that flow's previous version."""
    flow, other = uuid.uuid4(), uuid.uuid4()
    async with store.transaction() as tx:
        opening = await _append(store, other, tx=tx)
        first = await _append(store, flow)  # commits at once, in a later group
        second = await store.append_kind(flow, finished(), expected_version=1, tx=tx)
    events = await store.read_all()
    assert [e.event_id for e in events] == [opening.event_id, second.event_id, first.event_id]
    assert events[0].position.group == events[1].position.group < events[2].position.group
