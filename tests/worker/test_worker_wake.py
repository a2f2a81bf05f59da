"""A worker claims a job it put off when that job is due, not at its next poll.

Found by the server-restart chaos test: workers polling every two minutes (NOTIFY wakes them for new
jobs) left a retry waiting for the poll after its time had come, and a job whose commit failed while
the server restarted waited for the poll after its backoff (or its lease) ran out. Each test here
runs a worker whose poll interval is far longer than the test's deadline.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from chem_persistence_async import (
    Artifact,
    Database,
    FlowDefinition,
    FlowEngine,
    FlowRepository,
    InMemoryBackend,
    RetryPolicy,
    StepContext,
    StepOutput,
    Worker,
)
from tests.support.waiting import until
from tests.worker.flows import flaky_steps

POLL = 300.0
"""Longer than any test here: only a wake-up can make a worker claim."""


@pytest.fixture(params=["memory", "postgres"])
def backend(request: pytest.FixtureRequest) -> Any:
    if request.param == "memory":
        return InMemoryBackend()
    return request.getfixturevalue("db")


async def test_a_retry_starts_when_it_is_due_not_at_the_next_poll(backend: Any) -> None:
    definition = flaky_steps(p=1.0)  # the middle step always fails; one retry, half a second later
    policy = RetryPolicy(max_retries=1, initial_delay=0.5)
    engine = FlowEngine(backend.event_store(), FlowRepository(), definition, queue=backend.work_queue())
    flow = await engine.submit()
    async with Worker(backend, definition, poll_interval=POLL, retry_policy=policy) as worker:
        await until(lambda: _codes_are(engine, flow, ["I", "S", "F", "S", "X", "S", "X"]), 15, "the retry")
    # (the retry was scheduled and started: the codes above skip nothing but the R, checked here)
    assert await engine.event_codes(flow) == ["I", "S", "F", "S", "X", "R", "S", "X"]
    assert (await engine.load(flow)).failed
    assert worker.stats.suspended == 1


@dataclass(frozen=True)
class TooBigFirst:
    """Its first attempt returns an artifact over the store's size limit (the commit fails, not the
    step); later attempts a small one."""

    id: str = "too_big_first"
    params: dict[str, Any] = field(default_factory=dict)

    async def run(self, ctx: StepContext) -> StepOutput:
        size = 4096 if ctx.attempt == 1 else 1
        return StepOutput(artifacts=(Artifact.of("blob", {"x": "y" * size}),))


async def test_a_job_whose_run_failed_is_claimed_again_after_its_backoff_not_at_the_next_poll(
    db_url: str,
) -> None:
    async with Database.connect(db_url, max_payload_bytes=1024, min_connections=1) as db:
        definition = FlowDefinition("too_big", [TooBigFirst()])
        engine = FlowEngine(db.event_store(), FlowRepository(), definition, queue=db.work_queue())
        flow = await engine.submit()
        # The failed job goes back with a 2 s backoff; the attempt it left open has a 1 s lease.
        async with Worker(db, definition, poll_interval=POLL, lease=timedelta(seconds=1)) as worker:
            await until(lambda: _completed(engine, flow), 20, "the job to run again after its backoff")
        assert worker.stats.failed == 1
        assert await engine.event_codes(flow) == ["I", "S", "X", "R", "S", "F", "C"]  # attempt 1 lost


async def _codes_are(engine: FlowEngine, flow: uuid.UUID, codes: list[str]) -> bool:
    return [c for c in await engine.event_codes(flow) if c != "R"] == codes


async def _completed(engine: FlowEngine, flow: uuid.UUID) -> bool:
    return (await engine.load(flow)).completed
