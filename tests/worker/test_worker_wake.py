"""A worker claims a job it put off when that job is due, not at its next poll.

Found by the server-restart chaos test: workers polling every two minutes (NOTIFY wakes them for new
jobs) left a retry waiting for the poll after its time had come, and a job whose commit failed while
the server restarted waited for the poll after its backoff (or its lease) ran out. Each test here
runs a worker whose poll interval is far longer than the test's deadline.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg

from chem_persistence_async import (
    Artifact,
    Database,
    FlowDefinition,
    FlowEngine,
    FlowRepository,
    RetryPolicy,
    StepContext,
    StepOutput,
    Worker,
)
from tests.support.waiting import until
from tests.worker.flows import flaky_steps

POLL = 300.0
"""Longer than any test here: only a wake-up can make a worker claim."""


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
class Blob:
    id: str = "blob"

    async def run(self, ctx: StepContext) -> StepOutput:
        return StepOutput(artifacts=(Artifact.of("blob", {"attempt": ctx.attempt}),))


async def test_a_job_whose_run_failed_is_claimed_again_after_its_backoff_not_at_the_next_poll(
    db_url: str, conn: asyncpg.Connection
) -> None:
    # The first commit of an outcome fails in the database (a trigger, once): the worker's run
    # raises, its job goes back with a 2 s backoff, and the attempt it left open has a 1 s lease.
    await conn.execute("CREATE SEQUENCE fail_once_seq")
    await conn.execute(
        """
        CREATE FUNCTION fail_once() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF nextval('fail_once_seq') = 1 THEN RAISE EXCEPTION 'injected failure'; END IF;
            RETURN NEW;
        END $$
        """
    )
    await conn.execute(
        "CREATE TRIGGER fail_once BEFORE INSERT ON workflow_step_artifacts FOR EACH ROW EXECUTE FUNCTION fail_once()"
    )
    async with Database.connect(db_url, min_connections=1) as db:
        definition = FlowDefinition("blob", [Blob()])
        engine = FlowEngine(db.event_store(), FlowRepository(), definition, queue=db.work_queue())
        flow = await engine.submit()
        async with Worker(db, definition, poll_interval=POLL, lease=timedelta(seconds=1)) as worker:
            await until(lambda: _completed(engine, flow), 20, "the job to run again after its backoff")
        assert worker.stats.failed == 1
        assert await engine.event_codes(flow) == ["I", "S", "X", "R", "S", "F", "C"]  # attempt 1 lost


async def _codes_are(engine: FlowEngine, flow: uuid.UUID, codes: list[str]) -> bool:
    return [c for c in await engine.event_codes(flow) if c != "R"] == codes


async def _completed(engine: FlowEngine, flow: uuid.UUID) -> bool:
    return (await engine.load(flow)).completed
