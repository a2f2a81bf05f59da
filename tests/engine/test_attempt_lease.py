"""Attempt leases (SPEC 8.2): an attempt in progress is not superseded, a lost one gets exactly one
outcome, and the RetryPolicy bounds a step that keeps losing its attempts."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chem_persistence_async import (
    Artifact,
    ConcurrencyConflict,
    ErrorClass,
    FlowDefinition,
    FlowEngine,
    FlowRepository,
    RetryPolicy,
    StepContext,
    StepInProgressError,
    StepOutput,
    StepStatus,
)
from chem_persistence_async.engine.planner import CloseLost, Complete, Done, RunStep, Wait, plan
from tests.engine.flows import Produce


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass(frozen=True)
class Slow:
    """Takes ``params["seconds"]``, counting its runs."""

    id: str
    params: dict[str, Any]

    async def run(self, ctx: StepContext) -> StepOutput:
        RUNS.append(ctx.flow_id)
        await asyncio.sleep(float(self.params["seconds"]))
        return StepOutput(artifacts=(Artifact.of("done", {"step": ctx.step_id}),))


RUNS: list[uuid.UUID] = []


def _one_step(seconds: float = 0.0) -> FlowDefinition:
    return FlowDefinition("one", [Slow("slow", {"seconds": seconds})])


async def test_two_engines_on_one_flow_do_not_supersede_each_other(store: Any) -> None:
    """SPEC 8.2: with no crash at all, a one-step flow of 50 ms run by two engines at once has one
    attempt (before leases, 21 StepStarted were seen)."""
    definition = _one_step(0.05)
    engines = [FlowEngine(store, FlowRepository(), definition) for _ in range(2)]
    flow_id = await engines[0].start()
    RUNS.clear()
    await asyncio.wait_for(asyncio.gather(*(e.run_to_end(flow_id) for e in engines)), 30)
    codes = await engines[0].event_codes(flow_id)
    assert codes == ["I", "S", "F", "C"]
    assert [flow_id] == RUNS


async def test_an_attempt_in_progress_refuses_a_second_starter_until_its_lease_passes(store: Any) -> None:
    clock = Clock()
    definition = FlowDefinition("two", [Produce("a"), Produce("b")])
    first = FlowEngine(store, FlowRepository(), definition, clock=clock, attempt_lease=timedelta(seconds=10))
    second = FlowEngine(store, FlowRepository(), definition, clock=clock)
    flow_id = await first.start()
    instance = await first.load(flow_id)
    action = first.plan(instance)
    assert isinstance(action, RunStep)
    attempt = await first.begin(instance, action)  # started, then its process "dies"

    with pytest.raises(StepInProgressError) as busy:
        await second.run_next(flow_id)
    assert busy.value.lease_until == clock.now + timedelta(seconds=10)
    assert (busy.value.step_id, busy.value.attempt) == ("a", 1)

    clock.advance(10.001)
    after = await second.run_next(flow_id)  # closes the lost attempt, runs attempt 2
    assert after.steps[0].status is StepStatus.FINISHED
    assert await second.event_codes(flow_id) == ["I", "S", "X", "R", "S", "F"]
    (lost,) = await store.list_errors(flow_id)
    assert (lost.attempt_number, lost.error_class) == (1, ErrorClass.RUNTIME)
    assert lost.error_message.startswith("attempt lost")

    # The first engine comes back with the outcome of attempt 1: it commits nothing.
    with pytest.raises(ConcurrencyConflict):
        await first.commit(attempt, await first.run_attempt(attempt))
    await second.run_to_end(flow_id)
    codes = await second.event_codes(flow_id)
    assert codes == ["I", "S", "X", "R", "S", "F", "S", "F", "C"]
    assert codes.count("S") == codes.count("F") + codes.count("X")  # every attempt has one outcome


async def test_a_step_that_keeps_losing_its_attempts_fails_within_the_policy(store: Any) -> None:
    clock = Clock()
    definition = _one_step()
    engine = FlowEngine(
        store, FlowRepository(), definition, clock=clock, retry_policy=RetryPolicy(max_retries=2)
    )
    flow_id = await engine.start()
    for _ in range(3):  # attempts 1..3 start and are lost
        instance = await engine.load(flow_id)
        action = engine.plan(instance)
        assert isinstance(action, RunStep)
        await engine.begin(instance, action)
        clock.advance(31)
    instance = await engine.load(flow_id)
    action = engine.plan(instance)
    assert isinstance(action, CloseLost)
    final = await engine.execute(instance, action)
    assert final.failed
    assert await engine.event_codes(flow_id) == ["I", "S", "X", "R", "S", "X", "R", "S", "X"]
    errors = await store.list_errors(flow_id)
    assert [(e.attempt_number, e.retry_count) for e in errors] == [(1, 0), (2, 1), (3, 2)]
    await engine.run_to_end(flow_id)  # a failed flow is done
    assert (await engine.load(flow_id)).failed


async def test_run_to_end_waits_out_another_engines_attempt(store: Any) -> None:
    """The first engine started an attempt with a short lease and vanished: the second waits for the
    lease (in real time), closes the attempt and finishes the flow."""
    definition = _one_step()
    first = FlowEngine(store, FlowRepository(), definition, attempt_lease=timedelta(milliseconds=200))
    second = FlowEngine(store, FlowRepository(), definition)
    flow_id = await first.start()
    instance = await first.load(flow_id)
    action = first.plan(instance)
    assert isinstance(action, RunStep)
    await first.begin(instance, action)
    await asyncio.wait_for(second.run_to_end(flow_id), 10)
    assert await second.event_codes(flow_id) == ["I", "S", "X", "R", "S", "F", "C"]


def test_the_planner_is_pure_and_total() -> None:
    """Every state replay can produce maps to exactly one action, decided by time alone."""
    from chem_persistence_async import replay
    from chem_persistence_async.domain.events import (
        FlowEvent,
        FlowInitialized,
        RetryScheduled,
        StepFinished,
        StepStarted,
    )

    definition = _one_step()
    policy = RetryPolicy()
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    flow = uuid.uuid4()

    def state(*kinds: Any) -> Any:
        events = [FlowEvent(i, flow, i, t0, kind, uuid.uuid4()) for i, kind in enumerate(kinds, 1)]
        return replay(flow, events, definition)

    init = FlowInitialized(definition_name="one", definition_hash=definition.hash, step_count=1)
    started = StepStarted(step_index=0, step_id="slow", attempt=1, lease_until=t0 + timedelta(seconds=5))
    assert plan(state(init), definition, policy, t0) == RunStep(0, 1)
    assert plan(state(init, started), definition, policy, t0) == Wait(
        t0 + timedelta(seconds=5), "in_progress", 0, 1
    )
    lost = plan(state(init, started), definition, policy, t0 + timedelta(seconds=6))
    assert isinstance(lost, RunStep)
    assert lost.attempt == 2
    assert [k.code for k in lost.close] == ["X", "R"]
    retry = RetryScheduled(
        step_index=0, step_id="slow", retry_index=1, reason="r", not_before=t0 + timedelta(1)
    )
    assert plan(state(init, started, *lost.close[:1], retry), definition, policy, t0) == Wait(
        t0 + timedelta(1), "retry", 0, 2
    )
    finished = StepFinished(step_index=0, step_id="slow", outputs=(), fingerprint="a" * 64)
    assert isinstance(plan(state(init, started, finished), definition, policy, t0), Complete)
    legacy = StepStarted(step_index=0, step_id="slow", attempt=1)  # no lease: lost at once
    assert isinstance(plan(state(init, legacy), definition, policy, t0), RunStep)
    assert plan(state(init, legacy), definition, RetryPolicy(max_retries=0), t0) == CloseLost(
        0,
        plan(state(init, legacy), definition, RetryPolicy(max_retries=0), t0).close,  # type: ignore[union-attr]
    )
    assert not isinstance(plan(state(init), definition, policy, t0), Done)
