"""Workers on both backends: flows submitted to the queue run to the end exactly once."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chem_persistence_async import (
    Artifact,
    Database,
    FlowDefinition,
    FlowEngine,
    FlowRepository,
    InMemoryEventStore,
    JobState,
    LeaseLostError,
    QueueDepth,
    RetryPolicy,
    StepContext,
    StepOutput,
    TransientDatabaseError,
    Worker,
)
from chem_persistence_async.backends.postgres.wakeup import Notifier
from chem_persistence_async.worker.flow_runner import FlowRunner, Holding
from tests.support.waiting import until
from tests.worker.flows import flaky_steps, three_steps


def _engine(backend: Any, definition: FlowDefinition, **kwargs: Any) -> FlowEngine:
    return FlowEngine(
        backend.event_store(), FlowRepository(), definition, queue=backend.work_queue(), **kwargs
    )


async def _all_done(engine: FlowEngine, flows: list[uuid.UUID]) -> bool:
    for flow in flows:
        instance = await engine.load(flow)
        if not (instance.completed or instance.failed):
            return False
    return True


async def _reference_fingerprint(definition: FlowDefinition, inputs: dict[str, Any]) -> str | None:
    """The fingerprint of the same flow run to its end in memory. Its retries wait a millisecond:
    with the default backoff, a flaky step's unlucky run waited out seconds of it (a reference
    run once took 30 s of a test)."""
    policy = RetryPolicy(max_retries=50, initial_delay=0.001, max_delay=0.001)
    engine = FlowEngine(InMemoryEventStore(), FlowRepository(), definition, retry_policy=policy)
    return await engine.flow_fingerprint(await engine.run_to_end(inputs=inputs))


async def test_submitted_flows_run_to_the_end_with_the_in_memory_fingerprints(backend: Any) -> None:
    definition = three_steps()
    engine = _engine(backend, definition)
    flows = [await engine.submit(inputs={"start": n}) for n in range(12)]
    assert (await backend.work_queue().depth()).ready == 12
    async with Worker(backend, definition, concurrency=4, poll_interval=0.05) as worker:
        await until(lambda: _all_done(engine, flows), 60, "every flow to complete")
    for n, flow in enumerate(flows):
        instance = await engine.load(flow)
        assert instance.completed
        assert instance.fingerprint == await _reference_fingerprint(definition, {"start": n})
        assert await engine.event_codes(flow) == ["I", "S", "F", "S", "F", "S", "F", "C"]
        (last,) = (await engine.store.get_artifacts(instance.steps[-1].outputs)).values()
        assert last.payload == {"total": n + 6}
    queue = backend.work_queue()
    assert await queue.depth() == QueueDepth()
    history = await queue.list_jobs(states=[JobState.COMPLETED])
    assert sorted(j.flow_id for j in history) == sorted(flows)  # one job per flow, finished once
    assert worker.stats.completed == 12
    assert worker.stats.failed == worker.stats.lost == 0


async def test_inputs_enter_the_fingerprint_and_equal_inputs_give_equal_fingerprints(backend: Any) -> None:
    definition = three_steps()
    engine = _engine(backend, definition)
    flows = [await engine.submit(inputs={"start": s}) for s in (5, 5, 6)]
    async with Worker(backend, definition, poll_interval=0.05):
        await until(lambda: _all_done(engine, flows), 60, "flows")
    prints = [await engine.flow_fingerprint(f) for f in flows]
    assert prints[0] == prints[1] != prints[2]


async def test_a_retry_not_yet_due_waits_in_the_queue_and_holds_no_worker(backend: Any) -> None:
    """The flaky step fails on its first attempt; the retry's job waits with a not-before time while
    the worker runs other flows."""
    definition = flaky_steps(p=1.0)  # every attempt of the flaky step fails...
    policy = RetryPolicy(
        max_retries=1, initial_delay=60, max_delay=600
    )  # ...and its one retry is a minute away
    engine = _engine(backend, definition, retry_policy=policy)
    flaky = await engine.submit()
    fine = [await _engine(backend, three_steps()).submit() for _ in range(3)]
    async with Worker(
        backend, [definition, three_steps()], concurrency=1, poll_interval=0.05, retry_policy=policy
    ):
        three = _engine(backend, three_steps())
        await until(lambda: _all_done(three, fine), 60, "the other flows")
        await until(
            lambda: _codes_are(engine, flaky, ["I", "S", "F", "S", "X", "R"]),
            30,
            "the flaky step to fail once",
        )
        depth = await backend.work_queue().depth()
        assert (depth.scheduled, depth.claimed) == (1, 0)  # waiting, not held
    (job,) = await backend.work_queue().list_jobs(flow_id=flaky)
    assert job.state is JobState.READY
    assert job.not_before is not None
    assert job.not_before > datetime.now(UTC) + timedelta(seconds=30)


async def _codes_are(engine: FlowEngine, flow: uuid.UUID, codes: list[str]) -> bool:
    return await engine.event_codes(flow) == codes


async def test_transient_failures_are_retried_through_the_queue(backend: Any) -> None:
    definition = flaky_steps(p=0.5)
    policy = RetryPolicy(max_retries=40, initial_delay=0.001, max_delay=0.01)
    engine = _engine(backend, definition, retry_policy=policy)
    flows = [await engine.submit(inputs={"start": 0}) for _ in range(10)]
    async with Worker(backend, definition, concurrency=5, poll_interval=0.02, retry_policy=policy):
        await until(lambda: _all_done(engine, flows), 90, "flows")
    store = backend.event_store()
    reference = await _reference_fingerprint(definition, {"start": 0})
    for flow in flows:
        instance = await engine.load(flow)
        assert instance.completed
        codes = await engine.event_codes(flow)
        assert codes.count("S") == codes.count("F") + codes.count("X")  # each attempt one outcome
        assert len(await store.list_errors(flow)) == codes.count("X")
        assert instance.fingerprint == reference


async def test_a_worker_claims_only_the_definitions_it_knows(backend: Any) -> None:
    old, new = flaky_steps(p=0.0), flaky_steps(p=0.0, sleep=0.001)  # same name, another hash
    assert old.name == new.name
    assert old.hash != new.hash
    old_flow = await _engine(backend, old).submit()
    new_flow = await _engine(backend, new).submit()
    async with Worker(backend, new, poll_interval=0.05):
        await until(lambda: _all_done(_engine(backend, new), [new_flow]), 30, "the new definition's flow")
    assert not (await _engine(backend, old).load(old_flow)).completed
    assert (await backend.work_queue().depth()).ready == 1
    assert {r.hash for r in await backend.definition_registry().list("flaky3")} == {new.hash}


# --- a worker that stalls past its lease ------------------------------------------------------------

GATES: dict[str, asyncio.Event] = {}


@dataclass(frozen=True)
class Stall:
    """Its first attempt waits at a gate the test opens; later attempts go straight through."""

    id: str = "stall"
    params: dict[str, Any] = field(default_factory=lambda: {"gate": "g"})

    async def run(self, ctx: StepContext) -> StepOutput:
        if ctx.attempt == 1:
            await GATES[str(self.params["gate"])].wait()
        return StepOutput(artifacts=(Artifact.of("stalled", {"attempt": ctx.attempt}),))


async def test_a_worker_that_stalls_past_its_lease_commits_nothing(backend: Any) -> None:
    gate = uuid.uuid4().hex
    GATES[gate] = asyncio.Event()
    definition = FlowDefinition("stall", [Stall(params={"gate": gate})])
    engine = _engine(backend, definition)
    flow = await engine.submit()
    queue = backend.work_queue()
    (job,) = await queue.claim("stalled", lease=timedelta(milliseconds=300), kinds=["flow"])
    runner = FlowRunner(backend, {engine.definition_ref: engine}, queue, lease=timedelta(milliseconds=300))
    stalled = asyncio.ensure_future(runner.run(Holding(job), lambda _: {}))  # no heartbeats: it stalls
    await until(lambda: _codes_are(engine, flow, ["I", "S"]), 10, "the stalled attempt to start")
    async with Worker(backend, definition, poll_interval=0.05) as second:
        await until(lambda: _all_done(engine, [flow]), 30, "the second worker to finish the flow")
    assert second.stats.completed == 1
    GATES[gate].set()  # the first worker wakes up and tries to commit its outcome
    with pytest.raises(LeaseLostError):
        await asyncio.wait_for(stalled, 10)
    codes = await engine.event_codes(flow)
    assert codes == ["I", "S", "X", "R", "S", "F", "C"]  # attempt 1 closed as lost, never finished
    (error,) = await backend.event_store().list_errors(flow)
    assert error.error_message.startswith("attempt lost")
    (finished,) = await queue.list_jobs(flow_id=flow)
    assert finished.state is JobState.COMPLETED


# --- graceful stop ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Slow:
    id: str = "slow"
    params: dict[str, Any] = field(default_factory=lambda: {"gate": "s"})

    async def run(self, ctx: StepContext) -> StepOutput:
        STARTED.set()
        if ctx.attempt == 1:
            await asyncio.sleep(3600)
        return StepOutput(artifacts=(Artifact.of("slow", {"attempt": ctx.attempt}),))


STARTED = asyncio.Event()


async def test_a_graceful_stop_closes_the_running_attempt_and_releases_its_job(backend: Any) -> None:
    STARTED.clear()
    definition = FlowDefinition("slow", [Slow()])
    engine = _engine(backend, definition)
    flow = await engine.submit()
    worker = Worker(backend, definition, poll_interval=0.05, grace=0.1, lease=timedelta(minutes=10))
    async with worker:
        await asyncio.wait_for(STARTED.wait(), 10)
    assert worker.stats.interrupted == 1
    assert await backend.work_queue().depth() == QueueDepth(ready=1)  # released, ready now
    assert await engine.event_codes(flow) == ["I", "S", "X", "R"]
    (error,) = await backend.event_store().list_errors(flow)
    assert "interrupted" in (error.error_message or "")
    async with Worker(backend, definition, poll_interval=0.05):  # taken over at once, no lease wait
        await until(lambda: _all_done(engine, [flow]), 10, "the next worker to finish it")
    assert await engine.event_codes(flow) == ["I", "S", "X", "R", "S", "F", "C"]


# --- wake-up ----------------------------------------------------------------------------------------


async def test_a_local_enqueue_wakes_an_idle_worker_at_once(backend: Any) -> None:
    definition = three_steps()
    engine = _engine(backend, definition)
    async with Worker(backend, definition, poll_interval=60) as worker:
        await until(lambda: _claimed_once(worker), 10, "the first claim")  # it found nothing: it waits 60 s
        started = time.monotonic()
        flow = await engine.submit()
        await until(lambda: _all_done(engine, [flow]), 10, "the woken worker")
        assert time.monotonic() - started < 10  # far sooner than the 60 s poll


async def test_a_notify_from_another_process_wakes_a_listening_worker(db: Database, db_url: str) -> None:
    """Another ``Database`` (its own notifier, as another process would have) submits: only the
    listener's NOTIFY can wake the worker before its 60 s poll."""
    definition = three_steps()
    async with Database.connect(db_url, min_connections=0) as other:
        other_engine = _engine(other, definition)
        async with Worker(db, definition, poll_interval=60) as worker:
            await until(lambda: _claimed_once(worker), 10, "the first claim")
            flow = await other_engine.submit()
            await until(lambda: _all_done(other_engine, [flow]), 10, "the notified worker")
            assert worker.stats.completed == 1


async def test_enqueues_in_one_window_share_one_notify() -> None:
    """The notifier itself, with a recording sender: local subscribers hear every enqueue at once,
    the database hears one NOTIFY per window, sent after it, from a task of its own."""
    sent: list[list[str]] = []
    heard: list[str] = []

    async def send(queues: list[str]) -> None:
        sent.append(queues)

    notifier = Notifier(send, window=0.05)
    notifier.subscribe(heard.append)
    for _ in range(20):
        notifier.enqueued({"default"})
    notifier.enqueued({"other", "default"})
    assert len(heard) == 22
    assert sent == []  # nothing on the write path
    await notifier.aclose()
    assert sent == [["default", "other"]]


async def _claimed_once(worker: Worker) -> bool:
    return worker.stats.claims >= 1


@pytest.mark.parametrize("read_fails", [False, True], ids=["read", "read-fails"])
async def test_the_flows_of_one_claim_are_read_in_one_read(backend: Any, read_fails: bool) -> None:
    """A claim of several flow jobs reads their flows once (``read_flows``), not once per job; a
    read that fails leaves each job to read its own flow, and every flow still runs to the end."""
    definition = three_steps()
    engine = _engine(backend, definition)
    flows = [await engine.submit(inputs={"start": n}) for n in range(6)]
    store = backend.event_store()
    calls: dict[str, list[int]] = {"read_flows": [], "read_flow": []}
    read_flows, read_flow = store.read_flows, store.read_flow

    async def counted_read_flows(flow_ids: Any, **kwargs: Any) -> Any:
        ids = list(flow_ids)
        calls["read_flows"].append(len(ids))
        if read_fails:
            raise TransientDatabaseError("the read ahead failed (injected)", reason="injected")
        return await read_flows(ids, **kwargs)

    async def counted_read_flow(flow_id: Any, **kwargs: Any) -> Any:
        calls["read_flow"].append(1)
        return await read_flow(flow_id, **kwargs)

    store.read_flows, store.read_flow = counted_read_flows, counted_read_flow
    try:
        queue = backend.work_queue()

        async def drained() -> bool:
            return bool(await queue.depth() == QueueDepth())

        async with Worker(backend, definition, concurrency=8, poll_interval=0.05):
            await until(drained, 60, "every flow's job to end")
    finally:
        del store.read_flows, store.read_flow
    assert calls["read_flows"][0] == 6, calls  # the first claim took all six
    assert len(calls["read_flow"]) == (6 if read_fails else 0), calls
    for flow in flows:
        assert (await engine.load(flow)).completed


class _Relayed:
    """A recorder no store carries (it only passes calls on): the engine writes its records, and
    the job writes with them, in a unit of work of their own instead of inside the append."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0

    async def record_flow(self, instance: Any, definition: Any, events: Any, *, tx: Any) -> None:
        self.calls += 1
        await self.inner.record_flow(instance, definition, events, tx=tx)


async def test_a_recorder_no_store_carries_still_commits_each_step_with_the_jobs_end(backend: Any) -> None:
    definition = three_steps()
    recorder = _Relayed(backend.workflow_records())
    engine = _engine(backend, definition, records=recorder)
    flows = [await engine.submit(inputs={"start": n}) for n in range(4)]
    async with Worker(backend, definition, concurrency=4, poll_interval=0.05, records=recorder) as worker:
        await until(lambda: _all_done(engine, flows), 60, "every flow to complete")
    assert worker.stats.completed == 4
    assert recorder.calls >= 4 * 5  # every append recorded: the submit's, then the steps'
    queue = backend.work_queue()
    assert await queue.depth() == QueueDepth()
    history = await queue.list_jobs(states=[JobState.COMPLETED])
    assert sorted(j.flow_id for j in history) == sorted(flows)
    records = backend.workflow_records()
    for flow in flows:
        run = await records.get_run(flow)
        assert run is not None
        assert run.status.value == "COMPLETED"
        assert [s.status.value for s in await records.get_stages_by_run(flow)] == ["COMPLETED"] * 3
