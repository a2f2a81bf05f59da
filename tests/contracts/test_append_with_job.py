"""An append that carries a job's change (``QueueCarryingEventStore.append_with_job``): the events
and the job commit together or not at all, on every backend that has the capability."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chem_persistence_async import (
    ConcurrencyConflict,
    InvalidInputError,
    Job,
    JobCancelledError,
    JobSpec,
    JobState,
    LeaseLostError,
    MissingArtifactError,
    QueueDepth,
)
from chem_persistence_async.domain.jobs import JobWrite
from chem_persistence_async.ports.work_queue import QueueCarryingEventStore, WorkQueuePort
from tests.factories import failed, finished, started

SHORT = timedelta(milliseconds=150)


def _carrier(store: Any, queue: WorkQueuePort) -> QueueCarryingEventStore:
    if not (isinstance(store, QueueCarryingEventStore) and store.carries_queue(queue)):
        pytest.skip("this backend's store does not carry its queue's jobs")
    return store


def _flow_job(flow: uuid.UUID) -> JobWrite:
    return JobWrite.enqueue(JobSpec("flow", None, key=str(flow), max_attempts=None, flow_id=flow).checked())


async def _claimed(store: Any, queue: WorkQueuePort, *, lease: timedelta = timedelta(seconds=30)) -> Job:
    """A new flow with one event and its claimed job."""
    flow = uuid.uuid4()
    await _carrier(store, queue).append_with_job(
        flow, [started()], _flow_job(flow), queue=queue, expected_version=0
    )
    (job,) = await queue.claim("w1", lease=lease)
    assert job.flow_id == flow
    return job


async def _states(queue: WorkQueuePort) -> dict[int, JobState]:
    return {j.id: j.state for j in await queue.list_jobs()}


async def test_a_new_flows_first_event_and_its_job_go_in_together(store: Any, queue: WorkQueuePort) -> None:
    flow = uuid.uuid4()
    events = await _carrier(store, queue).append_with_job(
        flow, [started()], _flow_job(flow), queue=queue, expected_version=0
    )
    assert [e.flow_version for e in events] == [1]
    assert [e.event_id for e in await store.list(flow)] == [events[0].event_id]
    (job,) = await queue.claim("w1")
    assert (job.kind, job.key, job.flow_id, job.max_attempts) == ("flow", str(flow), flow, None)


async def test_a_conflict_writes_neither_the_events_nor_the_job(store: Any, queue: WorkQueuePort) -> None:
    flow = uuid.uuid4()
    await store.append_kind(flow, started())
    with pytest.raises(ConcurrencyConflict) as conflict:
        await _carrier(store, queue).append_with_job(
            flow, [started()], _flow_job(flow), queue=queue, expected_version=0
        )
    assert conflict.value.actual_version == 1
    assert len(await store.list(flow)) == 1
    assert await queue.depth() == QueueDepth()
    assert await queue.list_jobs() == []


async def test_an_outcome_completes_the_held_job(store: Any, queue: WorkQueuePort) -> None:
    job = await _claimed(store, queue)
    assert job.flow_id is not None
    events = await _carrier(store, queue).append_with_job(
        job.flow_id, [finished(), failed(attempt=2)], JobWrite.complete(job), queue=queue, expected_version=1
    )
    assert [e.flow_version for e in events] == [2, 3]
    assert [e.flow_version for e in await store.list(job.flow_id)] == [1, 2, 3]
    assert [e.attempt_number for e in await store.list_errors(job.flow_id)] == [2]
    assert await queue.depth() == QueueDepth()
    assert await _states(queue) == {job.id: JobState.COMPLETED}


async def test_an_outcome_suspends_the_held_job_until_its_time(store: Any, queue: WorkQueuePort) -> None:
    job = await _claimed(store, queue)
    assert job.flow_id is not None
    until = datetime.now(UTC) + timedelta(milliseconds=300)
    await _carrier(store, queue).append_with_job(
        job.flow_id, [finished()], JobWrite.suspend(job, until), queue=queue, expected_version=1
    )
    assert await queue.depth() == QueueDepth(scheduled=1)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not (again := await queue.claim("w2")):
        assert loop.time() < deadline, "the suspended job never came back"
        await asyncio.sleep(0.02)
    assert again[0].id == job.id
    assert again[0].attempt == job.attempt, "a suspension does not use up an attempt"
    assert again[0].lease_token != job.lease_token


async def test_a_lost_lease_writes_nothing(store: Any, queue: WorkQueuePort) -> None:
    job = await _claimed(store, queue, lease=SHORT)
    assert job.flow_id is not None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not (taken := await queue.claim("w2")):
        assert loop.time() < deadline, "the lease never ran out"
        await asyncio.sleep(0.02)
    for write in (JobWrite.complete(job), JobWrite.suspend(job, datetime.now(UTC))):
        with pytest.raises(LeaseLostError) as lost:
            await _carrier(store, queue).append_with_job(
                job.flow_id, [finished()], write, queue=queue, expected_version=1
            )
        assert lost.value.job_id == job.id
    assert len(await store.list(job.flow_id)) == 1
    (renewed,) = await queue.heartbeat(taken)  # the new holder's lease is untouched
    assert renewed.lease_token == taken[0].lease_token


async def test_a_cancelled_job_writes_nothing(store: Any, queue: WorkQueuePort) -> None:
    job = await _claimed(store, queue)
    assert job.flow_id is not None
    assert job.key is not None
    assert await queue.cancel(job.key)
    with pytest.raises(JobCancelledError):
        await _carrier(store, queue).append_with_job(
            job.flow_id, [finished()], JobWrite.complete(job), queue=queue, expected_version=1
        )
    assert len(await store.list(job.flow_id)) == 1
    assert (await queue.depth()).claimed == 1


async def test_a_version_conflict_leaves_the_job_held(store: Any, queue: WorkQueuePort) -> None:
    job = await _claimed(store, queue)
    assert job.flow_id is not None
    await store.append_kind(job.flow_id, finished(), expected_version=1)
    with pytest.raises(ConcurrencyConflict):
        await _carrier(store, queue).append_with_job(
            job.flow_id, [finished()], JobWrite.complete(job), queue=queue, expected_version=1
        )
    assert len(await store.list(job.flow_id)) == 2
    (renewed,) = await queue.heartbeat([job])
    assert renewed.id == job.id
    assert await _states(queue) == {job.id: JobState.CLAIMED}


async def test_bad_input_is_refused_before_anything_is_written(store: Any, queue: WorkQueuePort) -> None:
    carrier = _carrier(store, queue)
    flow = uuid.uuid4()
    with pytest.raises(InvalidInputError):
        await carrier.append_with_job(flow, [started()], "complete", queue=queue, expected_version=0)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        await carrier.append_with_job(flow, [], _flow_job(flow), queue=queue, expected_version=0)
    with pytest.raises(InvalidInputError):
        JobWrite.suspend(await _claimed(store, queue), datetime(2030, 1, 1))  # naive: refused
    assert await store.list(flow) == []


async def test_an_output_with_no_artifact_stored_writes_neither(store: Any, queue: WorkQueuePort) -> None:
    """An append whose ``StepFinished`` lists an output that is neither passed nor stored is
    refused before the job changes, as a plain append is."""
    job = await _claimed(store, queue)
    assert job.flow_id is not None
    with pytest.raises(MissingArtifactError):
        await _carrier(store, queue).append_with_job(
            job.flow_id,
            [finished(outputs=("f" * 64,))],
            JobWrite.complete(job),
            queue=queue,
            expected_version=1,
        )
    assert len(await store.list(job.flow_id)) == 1
    assert await _states(queue) == {job.id: JobState.CLAIMED}
