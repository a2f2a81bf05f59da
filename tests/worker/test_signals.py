"""Signals, timers and suspension (SPEC 8.3), with and without workers, on both backends."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import uuid
from datetime import timedelta
from typing import Any

import pytest

from chem_persistence_async import (
    FlowEngine,
    FlowFinishedError,
    FlowNotFoundError,
    FlowRepository,
    InMemoryBackend,
    InvalidInputError,
    JobState,
    QueueDepth,
    StepStatus,
    UnstorableValueError,
    Worker,
)
from tests.support.waiting import until
from tests.worker.signal_flows import approval, approval_with_timeout, timer


def _engine(backend: Any, definition: Any) -> FlowEngine:
    return FlowEngine(backend.event_store(), FlowRepository(), definition, queue=backend.work_queue())


async def _reference(definition: Any, signals: list[tuple[str, Any]], inputs: dict[str, Any]) -> str | None:
    """The fingerprint of the same flow run in memory, with no worker, the same signals delivered."""
    reference = _engine(InMemoryBackend(), definition)
    flow = await reference.start(inputs=inputs)
    for name, data in signals:
        await reference.signal(flow, name, data)
    await reference.run_to_end(flow)
    return await reference.flow_fingerprint(flow)


# --- without workers: run_to_end returns on suspension, run_next resumes -----------------------------


async def test_run_to_end_returns_on_suspension_and_a_signal_lets_it_go_on(backend: Any) -> None:
    engine = _engine(backend, approval())
    flow = await engine.start(inputs={"order": 7})
    await engine.run_to_end(flow)
    waiting = await engine.load(flow)
    assert waiting.suspended
    assert not waiting.completed
    slot = waiting.steps[1]
    assert (slot.status, slot.waiting_for, slot.suspended_until) == (StepStatus.SUSPENDED, "approve", None)
    assert await engine.event_codes(flow) == ["I", "S", "F", "S", "W"]
    assert (await engine.run_next(flow)).suspended  # nothing to do yet: returned as it is
    send_id = await engine.signal(flow, "approve", {"by": "ada"})
    after = await engine.run_next(flow)  # delivers the signal, then runs the step again
    assert after.steps[1].status is StepStatus.FINISHED
    await engine.run_to_end(flow)
    assert await engine.event_codes(flow) == ["I", "S", "F", "S", "W", "G", "S", "F", "S", "F", "C"]
    assert [(s.name, s.data, s.send_id) for s in (await engine.load(flow)).received] == [
        ("approve", {"by": "ada"}, send_id)
    ]
    assert await engine.flow_fingerprint(flow) == await _reference(
        approval(), [("approve", {"by": "ada"})], {"order": 7}
    )


async def test_a_signal_sent_before_the_step_runs_is_seen_at_once(backend: Any) -> None:
    engine = _engine(backend, approval())
    flow = await engine.start(inputs={"order": 1})
    await engine.signal(flow, "approve", True)
    await engine.run_to_end(flow)
    assert await engine.event_codes(flow) == ["I", "G", "S", "F", "S", "F", "S", "F", "C"]


async def test_the_same_send_id_twice_is_delivered_once(backend: Any) -> None:
    engine = _engine(backend, approval())
    flow = await engine.start()
    await engine.run_to_end(flow)
    assert await engine.signal(flow, "approve", 1, send_id="sig-1") == "sig-1"
    assert await engine.signal(flow, "approve", 1, send_id="sig-1") == "sig-1"  # still queued: one job
    await engine.run_to_end(flow)
    assert await engine.event_codes(flow) == ["I", "S", "F", "S", "W", "G", "S", "F", "S", "F", "C"]


async def test_a_signal_resent_after_delivery_is_not_stored_twice(backend: Any) -> None:
    engine = _engine(backend, approval())
    flow = await engine.start()
    await engine.run_to_end(flow)
    await engine.signal(flow, "approve", 1, send_id="again")
    await engine.deliver_due_signals(flow)
    await engine.signal(flow, "approve", 1, send_id="again")  # its job finished: a new job...
    await engine.deliver_due_signals(flow)  # ...whose delivery finds the signal stored
    assert (await engine.event_codes(flow)).count("G") == 1


async def test_a_cancelled_delayed_signal_is_never_delivered(backend: Any) -> None:
    engine = _engine(backend, approval())
    flow = await engine.start()
    await engine.run_to_end(flow)
    send = await engine.signal(flow, "approve", "late", delay=timedelta(milliseconds=200))
    assert await engine.cancel_signal(flow, send)
    assert not await engine.cancel_signal(flow, send)
    await asyncio.sleep(0.3)  # past the delay: a delivered one would be due by now
    assert await engine.deliver_due_signals(flow) == 0
    assert (await engine.load(flow)).suspended
    (job,) = [j for j in await backend.work_queue().list_jobs(flow_id=flow) if j.kind == "signal"]
    assert job.state is JobState.CANCELLED


async def test_a_delayed_signal_waits_for_its_time(backend: Any) -> None:
    engine = _engine(backend, approval())
    flow = await engine.start()
    await engine.run_to_end(flow)
    await engine.signal(flow, "approve", "ok", delay=timedelta(milliseconds=300))
    assert await engine.deliver_due_signals(flow) == 0
    await until(lambda: _delivered(engine, flow), 10, "the delayed signal")
    await engine.run_to_end(flow)
    assert (await engine.load(flow)).completed


async def _delivered(engine: FlowEngine, flow: uuid.UUID) -> bool:
    return await engine.deliver_due_signals(flow) == 1


async def test_a_timer_resumes_the_flow_whichever_comes_first(backend: Any) -> None:
    engine = _engine(backend, approval_with_timeout(0.2))
    flow = await engine.start()
    await engine.run_to_end(flow)
    assert (await engine.load(flow)).steps[1].suspended_until is not None
    await asyncio.sleep(0.25)
    await engine.run_to_end(flow)  # the time came first: it goes on unapproved
    assert (await engine.load(flow)).completed
    with pytest.raises(FlowFinishedError):
        await engine.signal(flow, "approve", "too late")


async def test_bad_signals_are_refused_and_nothing_is_written(backend: Any) -> None:
    engine = _engine(backend, approval())
    with pytest.raises(FlowNotFoundError):
        await engine.signal(uuid.uuid4(), "approve")
    flow = await engine.start()
    for name in ("", "a\x00b", 3):
        with pytest.raises(InvalidInputError):
            await engine.signal(flow, name)  # type: ignore[arg-type]
    with pytest.raises(UnstorableValueError):
        await engine.signal(flow, "approve", float("nan"))
    with pytest.raises(InvalidInputError):
        await engine.signal(flow, "approve", delay=timedelta(seconds=-1))
    with pytest.raises(InvalidInputError):
        await engine.signal(flow, "approve", send_id="")
    assert await backend.work_queue().depth() == QueueDepth()


# --- with workers --------------------------------------------------------------------------------


@pytest.mark.parametrize("when", ["before", "during", "after"])
async def test_workers_deliver_a_signal_sent_before_during_or_after_suspension(
    backend: Any, when: str
) -> None:
    definition = approval()
    engine = _engine(backend, definition)
    flow = await engine.submit(inputs={"order": 3})
    if when == "before":
        await engine.signal(flow, "approve", "yes")
    async with Worker(backend, definition, poll_interval=0.05):
        if when == "during":
            await engine.signal(flow, "approve", "yes")
        if when != "before":
            await until(lambda: _suspended_or_done(engine, flow), 20, "the flow to wait or finish")
        if when == "after":
            assert (await engine.load(flow)).suspended
            await engine.signal(flow, "approve", "yes")
        await until(lambda: _completed(engine, flow), 20, "the flow to complete")
    codes = await engine.event_codes(flow)
    assert codes.count("G") == 1
    assert codes.count("S") == codes.count("F") + codes.count("X") + codes.count("W")
    assert await engine.flow_fingerprint(flow) == await _reference(
        definition, [("approve", "yes")], {"order": 3}
    )
    queue = backend.work_queue()
    assert await queue.depth() == QueueDepth()
    assert {j.kind for j in await queue.list_jobs(flow_id=flow, states=[JobState.COMPLETED])} == {
        "flow",
        "signal",
    }


async def _suspended_or_done(engine: FlowEngine, flow: uuid.UUID) -> bool:
    instance = await engine.load(flow)
    return instance.suspended or instance.completed


async def _completed(engine: FlowEngine, flow: uuid.UUID) -> bool:
    return (await engine.load(flow)).completed


async def test_a_suspended_flow_holds_no_worker_and_no_job(backend: Any) -> None:
    definition = approval()
    engine = _engine(backend, definition)
    flows = [await engine.submit() for _ in range(20)]
    async with Worker(backend, definition, concurrency=2, poll_interval=0.05) as worker:
        await until(lambda: _all_suspended(engine, flows), 30, "every flow to wait")
        assert worker.running == 0
        assert await backend.work_queue().depth() == QueueDepth()  # nothing waits in the queue...
        for flow in flows:
            await engine.signal(flow, "approve", "ok")  # ...until a signal enqueues the flow again
        await until(lambda: _all_completed(engine, flows), 30, "every flow to complete")


async def _all_suspended(engine: FlowEngine, flows: list[uuid.UUID]) -> bool:
    return all([(await engine.load(f)).suspended for f in flows])


async def _all_completed(engine: FlowEngine, flows: list[uuid.UUID]) -> bool:
    return all([(await engine.load(f)).completed for f in flows])


async def test_a_timer_that_fires_while_no_worker_runs_is_picked_up_when_one_starts(backend: Any) -> None:
    definition = timer(0.3)
    engine = _engine(backend, definition)
    flow = await engine.submit()
    async with Worker(backend, definition, poll_interval=0.05):
        await until(lambda: _suspended_or_done(engine, flow), 20, "the flow to sleep")
    (job,) = await backend.work_queue().list_jobs(flow_id=flow)
    assert job.state is JobState.READY  # its timer is a not-before time in the queue, not a task
    await asyncio.sleep(0.4)  # the timer fires with no worker running
    async with Worker(backend, definition, poll_interval=0.05):
        await until(lambda: _completed(engine, flow), 20, "the new worker to finish it")
    assert await engine.event_codes(flow) == ["I", "S", "F", "S", "W", "S", "F", "S", "F", "C"]


async def test_the_cli_shows_what_a_suspended_flow_waits_for(db: Any, db_url: str) -> None:
    definition = approval_with_timeout(3600)
    engine = FlowEngine(
        db.event_store(), FlowRepository(), definition, queue=db.work_queue(), records=db.workflow_records()
    )
    flow = await engine.run_to_end(inputs={"order": 5})
    assert (await engine.load(flow)).suspended
    env = {**os.environ, "DATABASE_URL": db_url}
    shown = subprocess.run(
        [sys.executable, "-m", "chem_persistence_async.cli", "flows", "--status", "suspended"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert str(flow) in shown
    line = next(line for line in shown.splitlines() if line.startswith(str(flow)) and "approve" in line)
    assert "approve" in line.split()[1:]  # the stage, and the signal it waits for
    assert re.search(r"\d{4}-\d{2}-\d{2}", line.split("approve")[-1])  # and until when
    one = subprocess.run(
        [sys.executable, "-m", "chem_persistence_async.cli", "flow", str(flow)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "SUSPENDED" in one.upper()
    assert "approve until" in one
