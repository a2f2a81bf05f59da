"""Records kept by a subscription (``RecordsFollower``) instead of in the appends' transactions:
the same rows, caught up a batch behind. Both backends."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from chem_persistence_async import (
    FlowEngine,
    FlowRepository,
    RecordsFollower,
    RetryPolicy,
    Status,
    Subscriptions,
    rebuild_records,
    replay,
)
from chem_persistence_async.ports.backend import Backend
from tests.engine.flows import flaky_definition
from tests.engine.test_records import _snapshot
from tests.support.harness import Harness
from tests.worker.flows import three_steps

FAST = RetryPolicy(max_retries=3, initial_delay=0.0)

DEFINITIONS = [
    three_steps(),
    flaky_definition(failures=1),  # one retry, then done
    flaky_definition(failures=9, kind="permanent"),  # failed for good at once
    flaky_definition(failures=9, kind="transient"),  # retries run out
]


async def _run_flows(backend: Backend, count: int, *, records: Any = None) -> list[uuid.UUID]:
    store = backend.event_store()
    engines = [
        FlowEngine(store, FlowRepository(), d, records=records, retry_policy=FAST) for d in DEFINITIONS
    ]
    flows: list[uuid.UUID] = []
    for chunk in range(0, count, 10):
        flows += await asyncio.gather(
            *(
                engines[n % len(engines)].run_to_end(inputs={"n": n})
                for n in range(chunk, min(chunk + 10, count))
            )
        )
    return flows


async def test_a_follower_writes_the_records_the_appends_would_have(backend: Backend) -> None:
    records = backend.workflow_records()
    flows = await _run_flows(backend, 40, records=records)
    in_append = await _snapshot(records, flows)
    for fid in flows:
        assert await records.delete_run(fid)

    follower = RecordsFollower(backend.event_store(), records, definitions=DEFINITIONS)
    await Subscriptions(backend).catch_up("records", follower, batch_size=50)
    assert await _snapshot(records, flows) == in_append
    assert follower.report.rebuilt == follower.report.flows
    assert follower.report.rebuilt >= len(flows)


async def test_a_follower_running_beside_the_engines_catches_up_to_the_log(backend: Backend) -> None:
    records = backend.workflow_records()
    follower = RecordsFollower(backend.event_store(), records, definitions=DEFINITIONS)
    subs = Subscriptions(backend, poll_interval=0.01)
    stop = asyncio.Event()
    following = asyncio.create_task(subs.run("records", follower, batch_size=7, stop=stop))
    try:
        flows = await _run_flows(backend, 40)
    finally:
        stop.set()
        await asyncio.wait_for(following, 30)
    await subs.catch_up("records", follower)
    followed = await _snapshot(records, flows)
    statuses = [followed[f][0]["status"] for f in flows]
    assert statuses.count(Status.COMPLETED) == statuses.count(Status.FAILED) == 20
    store = backend.event_store()
    for fid in flows:
        assert followed[fid][0]["flow_version"] == await store.flow_version(fid)
    report = await rebuild_records(store, records, definitions=DEFINITIONS)
    assert report.rebuilt == len(flows)
    assert await _snapshot(records, flows) == followed


async def test_flows_of_an_unknown_definition_are_left_and_named(backend: Backend) -> None:
    records = backend.workflow_records()
    known, unknown = DEFINITIONS[0], DEFINITIONS[1]
    flows = await _run_flows(backend, 2)  # one of each
    follower = RecordsFollower(backend.event_store(), records, definitions=[known])
    await Subscriptions(backend).catch_up("records", follower)
    assert await records.get_run(flows[0]) is not None
    assert await records.get_run(flows[1]) is None
    assert follower.report.unknown_definitions == {f"{unknown.name}@{unknown.hash}"}


async def test_a_definition_registered_later_is_read_from_the_registry(backend: Backend) -> None:
    records, registry = backend.workflow_records(), backend.definition_registry()
    definition = DEFINITIONS[0]
    follower = RecordsFollower(backend.event_store(), records, registry=registry)
    subs = Subscriptions(backend)
    await subs.catch_up("records", follower)  # nothing yet: the registry is read empty
    await registry.register(definition)
    (fid,) = await _run_flows(backend, 1)
    await subs.catch_up("records", follower)
    run = await records.get_run(fid)
    assert run is not None
    assert run.status == Status.COMPLETED


async def test_rebuild_flows_leaves_records_of_a_later_version(backend: Backend) -> None:
    records, store = backend.workflow_records(), backend.event_store()
    definition = DEFINITIONS[0]
    engine = FlowEngine(store, FlowRepository(), definition, records=records)
    flows = [await engine.run_to_end(), await engine.run_to_end()]
    recorded = await _snapshot(records, flows)
    older, whole = await store.list(flows[0]), await store.list(flows[1])
    older = older[:3]
    items = [
        (replay(fid, events, definition), definition, events)
        for fid, events in zip(flows, (older, whole), strict=True)
    ]
    assert await records.rebuild_flows(items) == [False, True]
    assert await _snapshot(records, flows) == recorded
    assert await records.rebuild_flows([]) == []


async def test_a_batch_seen_again_writes_no_row_again(harness: Harness, backend: Backend) -> None:
    """A follower reset to read the log again finds every run equal to its projection: no run or
    stage row gets a new version (``xmin`` unchanged)."""
    harness.require("sql")
    records = backend.workflow_records()
    follower = RecordsFollower(backend.event_store(), records, definitions=DEFINITIONS)
    subs = Subscriptions(backend)
    await _run_flows(backend, 20)
    await subs.catch_up("records", follower)
    conn = harness.conn  # type: ignore[attr-defined]
    versions = "SELECT array_agg(xmin::text ORDER BY id) FROM {}"
    before = [await conn.fetchval(versions.format(t)) for t in ("workflow_runs", "workflow_stages")]
    await subs.reset("records")
    await subs.catch_up("records", follower)
    assert [await conn.fetchval(versions.format(t)) for t in ("workflow_runs", "workflow_stages")] == before
