"""A worker's lease is the lease of everything it holds: its jobs and the attempts it starts.

Found by the worker chaos test: the lease guard inside each step's commit renewed the job for the
queue's default 30 s instead of the worker's lease, and the next step's ``StepStarted`` carried that
30 s lease; a worker killed after a chained commit left its flow waiting 30 s for a takeover, however
short its lease.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from chem_persistence_async import (
    Artifact,
    FlowDefinition,
    FlowEngine,
    FlowRepository,
    StepContext,
    StepOutput,
    StepStarted,
    Worker,
)
from tests.support.waiting import until

GATES: dict[str, asyncio.Event] = {}


@dataclass(frozen=True)
class Gate:
    """Waits at the gate named by ``params["gate"]`` until the test opens it."""

    id: str
    params: dict[str, Any] = field(default_factory=dict)

    async def run(self, ctx: StepContext) -> StepOutput:
        await GATES[str(self.params["gate"])].wait()
        return StepOutput(artifacts=(Artifact.of("gate", {"step": ctx.step_id}),))


@dataclass(frozen=True)
class Quick:
    id: str
    params: dict[str, Any] = field(default_factory=dict)

    async def run(self, ctx: StepContext) -> StepOutput:
        return StepOutput(artifacts=(Artifact.of("quick", {"step": ctx.step_id}),))


async def test_every_attempt_a_worker_starts_and_every_job_it_holds_carry_the_workers_lease(
    backend: Any,
) -> None:
    gate = uuid.uuid4().hex
    GATES[gate] = asyncio.Event()
    definition = FlowDefinition("lease2", [Quick("first"), Gate("second", {"gate": gate})])
    engine = FlowEngine(backend.event_store(), FlowRepository(), definition, queue=backend.work_queue())
    flow = await engine.submit()
    lease = timedelta(seconds=1)
    limit = lease + timedelta(seconds=2)  # slack for a slow machine; the bug gave 30 s
    async with Worker(backend, definition, lease=lease, poll_interval=0.05, grace=0.1):
        await until(lambda: _codes_are(engine, flow, ["I", "S", "F", "S"]), 30, "the second step to start")
        # The second step was started by the first step's commit (one unit of work with the job's
        # lease guard): its lease and the job's are the worker's, not the queue's default.
        now = datetime.now(UTC)
        starts = [e.kind for e in await engine.store.list(flow) if isinstance(e.kind, StepStarted)]
        assert all(s.lease_until is not None and s.lease_until <= now + limit for s in starts), starts
        (job,) = await backend.work_queue().list_jobs(flow_id=flow)
        assert job.lease_expires_at is not None
        assert job.lease_expires_at <= now + limit
        GATES[gate].set()
        await until(lambda: _completed(engine, flow), 30, "the flow to complete")


async def _codes_are(engine: FlowEngine, flow: uuid.UUID, codes: list[str]) -> bool:
    return await engine.event_codes(flow) == codes


async def _completed(engine: FlowEngine, flow: uuid.UUID) -> bool:
    return (await engine.load(flow)).completed


def test_a_renewal_answered_late_never_shortens_the_lease_a_worker_knows() -> None:
    """A heartbeat and a step's commit both renew a held job; their answers may come back in either
    order. The worker keeps the later lease: with the earlier one, a worker that cannot give the
    job back (the database went away) would look for it again before its lease ran out, find
    nothing, and leave it to the next poll."""
    from chem_persistence_async import Job
    from chem_persistence_async.worker.flow_runner import Holding

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    job = Job(
        id=1,
        queue="default",
        kind="flow",
        key=None,
        payload=None,
        priority=0,
        attempt=1,
        max_attempts=None,
        flow_id=None,
        lease_token=uuid.uuid4(),
        lease_expires_at=t0,
        created_at=t0,
    )
    holding = Holding(job)
    later = replace(job, lease_expires_at=t0 + timedelta(seconds=2))
    earlier = replace(job, lease_expires_at=t0 + timedelta(seconds=1))
    holding.renewed(later)
    holding.renewed(earlier)  # answered last, renewed first
    assert holding.job.lease_expires_at == later.lease_expires_at
    holding.renewed(replace(job, lease_expires_at=t0 + timedelta(seconds=3)))
    assert holding.job.lease_expires_at == t0 + timedelta(seconds=3)


class _CountingQueue:
    """The backend's queue, counting the lease renewals the runner sends."""

    def __init__(self, queue: Any) -> None:
        self._queue = queue
        self.heartbeats = 0

    async def heartbeat(self, jobs: Any, **kwargs: Any) -> Any:
        self.heartbeats += 1
        return await self._queue.heartbeat(jobs, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._queue, name)


async def _run_three_steps(backend: Any, lease_from: float | None) -> tuple[int, list[str], Any]:
    from chem_persistence_async.worker.flow_runner import FlowRunner, Holding

    definition = FlowDefinition("young", [Quick("a"), Quick("b"), Quick("c")])
    engine = FlowEngine(backend.event_store(), FlowRepository(), definition, queue=backend.work_queue())
    flow = await engine.submit()
    lease = timedelta(seconds=30)
    (job,) = await backend.work_queue().claim("w", lease=lease, kinds=["flow"])
    queue = _CountingQueue(backend.work_queue())
    runner = FlowRunner(backend, {engine.definition_ref: engine}, queue, lease=lease)  # type: ignore[arg-type]
    holding = Holding(job) if lease_from is None else Holding(job, lease_from=lease_from)
    assert await runner.run(holding, lambda _: {}) == "completed"
    (finished,) = await backend.work_queue().list_jobs(flow_id=flow)
    return queue.heartbeats, await engine.event_codes(flow), finished


async def test_a_young_lease_is_not_renewed_at_each_commit(backend: Any) -> None:
    """Claimed a moment ago, nobody else can hold the job: the chained commits are the appends
    alone and the last one is guarded by the completion's lease token."""
    from chem_persistence_async import JobState

    heartbeats, codes, finished = await _run_three_steps(backend, None)
    assert heartbeats == 0
    assert codes == ["I", "S", "F", "S", "F", "S", "F", "C"]
    assert finished.state is JobState.COMPLETED


async def test_an_old_lease_is_checked_and_renewed_before_a_commit_then_young_again(backend: Any) -> None:
    """Last renewed (as far as the runner knows) an hour ago: the first commit renews the lease,
    guarded by its token, which makes it young for the commits that follow."""
    import time

    from chem_persistence_async import JobState

    heartbeats, codes, finished = await _run_three_steps(backend, time.monotonic() - 3600)
    assert heartbeats == 1
    assert codes == ["I", "S", "F", "S", "F", "S", "F", "C"]
    assert finished.state is JobState.COMPLETED
