"""The ``AsyncEventStore`` contract, run unchanged against every backend (``store`` fixture)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from chem_persistence_async import (
    ConcurrencyConflict,
    ErrorClass,
    FlowEvent,
    InvalidInputError,
    MissingArtifactError,
    StepSignal,
)
from tests.factories import artifact, every_variant, failed, finished, started


async def test_every_variant_round_trips_through_the_store(store: Any) -> None:
    flow = uuid.uuid4()
    kinds = every_variant()
    outputs = [artifact(1), artifact(2)]
    written = [
        await store.append_kind(flow, kind, artifacts=outputs if kind.code == "F" else ()) for kind in kinds
    ]
    read = await store.list(flow)
    assert [e.kind for e in read] == kinds
    assert [e.kind for e in written] == kinds
    assert [(e.seq, e.flow_version, e.event_id, e.ts) for e in read] == [
        (e.seq, e.flow_version, e.event_id, e.ts) for e in written
    ]
    assert [e.code for e in read] == ["I", "S", "F", "X", "G", "P", "R", "W", "C"]
    assert all(isinstance(e, FlowEvent) and e.flow_id == flow for e in read)
    assert all(e.ts.tzinfo is not None and e.ts.utcoffset().total_seconds() == 0 for e in read)


async def test_store_is_kind_agnostic_no_initialization_needed(store: Any) -> None:
    flow = uuid.uuid4()
    event = await store.append_kind(flow, finished())
    assert event.flow_version == 1
    assert await store.flow_version(flow) == 1


async def test_flow_version_is_gap_free_and_seq_increases(store: Any) -> None:
    flows = [uuid.uuid4() for _ in range(3)]
    for round_ in range(5):
        for flow in flows:
            await store.append_kind(flow, started(attempt=round_ + 1))
    seqs: list[int] = []
    for flow in flows:
        events = await store.list(flow)
        assert [e.flow_version for e in events] == [1, 2, 3, 4, 5]
        assert [e.seq for e in events] == sorted(e.seq for e in events)
        seqs.extend(e.seq for e in events)
    assert len(set(seqs)) == 15


async def test_string_flow_id_is_accepted_and_means_the_same_flow(store: Any) -> None:
    flow = uuid.uuid4()
    await store.append_kind(str(flow), started())
    await store.append_kind(flow, started(attempt=2))
    assert [e.flow_version for e in await store.list(str(flow))] == [1, 2]


async def test_expected_version_accepts_the_current_version(store: Any) -> None:
    flow = uuid.uuid4()
    first = await store.append_kind(flow, started(), expected_version=0)
    second = await store.append_kind(flow, finished(), expected_version=1)
    assert (first.flow_version, second.flow_version) == (1, 2)


@pytest.mark.parametrize("expected", [0, 2, 5])
async def test_expected_version_mismatch_raises_and_writes_nothing(store: Any, expected: int) -> None:
    flow = uuid.uuid4()
    await store.append_kind(flow, started())
    with pytest.raises(ConcurrencyConflict) as info:
        await store.append_kind(flow, finished(), expected_version=expected)
    assert info.value.flow_id == flow
    assert info.value.expected_version == expected
    assert [e.flow_version for e in await store.list(flow)] == [1]


async def test_append_many_is_one_unit_with_consecutive_versions(store: Any) -> None:
    flow = uuid.uuid4()
    await store.append_kind(flow, started())
    events = await store.append_many(
        flow, [finished(), started(1, "s1"), finished(1, "s1")], expected_version=1
    )
    assert [e.flow_version for e in events] == [2, 3, 4]
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    assert await store.list(flow) == [*(await store.list(flow))[:1], *events]


async def test_append_many_conflict_writes_none_of_the_batch(store: Any) -> None:
    flow = uuid.uuid4()
    await store.append_kind(flow, started())
    with pytest.raises(ConcurrencyConflict):
        await store.append_many(flow, [finished(), started(1, "s1")], expected_version=0)
    assert len(await store.list(flow)) == 1


async def test_append_many_of_nothing_writes_nothing(store: Any) -> None:
    flow = uuid.uuid4()
    assert await store.append_many(flow, []) == []
    assert await store.list(flow) == []


async def test_same_event_id_twice_is_stored_once(store: Any) -> None:
    flow = uuid.uuid4()
    event_id = uuid.uuid4()
    a = artifact(3)
    first = await store.append_kind(flow, finished(outputs=(a.hash,)), artifacts=[a], event_id=event_id)
    again = await store.append_kind(flow, finished(outputs=(a.hash,)), artifacts=[a], event_id=event_id)
    assert again.seq == first.seq
    assert again.flow_version == first.flow_version
    assert len(await store.list(flow)) == 1
    assert (await store.get_artifacts([a.hash]))[a.hash] == a


async def test_retried_append_with_stale_expected_version_returns_the_stored_event(store: Any) -> None:
    """A retry after a lost acknowledgement carries the old expected_version: it must not conflict."""
    flow = uuid.uuid4()
    ids = [uuid.uuid4(), uuid.uuid4()]
    first = await store.append_many(flow, [failed(), started(attempt=2)], expected_version=0, event_ids=ids)
    again = await store.append_many(flow, [failed(), started(attempt=2)], expected_version=0, event_ids=ids)
    assert [e.seq for e in again] == [e.seq for e in first]
    assert len(await store.list(flow)) == 2
    assert len(await store.list_errors(flow)) == 1


async def test_step_finished_writes_its_artifacts_and_they_read_back(store: Any) -> None:
    flow = uuid.uuid4()
    a, b = artifact(2), artifact(5, kind="other")
    await store.append_kind(flow, finished(outputs=(a.hash, b.hash)), artifacts=[a, b])
    stored = await store.get_artifacts([a.hash, b.hash, "f" * 64])
    assert stored == {a.hash: a, b.hash: b}


async def test_outputs_may_name_an_artifact_already_stored(store: Any) -> None:
    flow = uuid.uuid4()
    a = artifact(4)
    await store.append_kind(flow, finished(outputs=(a.hash,)), artifacts=[a])
    second = await store.append_kind(uuid.uuid4(), finished(outputs=(a.hash,)))
    assert second.kind.outputs == (a.hash,)


async def test_outputs_naming_an_unknown_artifact_are_rejected(store: Any) -> None:
    flow = uuid.uuid4()
    with pytest.raises(MissingArtifactError):
        await store.append_kind(flow, finished(outputs=(artifact(9).hash,)))
    assert await store.list(flow) == []


async def test_the_same_artifact_twice_is_stored_once_first_producer_kept(store: Any) -> None:
    a = artifact(7)
    one = await store.append_kind(uuid.uuid4(), finished(outputs=(a.hash,)), artifacts=[a])
    await store.append_kind(uuid.uuid4(), finished(outputs=(a.hash,)), artifacts=[a])
    assert (await store.get_artifacts([a.hash]))[a.hash] == a
    if hasattr(store, "database"):
        async with store.database.acquire() as conn:
            rows = await conn.fetch(
                "SELECT produced_in_seq FROM workflow_step_artifacts WHERE artifact_hash = $1", a.hash
            )
        assert [r[0] for r in rows] == [one.seq]


async def test_step_failed_writes_one_error_row_with_its_event(store: Any) -> None:
    flow = uuid.uuid4()
    event = await store.append_kind(flow, failed(attempt=2, retry_count=1, error_class=ErrorClass.RUNTIME))
    (row,) = await store.list_errors(flow)
    assert (row.flow_id, row.step_id, row.attempt_number, row.error_class) == (
        flow,
        "s0",
        2,
        ErrorClass.RUNTIME,
    )
    assert (row.retry_count, row.max_retries, row.error_message) == (1, 3, "boom 2")
    assert row.details == {"stack_trace": "tb", "input_hash": "a" * 64, "params": {}}
    assert row.event_seq == event.seq
    assert row.ts == event.ts


async def test_error_queries_filter_order_and_count(store: Any) -> None:
    flow, other = uuid.uuid4(), uuid.uuid4()
    await store.append_kind(flow, failed(0, "s0", attempt=1))
    await store.append_kind(flow, failed(1, "s1", attempt=1, error_class=ErrorClass.VALIDATION))
    await store.append_kind(flow, failed(0, "s0", attempt=2, retry_count=1))
    await store.append_kind(flow, failed(0, "s0", attempt=3, retry_count=2, error_class=ErrorClass.RUNTIME))
    await store.append_kind(other, failed(0, "s0", attempt=1))
    assert [(e.step_id, e.attempt_number) for e in await store.list_errors(flow)] == [
        ("s0", 1),
        ("s1", 1),
        ("s0", 2),
        ("s0", 3),
    ]
    assert [e.attempt_number for e in await store.list_errors(flow, "s0")] == [1, 2, 3]
    timeline = await store.get_error_timeline(flow)
    assert [(e.attempt_number, e.step_id) for e in timeline] == [(1, "s0"), (1, "s1"), (2, "s0"), (3, "s0")]
    assert await store.count_errors_by_flow(flow) == {
        "s0": {"transient": 2, "runtime": 1},
        "s1": {"validation": 1},
    }
    assert await store.count_errors_by_flow(uuid.uuid4()) == {}


async def test_stream_yields_what_list_returns_in_batches(store: Any) -> None:
    flow = uuid.uuid4()
    await store.append_many(flow, [started(attempt=i + 1) for i in range(25)])
    streamed = [event async for event in store.stream(flow, batch_size=7)]
    assert streamed == await store.list(flow)
    assert [e.flow_version for e in streamed] == list(range(1, 26))


async def test_json_is_canonicalised_the_same_on_every_backend(store: Any) -> None:
    """What JSONB would change (key order, big floats) reads back the same from every backend."""
    flow = uuid.uuid4()
    data = {"b": 1, "a": {"z": 1e20, "y": 0.1, "x": [1.5, -0.0, 12345678901234567890]}, "ü": "ñ"}
    await store.append_kind(flow, StepSignal(step_index=0, step_id="s0", signal="x", data=data))
    (event,) = await store.list(flow)
    assert event.kind.data == {
        "a": {"x": [1.5, -0.0, 12345678901234567890], "y": 0.1, "z": 100000000000000000000},
        "b": 1,
        "ü": "ñ",
    }
    assert isinstance(event.kind.data["a"]["z"], int)


async def test_concurrent_appends_to_one_flow_without_expected_version_never_collide(store: Any) -> None:
    flow = uuid.uuid4()
    await asyncio.gather(*(store.append_kind(flow, started(attempt=i + 1)) for i in range(40)))
    events = await store.list(flow)
    assert [e.flow_version for e in events] == list(range(1, 41))
    assert sorted(e.kind.attempt for e in events) == list(range(1, 41))


async def test_concurrent_writers_with_expected_version_exactly_one_wins(store: Any) -> None:
    flow = uuid.uuid4()
    await store.append_kind(flow, started())
    results = await asyncio.gather(
        *(store.append_kind(flow, finished(), expected_version=1) for _ in range(10)), return_exceptions=True
    )
    winners = [r for r in results if isinstance(r, FlowEvent)]
    assert len(winners) == 1
    assert all(isinstance(r, ConcurrencyConflict) for r in results if r not in winners)
    assert [e.flow_version for e in await store.list(flow)] == [1, 2]


async def test_artifacts_storage_can_be_turned_off(make_store: Any) -> None:
    store = make_store(store_artifacts=False)
    a = artifact(3)
    flow = uuid.uuid4()
    await store.append_kind(flow, finished(outputs=(a.hash,)), artifacts=[a])
    await store.append_kind(flow, finished(outputs=(artifact(8).hash,)))
    assert await store.get_artifacts([a.hash]) == {}
    assert len(await store.list(flow)) == 2


async def test_read_flows_reads_each_flow_as_read_flow_does(store: Any) -> None:
    """A claimed batch's flows in one read: each record equals ``read_flow``'s, events and error
    rows alike; a flow with no events gives an empty record; ids are read once each."""
    a, b, empty = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await store.append_many(a, [started(), failed(attempt=1), started(attempt=2), finished()])
    await store.append_many(b, [started(), failed(attempt=1), failed(attempt=2)])
    records = await store.read_flows([b, str(a), empty, b])
    assert list(records) == [b, a, empty]
    for flow in (a, b):
        one = await store.read_flow(flow)
        assert records[flow].events == one.events
        assert records[flow].errors == one.errors
    assert [len(records[f].errors) for f in (a, b)] == [1, 2]
    assert (records[empty].events, records[empty].errors) == ([], [])
    assert await store.read_flows([]) == {}


@pytest.mark.parametrize(
    "bad", ["not-a-uuid-list", uuid.uuid4(), 42, [object()]], ids=["str", "uuid", "int", "obj"]
)
async def test_read_flows_refuses_what_is_not_a_list_of_flow_ids(store: Any, bad: Any) -> None:
    with pytest.raises(InvalidInputError):
        await store.read_flows(bad)
