"""The engine's cache of replayed flows: a cached load equals a fresh engine's load, whatever
happened to the flow since (appends elsewhere, failures, the flow deleted and started again), and
an append that fails never leaves the cache ahead of the store."""

from __future__ import annotations

import copy
import gc
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from chem_persistence_async import (
    ConcurrencyConflict,
    Database,
    FlowDefinition,
    FlowEngine,
    FlowInstance,
    FlowNotFoundError,
    FlowRepository,
    PgEventStore,
    RetryPolicy,
    replay,
)
from chem_persistence_async.domain.failures import ErrorClass, StepExecutionError
from chem_persistence_async.domain.flow import ReceivedSignal, StepStatus
from chem_persistence_async.domain.frozen import FrozenDict, FrozenList
from chem_persistence_async.engine.flow_cache import frozen
from chem_persistence_async.engine.planner import RunStep
from chem_persistence_async.ports.event_store import AsyncEventStore
from tests.engine.flows import FailUntil, Produce, Signal
from tests.support.harness import Harness

DEFINITION = FlowDefinition(
    "cached",
    [Produce("a"), Signal("signal"), FailUntil("flaky", {"failures": 2, "kind": "transient"}), Produce("z")],
)


def _engine(store: AsyncEventStore, **options: Any) -> FlowEngine:
    return FlowEngine(
        store, FlowRepository(), DEFINITION, retry_policy=RetryPolicy(initial_delay=0.0), **options
    )


async def _fresh(store: AsyncEventStore, flow_id: uuid.UUID) -> FlowInstance:
    """The flow as an engine with no cache replays it from every event."""
    return await _engine(store, flow_cache_size=0).load(flow_id)


def _shares_slots(newer: FlowInstance, older: FlowInstance) -> bool:
    """Whether ``newer`` was extended from ``older`` (its untouched slots the very same objects)
    rather than replayed from the start; pending slots are shared by every replay)."""
    return any(a is b for a, b in zip(newer.steps, older.steps, strict=True) if a.attempts)


async def test_a_cached_load_extends_what_another_engine_appended(store: AsyncEventStore) -> None:
    engine, other = _engine(store), _engine(store)
    flow_id = await engine.start(inputs={"n": [1, 2]})
    await engine.run_next(flow_id)
    before = await engine.load(flow_id)
    for _ in range(4):  # the signal, then the flaky step failing twice (error rows), then passing
        await other.run_next(flow_id)
        loaded = await engine.load(flow_id)
        assert loaded == await _fresh(store, flow_id)
        assert _shares_slots(loaded, before)
        before = loaded
    assert [len(slot.errors) for slot in loaded.steps] == [0, 0, 2, 0]
    await other.run_to_end(flow_id)
    assert (await engine.load(flow_id)).completed


async def test_a_cached_load_sees_another_database_appends(db: Database, db_url: str) -> None:
    engine = _engine(PgEventStore(db))
    flow_id = await engine.start()
    await engine.run_next(flow_id)
    await engine.load(flow_id)
    async with Database.connect(db_url) as elsewhere:
        await _engine(PgEventStore(elsewhere)).run_to_end(flow_id)
    loaded = await engine.load(flow_id)
    assert loaded.completed
    assert loaded == await _fresh(PgEventStore(db), flow_id)


@pytest.mark.parametrize("recorded", [False, True], ids=["plain", "with-records"])
async def test_after_its_own_commits_a_load_is_the_state_the_commit_returned(
    store: AsyncEventStore, harness: Harness, recorded: bool
) -> None:
    """Whichever way the append went (records carried in it, or none), what the engine returned
    and then loads equals a fresh replay."""
    engine = _engine(store, records=harness.records() if recorded else None)
    flow_id = await engine.start()
    await engine.load(flow_id)
    while not (instance := await engine.run_next(flow_id)).completed:
        assert await engine.load(flow_id) is instance  # nothing read back
        assert instance == await _fresh(store, flow_id)
    assert await engine.load(flow_id) is instance
    assert instance == await _fresh(store, flow_id)
    assert [len(slot.errors) for slot in instance.steps] == [0, 0, 2, 0]


async def test_a_conflicting_append_leaves_the_cache_where_the_store_is(store: AsyncEventStore) -> None:
    engine, other = _engine(store), _engine(store)
    flow_id = await engine.start()
    stale = await engine.load(flow_id)
    action = engine.plan(stale)
    assert isinstance(action, RunStep)
    await other.run_next(flow_id)
    with pytest.raises(ConcurrencyConflict):
        await engine.begin(stale, action)
    assert await engine.load(flow_id) == await _fresh(store, flow_id)


async def test_an_append_rolled_back_leaves_the_cache_where_the_store_is(store: AsyncEventStore) -> None:
    engine = _engine(store)
    flow_id = await engine.start()
    held = await engine.load(flow_id)
    action = engine.plan(held)
    assert isinstance(action, RunStep)
    with pytest.raises(RuntimeError, match="undone"):
        async with store.transaction() as tx:
            attempt = await engine.begin(held, action, tx=tx)
            assert attempt.instance.version == held.version + 1
            raise RuntimeError("undone")
    assert await engine.load(flow_id) is held
    assert held == await _fresh(store, flow_id)
    async with store.transaction() as tx:
        attempt = await engine.begin(held, action, tx=tx)
        assert engine._flows.get(flow_id).instance is held  # type: ignore[union-attr]  # (not yet)
    assert await engine.load(flow_id) is attempt.instance
    assert attempt.instance == await _fresh(store, flow_id)


async def test_a_load_in_a_unit_of_work_is_kept_only_once_it_commits(store: AsyncEventStore) -> None:
    engine, other = _engine(store), _engine(store)
    flow_id = await engine.start()
    held = await engine.load(flow_id)
    await other.run_next(flow_id)
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            await engine.load(flow_id, tx=tx)
            raise RuntimeError
    assert engine._flows.get(flow_id) is not None
    assert engine._flows.get(flow_id).instance is held  # type: ignore[union-attr]
    async with store.transaction() as tx:
        inside = await engine.load(flow_id, tx=tx)
    assert await engine.load(flow_id) is inside
    assert inside == await _fresh(store, flow_id)


async def test_a_batch_read_record_extends_the_cached_state(store: AsyncEventStore) -> None:
    """A worker loads from its claim's ``read_flows``: only the events after the cached mark are
    replayed."""
    engine, other = _engine(store), _engine(store)
    flow_id = await engine.start()
    await engine.run_next(flow_id)
    held = await engine.load(flow_id)
    await other.run_next(flow_id)
    await other.run_next(flow_id)
    record = (await store.read_flows([flow_id]))[flow_id]
    loaded = await engine.load(flow_id, record=record)
    assert loaded == await _fresh(store, flow_id)
    assert _shares_slots(loaded, held)


async def test_the_least_recently_used_flow_is_evicted(store: AsyncEventStore) -> None:
    engine = _engine(store, flow_cache_size=2)
    flows = [await engine.start() for _ in range(3)]
    first = await engine.load(flows[0])
    await engine.load(flows[1])
    await engine.load(flows[0])
    await engine.load(flows[2])  # evicts flows[1], the least recently used
    assert len(engine._flows) == 2
    assert engine._flows.get(flows[1]) is None
    assert await engine.load(flows[0]) is first
    again = await engine.load(flows[1])
    assert again == await _fresh(store, flows[1])


async def test_with_the_cache_disabled_every_load_replays(store: AsyncEventStore) -> None:
    engine = _engine(store, flow_cache_size=0)
    flow_id = await engine.start(inputs={"n": 1})
    one, two = await engine.load(flow_id), await engine.load(flow_id)
    assert one == two
    assert one is not two
    assert len(engine._flows) == 0
    assert type(one.inputs) is dict  # plain, the caller's to change


@pytest.mark.parametrize("size", [-1, 1.5, True])
def test_a_cache_size_must_be_a_count(store: AsyncEventStore, size: Any) -> None:
    with pytest.raises(Exception, match="flow_cache_size"):
        _engine(store, flow_cache_size=size)


async def test_what_a_load_hands_out_cannot_be_changed_in_place(store: AsyncEventStore) -> None:
    engine = _engine(store)
    flow_id = await engine.start(inputs={"n": [1, {"m": 2}]})
    await engine.run_to_end(flow_id)
    loaded = await engine.load(flow_id)
    error = loaded.steps[2].errors[0]
    assert error.details is not None
    for change in (
        lambda: loaded.inputs.__setitem__("x", 1),  # type: ignore[index]
        lambda: loaded.inputs["n"].append(3),
        lambda: loaded.inputs["n"][1].update(m=3),
        lambda: error.details.pop("params"),  # type: ignore[union-attr]
        lambda: loaded.signals[0][2]["a"].append(1),
    ):
        with pytest.raises(TypeError, match="read-only"):
            change()
    assert type(loaded.inputs) is FrozenDict
    mine = copy.deepcopy(dict(loaded.inputs))
    mine["n"].append(3)  # a copy is the caller's
    assert loaded == await _fresh(store, flow_id)
    assert await engine.load(flow_id) is loaded


async def test_a_flow_deleted_is_not_served_from_the_cache(db: Database, conn: asyncpg.Connection) -> None:
    engine = _engine(PgEventStore(db))
    flow_id = await engine.run_to_end()
    await engine.load(flow_id)
    await _delete(conn, flow_id)
    with pytest.raises(FlowNotFoundError):
        await engine.load(flow_id)
    assert engine._flows.get(flow_id) is None


@pytest.mark.parametrize("steps", [0, 3, None], ids=["shorter", "same-length-mid", "whole-again"])
async def test_a_flow_deleted_and_started_again_is_replayed_anew(
    db: Database, conn: asyncpg.Connection, steps: int | None
) -> None:
    """Started again under the same id, to fewer events, or to as many (the same kinds, the same
    versions: only event ids, sequence numbers and times differ)."""
    store = PgEventStore(db)
    engine = _engine(store)
    flow_id = await engine.start()
    for _ in range(3):
        await engine.run_next(flow_id)
    held = await engine.load(flow_id)
    if steps is None:
        await engine.run_to_end(flow_id)
        held = await engine.load(flow_id)
    await _delete(conn, flow_id)
    other = _engine(PgEventStore(db))
    await other.start(flow_id=flow_id)
    for _ in range(3 if steps is None else steps):
        await other.run_next(flow_id)
    if steps is None:
        await other.run_to_end(flow_id)
    loaded = await engine.load(flow_id)
    assert loaded == await _fresh(store, flow_id)
    assert loaded != held
    assert not _shares_slots(loaded, held) or steps == 0


async def _delete(conn: asyncpg.Connection, flow_id: uuid.UUID) -> None:
    """Delete a flow behind the library's back (its append-only triggers off for this session)."""
    await conn.execute("SET session_replication_role = replica")
    await conn.execute("DELETE FROM step_execution_errors WHERE flow_id = $1", flow_id)
    await conn.execute("DELETE FROM event_log WHERE flow_id = $1", flow_id)
    await conn.execute("SET session_replication_role = DEFAULT")


def test_freezing_takes_what_the_state_it_extends_froze_already() -> None:
    fid = uuid.uuid4()
    signal = ReceivedSignal("go", {"k": [1]}, "send-1", 0, 2)
    before = replace(
        replay(fid, [], DEFINITION), inputs={"n": [1]}, received=(signal,), signals=(("a", "go", [1]),)
    )
    cold = frozen(before, None)
    assert cold == before
    assert all(type(v) is not dict and type(v) is not list for v in (cold.inputs, cold.received[0].data))
    assert type(cold.signals[0][2]) is not list
    later = ReceivedSignal("go", {"k": [2]}, "send-2", 0, 3)
    after = replace(cold, received=(*cold.received, later), signals=(*cold.signals, ("a", "go", {"x": 1})))
    warm = frozen(after, cold)
    assert warm.received[0] is cold.received[0]
    assert warm.signals[0] is cold.signals[0]
    assert warm.inputs is cold.inputs
    with pytest.raises(TypeError, match="read-only"):
        warm.received[1].data["k"].append(3)
    with pytest.raises(TypeError, match="read-only"):
        warm.signals[1][2]["y"] = 2
    # Not an extension of the frozen state (its first signal replaced): each one is looked at.
    other = replace(after, signals=(("a", "go", [7]), *after.signals[1:]))
    mixed = frozen(other, cold)
    assert mixed.signals == other.signals
    assert [type(signal[2]) for signal in mixed.signals] == [FrozenList, FrozenDict]


def test_freezing_an_append_that_brings_nothing_to_freeze_is_the_state_itself() -> None:
    """An engine's append of a step's start or finish shares every tuple but the changed slot's
    with the state it extends: nothing is copied. A changed slot with a new error still has its
    details frozen, and a slot of another length of steps is looked at whole."""
    fid = uuid.uuid4()
    cold = frozen(replace(replay(fid, [], DEFINITION), inputs={"n": [1]}), None)
    started = replace(cold.steps[1], status=StepStatus.RUNNING, attempts=1)
    after = replace(cold, steps=(cold.steps[0], started, *cold.steps[2:]), version=cold.version + 1)
    assert frozen(after, cold) is after

    error = StepExecutionError(
        fid, "signal", 1, ErrorClass.TRANSIENT, "boom", {"k": [1]}, 0, 3, datetime.now(UTC)
    )
    failed = replace(started, status=StepStatus.FAILED, errors=(error,))
    later = replace(after, steps=(after.steps[0], failed, *after.steps[2:]), version=after.version + 1)
    warm = frozen(later, after)
    assert warm is not later
    assert warm == later
    assert warm.steps[0] is after.steps[0]
    assert warm.inputs is after.inputs
    with pytest.raises(TypeError, match="read-only"):
        warm.steps[1].errors[0].details["k"].append(2)  # type: ignore[index]
    assert frozen(replace(later, steps=later.steps[:2]), after).steps[1].errors[0].details == {"k": [1]}
    with pytest.raises(TypeError, match="read-only"):
        frozen(replace(later, steps=later.steps[:2]), after).steps[1].errors[0].details["k"].append(2)  # type: ignore[index]


async def test_commits_that_carry_their_job_keep_the_cache(harness: Harness) -> None:
    """The worker's way: each outcome committed with the next start and the end of its job."""
    store, queue = harness.store, harness.work_queue()
    engine = _engine(store, queue=queue)
    flow_id = await engine.submit()
    for _ in range(6):
        jobs = await queue.claim("cache-test", limit=1)
        if not jobs:
            break
        instance = await engine.load(flow_id)
        action = engine.plan(instance)
        assert isinstance(action, RunStep)
        attempt = await engine.begin(instance, action)
        while attempt is not None:
            committed = await engine.commit(attempt, await engine.run_attempt(attempt), job=jobs[0])
            assert await engine.load(flow_id) is committed.instance
            assert committed.instance == await _fresh(store, flow_id)
            attempt = committed.then
    assert (await engine.load(flow_id)).completed


async def test_a_load_runs_no_collection_and_leaves_the_collector_as_it_was(
    store: AsyncEventStore, collections: list[int]
) -> None:
    """A load keeps the collector paused from its read to its freezing (each of them paused it
    alone before, and the collections they deferred fell in between), and hands it back as it
    found it: on, or switched off by someone else."""
    engine = _engine(store)
    fid = await engine.run_to_end()
    for _ in range(2):  # (each statement prepared, each module's first calls made, untimed)
        await _engine(store).load(fid)
    new = _engine(store)  # a new engine: the whole flow read and replayed
    collections.clear()
    fresh = await new.load(fid)
    assert collections == []
    assert gc.isenabled()
    gc.disable()
    try:
        assert await _engine(store).load(fid) == fresh
        assert not gc.isenabled()
    finally:
        gc.enable()
