"""The work queue contract (SPEC 8.1), run unchanged against every backend (``queue`` fixture)."""

from __future__ import annotations

import asyncio
import math
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from chem_persistence_async import (
    InvalidInputError,
    Job,
    JobCancelledError,
    JobSpec,
    JobState,
    LeaseLostError,
    QueueDepth,
    UnknownStatusError,
    UnstorableValueError,
    ValueOutOfRangeError,
)
from chem_persistence_async.ports.work_queue import WorkQueuePort

SHORT = timedelta(milliseconds=150)
_PAST = datetime(2000, 1, 1, tzinfo=UTC)


async def _until_expired(job: Job, queue: Any) -> None:
    """Wait (bounded) until ``job``'s lease has run out by the queue's own clock."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while (await queue.depth(queue=job.queue)).expired == 0:
        assert loop.time() < deadline, "the lease never ran out"
        await asyncio.sleep(0.02)


def _states(jobs: list[Any]) -> dict[int, JobState]:
    return {j.id: j.state for j in jobs}


async def test_enqueue_claim_complete(queue: Any) -> None:
    job_id = await queue.enqueue("email", {"to": "a@b.c"})
    assert await queue.depth() == QueueDepth(ready=1)
    (job,) = await queue.claim("w1")
    assert (job.id, job.kind, job.payload, job.attempt, job.queue) == (
        job_id,
        "email",
        {"to": "a@b.c"},
        1,
        "default",
    )
    assert job.lease_expires_at > datetime.now(UTC) - timedelta(seconds=5)
    assert await queue.depth() == QueueDepth(claimed=1)
    assert await queue.claim("w2") == []
    await queue.complete(job)
    assert await queue.depth() == QueueDepth()
    assert _states(await queue.list_jobs()) == {job_id: JobState.COMPLETED}


async def test_claim_order_priority_then_not_before_then_id(queue: Any) -> None:
    past = datetime.now(UTC) - timedelta(minutes=5)
    low = await queue.enqueue("k", priority=0)
    high = await queue.enqueue("k", priority=5)
    early = await queue.enqueue("k", priority=0, not_before=past)
    later_same = await queue.enqueue("k", priority=5)
    claimed = await queue.claim("w", limit=10)
    assert [j.id for j in claimed] == [high, later_same, early, low]


async def test_a_delayed_job_waits_for_its_time(queue: Any) -> None:
    soon = datetime.now(UTC) + timedelta(milliseconds=300)
    job_id = await queue.enqueue("later", not_before=soon)
    assert await queue.claim("w") == []
    assert await queue.depth() == QueueDepth(scheduled=1)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not (claimed := await queue.claim("w")):
        assert loop.time() < deadline
        await asyncio.sleep(0.02)
    assert [j.id for j in claimed] == [job_id]
    assert datetime.now(UTC) >= soon - timedelta(
        milliseconds=50
    )  # (clocks of db and client may differ a bit)


async def test_a_key_is_unique_among_active_jobs(queue: Any) -> None:
    first = await queue.enqueue("k", {"n": 1}, key="order-7")
    again = await queue.enqueue("k", {"n": 2}, key="order-7")
    other_queue = await queue.enqueue("k", key="order-7", queue="other")
    assert again == first
    assert other_queue != first
    assert (await queue.depth(queue="default")).ready == 1
    (job,) = await queue.claim("w")
    assert job.payload == {"n": 1}
    assert await queue.enqueue("k", key="order-7") == first  # claimed is still active
    await queue.complete(job)
    fresh = await queue.enqueue("k", {"n": 3}, key="order-7")  # finished: the key is free again
    assert fresh != first


async def test_enqueue_many_is_ordered_and_keyed(queue: Any) -> None:
    existing = await queue.enqueue("k", key="a")
    ids = await queue.enqueue_many(
        [
            JobSpec("k", {"i": 0}),
            {"kind": "k", "payload": {"i": 1}, "key": "a"},
            JobSpec("k", {"i": 2}, key="b"),
            JobSpec("k", {"i": 3}, key="b"),
            JobSpec("k", {"i": 4}, priority=2),
        ]
    )
    assert ids[1] == existing
    assert ids[2] == ids[3]
    assert len(set(ids)) == 4
    assert ids[0] < ids[4]
    claimed = await queue.claim("w", limit=10)
    assert {j.id: j.payload for j in claimed}[ids[2]] == {"i": 2}
    assert await queue.enqueue_many([]) == []


async def test_enqueue_many_without_keys_keeps_the_order_and_every_field(queue: WorkQueuePort) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    flow = uuid.uuid4()
    specs = [
        JobSpec("a", {"i": 0}),
        JobSpec("b", [1, "x"], queue="other", priority=3, max_attempts=None, flow_id=flow),
        JobSpec("c", None, not_before=later, definition="demo@" + "1" * 64),
        JobSpec("d", {"i": 3}, max_attempts=7),
    ]
    woken: list[str] = []
    queue.on_enqueue(woken.append)
    ids = await queue.enqueue_many(specs)
    assert ids == sorted(ids)  # ascending in the order given
    assert len(set(ids)) == 4
    assert sorted(woken) == ["default", "other"]
    info = {j.id: j for j in await queue.list_jobs()}
    got = [info[i] for i in ids]
    assert [(j.kind, j.queue, j.payload, j.priority, j.max_attempts) for j in got] == [
        ("a", "default", {"i": 0}, 0, 3),
        ("b", "other", [1, "x"], 3, None),
        ("c", "default", None, 0, 3),
        ("d", "default", {"i": 3}, 0, 7),
    ]
    assert (got[1].flow_id, got[2].definition, got[2].not_before) == (flow, "demo@" + "1" * 64, later)
    assert all(j.key is None and j.state is JobState.READY for j in got)
    assert await queue.depth() == QueueDepth(ready=3, scheduled=1)


async def test_enqueue_many_with_every_field_shared_writes_each_job_whole(queue: WorkQueuePort) -> None:
    # (PostgreSQL sends a field every job shares once, not as an array: the jobs must not notice.)
    later = datetime.now(UTC) + timedelta(hours=1)
    flow = uuid.uuid4()
    shared = {
        "queue": "other",
        "priority": 2,
        "not_before": later,
        "max_attempts": None,
        "flow_id": flow,
        "definition": "demo@" + "2" * 64,
    }
    for keys in ([None, None, None], ["x", "y", None]):
        specs = [JobSpec("k", {"i": i}, key=key, **shared) for i, key in enumerate(keys)]
        ids = await queue.enqueue_many(specs)
        info = {j.id: j for j in await queue.list_jobs()}
        got = [info[i] for i in ids]
        assert [j.payload for j in got] == [{"i": 0}, {"i": 1}, {"i": 2}]
        assert [j.key for j in got] == keys
        for job in got:
            assert (job.kind, job.queue, job.priority, job.not_before, job.max_attempts) == (
                "k",
                "other",
                2,
                later,
                None,
            )
            assert (job.flow_id, job.definition) == (flow, "demo@" + "2" * 64)


async def test_an_expired_lease_is_claimed_again_and_the_first_worker_changes_nothing(queue: Any) -> None:
    await queue.enqueue("k")
    (first,) = await queue.claim("w1", lease=SHORT)
    await _until_expired(first, queue)
    assert await queue.depth() == QueueDepth(expired=1)
    (second,) = await queue.claim("w2")
    assert second.id == first.id
    assert second.attempt == 2
    assert second.lease_token != first.lease_token
    for change in (
        queue.complete(first),
        queue.fail(first, "boom"),
        queue.suspend(first, datetime.now(UTC)),
        queue.release(first),
        queue.heartbeat([first]),
    ):
        with pytest.raises(LeaseLostError) as lost:
            await change
        assert lost.value.job_id == first.id
    assert await queue.depth() == QueueDepth(claimed=1)
    await queue.complete(second)
    assert _states(await queue.list_jobs()) == {first.id: JobState.COMPLETED}


async def test_a_lease_that_ran_out_but_was_not_taken_over_may_still_complete(queue: Any) -> None:
    await queue.enqueue("k")
    (job,) = await queue.claim("w", lease=SHORT)
    await _until_expired(job, queue)
    await queue.complete(job)
    assert _states(await queue.list_jobs()) == {job.id: JobState.COMPLETED}


async def test_completing_twice_is_harmless(queue: Any) -> None:
    """A completion retried after its acknowledgement was lost finds the job already finished."""
    await queue.enqueue("k")
    (job,) = await queue.claim("w")
    await queue.complete(job)
    await queue.complete(job)
    assert len(await queue.list_jobs()) == 1


async def test_complete_many_finishes_a_claimed_batch_at_once(queue: Any) -> None:
    for n in range(5):
        await queue.enqueue("k", {"n": n})
    jobs = await queue.claim("w", limit=5)
    await queue.complete_many(jobs)
    assert _states(await queue.list_jobs()) == {j.id: JobState.COMPLETED for j in jobs}
    assert await queue.depth() == QueueDepth()
    await queue.complete_many(jobs)  # retried after a lost acknowledgement: harmless
    await queue.complete_many([])
    assert len(await queue.list_jobs()) == 5


async def test_complete_many_names_cancelled_and_lost_jobs_and_finishes_the_others(queue: Any) -> None:
    await queue.enqueue("k", key="a")
    await queue.enqueue("k", key="b")
    await queue.enqueue("k", key="c")
    first, second = await queue.claim("w", limit=2)
    (third,) = await queue.claim("w", lease=SHORT)
    await queue.cancel("b")
    await _until_expired(third, queue)
    (again,) = await queue.claim("other", kinds=["k"])  # the third's lease is taken over
    assert again.id == third.id
    with pytest.raises(JobCancelledError) as caught:
        await queue.complete_many([first, second, third])
    assert caught.value.cancelled_ids == [second.id]
    assert caught.value.lost_ids == [third.id]
    assert _states(await queue.list_jobs()) == {
        first.id: JobState.COMPLETED,
        second.id: JobState.CANCELLED,
        third.id: JobState.CLAIMED,
    }
    with pytest.raises(LeaseLostError) as lost:
        await queue.complete_many([third])
    assert lost.value.lost_ids == [third.id]
    await queue.complete_many([again])
    assert _states(await queue.list_jobs())[third.id] == JobState.COMPLETED


# --- claim(complete=): the previous batch finished in the claim's own statement -----------------


async def test_a_claim_completes_the_previous_batch_and_takes_the_next(queue: WorkQueuePort) -> None:
    ids = await queue.enqueue_many([JobSpec("k", {"n": n}) for n in range(6)])
    first = await queue.claim("w", limit=3)
    second = await queue.claim("w", limit=3, complete=first)
    assert {j.id for j in first} | {j.id for j in second} == set(ids)
    assert await queue.depth() == QueueDepth(claimed=3)
    assert _states(await queue.list_jobs(states=[JobState.COMPLETED])) == {
        j.id: JobState.COMPLETED for j in first
    }
    assert await queue.claim("w", limit=3, complete=second) == []
    assert await queue.depth() == QueueDepth()
    # Retried after a lost acknowledgement: the jobs are found finished, nothing moves twice.
    assert await queue.claim("w", limit=3, complete=first) == []
    finished = await queue.list_jobs()
    assert sorted(j.id for j in finished) == sorted(ids)  # one history row each
    assert {j.state for j in finished} == {JobState.COMPLETED}


async def test_a_foreign_lease_token_finishes_nothing_and_the_claim_still_takes_jobs(
    queue: WorkQueuePort,
) -> None:
    await queue.enqueue("k", key="held")
    (held,) = await queue.claim("w")
    fresh = await queue.enqueue("k", key="fresh")
    forged = replace(held, lease_token=uuid.uuid4())
    with pytest.raises(LeaseLostError) as lost:
        await queue.claim("w", complete=[forged])
    assert lost.value.lost_ids == [held.id]
    assert [j.id for j in lost.value.claimed] == [fresh]  # claimed all the same: the caller holds it
    assert await queue.depth() == QueueDepth(claimed=2)
    await queue.complete_many([held, *lost.value.claimed])
    assert _states(await queue.list_jobs()) == {held.id: JobState.COMPLETED, fresh: JobState.COMPLETED}


async def test_a_lease_taken_over_finishes_nothing_and_the_others_are_finished(queue: WorkQueuePort) -> None:
    await queue.enqueue("k", key="slow")
    (slow,) = await queue.claim("w1", lease=SHORT)
    await queue.enqueue("k", key="quick")
    (quick,) = await queue.claim("w1")
    await _until_expired(slow, queue)
    (taken,) = await queue.claim("w2")  # the slow job's lease is taken over
    assert taken.id == slow.id
    later = await queue.enqueue("k", key="later")
    with pytest.raises(LeaseLostError) as lost:
        await queue.claim("w1", complete=[slow, quick])
    assert lost.value.lost_ids == [slow.id]
    assert [j.id for j in lost.value.claimed] == [later]
    assert _states(await queue.list_jobs()) == {
        slow.id: JobState.CLAIMED,
        quick.id: JobState.COMPLETED,
        later: JobState.CLAIMED,
    }


async def test_a_claim_never_takes_back_a_job_it_completes(queue: WorkQueuePort) -> None:
    """Not even one whose lease ran out on its last attempt, which a plain claim would bury as
    dead: the worker still holds it (no other claim took it over) and finishes it."""
    await queue.enqueue("k", max_attempts=1)
    (job,) = await queue.claim("w", lease=SHORT)
    await _until_expired(job, queue)
    assert await queue.claim("w", limit=5, complete=[job]) == []
    assert _states(await queue.list_jobs()) == {job.id: JobState.COMPLETED}


async def test_a_claim_does_not_take_a_job_it_names_even_with_a_stale_token(queue: WorkQueuePort) -> None:
    await queue.enqueue("k")
    (job,) = await queue.claim("w1", lease=SHORT)
    await _until_expired(job, queue)
    stale = replace(job, lease_token=uuid.uuid4())
    with pytest.raises(LeaseLostError) as lost:
        await queue.claim("w2", complete=[stale])
    assert lost.value.claimed == []
    assert await queue.depth() == QueueDepth(expired=1)  # still the first worker's to finish


async def test_a_claim_finishes_a_cancelled_job_as_cancelled(queue: WorkQueuePort) -> None:
    await queue.enqueue("k", key="doomed")
    await queue.enqueue("k", key="fine")
    doomed, fine = await queue.claim("w", limit=2)
    assert await queue.cancel("doomed")
    nxt = await queue.enqueue("k", key="next")
    with pytest.raises(JobCancelledError) as caught:
        await queue.claim("w", complete=[doomed, fine])
    assert (caught.value.cancelled_ids, caught.value.lost_ids) == ([doomed.id], [])
    assert [j.id for j in caught.value.claimed] == [nxt]
    assert _states(await queue.list_jobs()) == {
        doomed.id: JobState.CANCELLED,
        fine.id: JobState.COMPLETED,
        nxt: JobState.CLAIMED,
    }


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"complete": "abc"}, InvalidInputError),
        ({"complete": [1, 2]}, InvalidInputError),
        ({"complete": [None]}, InvalidInputError),
        ({"limit": 0}, ValueOutOfRangeError),
        ({"lease": 30}, InvalidInputError),
        ({"queues": []}, InvalidInputError),
        ({"flow_id": uuid.UUID(int=7)}, InvalidInputError),  # a flow's claim completes nothing
    ],
    ids=repr,
)
async def test_a_bad_claim_that_completes_writes_nothing(
    queue: WorkQueuePort, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    await queue.enqueue("k")
    (job,) = await queue.claim("w")
    await queue.enqueue("k")
    kwargs = {"complete": [job], **kwargs}
    with pytest.raises(error):
        await queue.claim("w", **kwargs)
    with pytest.raises(InvalidInputError):
        await queue.claim("w", complete=job)  # type: ignore[arg-type]  # one job, not a list
    with pytest.raises(InvalidInputError):
        await queue.claim("w", complete=[job, replace(job, lease_token=None)])  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        await queue.complete_many([job, "x"])  # type: ignore[list-item]
    assert await queue.depth() == QueueDepth(ready=1, claimed=1)
    assert _states(await queue.list_jobs(states=[JobState.COMPLETED])) == {}


async def test_heartbeat_extends_the_lease(queue: Any) -> None:
    await queue.enqueue("k")
    await queue.enqueue("k")
    jobs = await queue.claim("w", limit=2, lease=SHORT)
    renewed = await queue.heartbeat(jobs, lease=timedelta(minutes=5))
    assert [j.id for j in renewed] == [j.id for j in jobs]
    assert all(
        r.lease_expires_at > j.lease_expires_at + timedelta(minutes=4)
        for r, j in zip(renewed, jobs, strict=False)
    )
    await asyncio.sleep(SHORT.total_seconds() * 2)  # past the first lease: the renewed one holds
    assert await queue.claim("w2") == []
    assert await queue.depth() == QueueDepth(claimed=2)


async def test_a_job_that_dies_on_its_last_attempt_goes_to_history_as_dead(queue: Any) -> None:
    await queue.enqueue("k", max_attempts=2)
    (one,) = await queue.claim("w", lease=SHORT)
    await _until_expired(one, queue)
    (two,) = await queue.claim("w", lease=SHORT)
    assert two.attempt == 2
    await _until_expired(two, queue)
    assert await queue.claim("w") == []  # no crash loop: it is buried by the claim that finds it
    (info,) = await queue.list_jobs()
    assert (info.state, info.attempt) == (JobState.DEAD, 2)
    assert await queue.depth() == QueueDepth()


async def test_fail_backs_off_then_dies_after_max_attempts(queue: Any) -> None:
    await queue.enqueue("k", max_attempts=2)
    (one,) = await queue.claim("w")
    soon = datetime.now(UTC) + timedelta(milliseconds=100)
    assert await queue.fail(one, RuntimeError("flaky"), retry_at=soon) is JobState.READY
    assert await queue.depth() in (QueueDepth(scheduled=1), QueueDepth(ready=1))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not (claimed := await queue.claim("w")):
        assert loop.time() < deadline
        await asyncio.sleep(0.02)
    (two,) = claimed
    assert two.attempt == 2
    assert await queue.fail(two, "still flaky") is JobState.DEAD
    (info,) = await queue.list_jobs()
    assert (info.state, info.last_error) == (JobState.DEAD, "still flaky")


async def test_fail_default_backoff_is_two_to_the_attempt_seconds(queue: Any) -> None:
    await queue.enqueue("k")
    (job,) = await queue.claim("w")
    await queue.fail(job, "x")
    (info,) = await queue.list_jobs()
    assert info.state is JobState.READY
    assert info.last_error == "x"
    wait = (info.not_before - datetime.now(UTC)).total_seconds()
    assert 0.5 < wait <= 2.5
    assert await queue.depth() == QueueDepth(scheduled=1)


async def test_suspend_and_release_keep_the_attempt(queue: Any) -> None:
    await queue.enqueue("k")
    (job,) = await queue.claim("w")
    await queue.release(job)
    (again,) = await queue.claim("w")
    assert again.attempt == job.attempt == 1
    await queue.suspend(again, datetime.now(UTC) + timedelta(hours=1))
    assert await queue.claim("w") == []
    assert await queue.depth() == QueueDepth(scheduled=1)
    (info,) = await queue.list_jobs()
    assert info.attempt == 0  # the next claim makes it 1 again


async def test_cancel_a_delayed_job_and_a_claimed_one(queue: Any) -> None:
    await queue.enqueue("k", key="delayed", not_before=datetime.now(UTC) + timedelta(hours=1))
    assert await queue.cancel("delayed")
    assert not await queue.cancel("delayed")
    assert not await queue.cancel("nobody")
    await queue.enqueue("k", key="running")
    (job,) = await queue.claim("w")
    assert await queue.cancel("running")
    with pytest.raises(JobCancelledError):
        await queue.heartbeat([job])
    with pytest.raises(JobCancelledError):
        await queue.complete(job)  # (finished as cancelled by the heartbeat already)
    states = {j.key: j.state for j in await queue.list_jobs()}
    assert states == {"delayed": JobState.CANCELLED, "running": JobState.CANCELLED}
    assert await queue.depth() == QueueDepth()


async def test_a_completion_after_a_cancel_raises_and_finishes_it_cancelled(queue: Any) -> None:
    await queue.enqueue("k", key="x")
    (job,) = await queue.claim("w")
    await queue.cancel("x")
    with pytest.raises(JobCancelledError):
        await queue.complete(job)
    assert _states(await queue.list_jobs()) == {job.id: JobState.CANCELLED}


async def test_kinds_and_definitions_filter_the_claim(queue: Any) -> None:
    email = await queue.enqueue("email")
    old = await queue.enqueue("flow", definition="demo@" + "1" * 64)
    new = await queue.enqueue("flow", definition="demo@" + "2" * 64)
    other = await queue.enqueue("email", queue="other")
    assert [j.id for j in await queue.claim("w", kinds=["flow"], definitions=["demo@" + "2" * 64])] == [new]
    assert [j.id for j in await queue.claim("w", kinds=["email"], limit=5)] == [email]
    assert [j.id for j in await queue.claim("w", queues=["other", "default"], limit=5)] == [old, other]


async def test_purge_deletes_old_history_in_batches(queue: Any) -> None:
    ids = await queue.enqueue_many([JobSpec("k") for _ in range(7)])
    for job in await queue.claim("w", limit=7):
        await queue.complete(job)
    assert await queue.purge(timedelta(hours=1)) == 0
    assert await queue.purge(datetime.now(UTC) + timedelta(minutes=1), batch_size=3) == 7
    assert await queue.list_jobs() == []
    assert len(ids) == 7


async def test_release_expired_frees_or_buries_every_queue(queue: Any) -> None:
    await queue.enqueue("k", queue="a", max_attempts=1)
    await queue.enqueue("k", queue="b")
    jobs = await queue.claim("w", queues=["a", "b"], limit=2, lease=SHORT)
    for job in jobs:
        await _until_expired(job, queue)
    assert await queue.release_expired() == 2
    assert (await queue.depth(queue="b")).ready == 1
    assert {j.queue: j.state for j in await queue.list_jobs()} == {"a": JobState.DEAD, "b": JobState.READY}


async def test_depth_counts_are_disjoint_and_add_up(queue: Any) -> None:
    await queue.enqueue_many(
        [JobSpec("k"), JobSpec("k"), JobSpec("k", not_before=datetime.now(UTC) + timedelta(hours=1))]
    )
    await queue.enqueue("k", queue="other")
    await queue.claim("w", limit=1, lease=SHORT)
    (held,) = await queue.claim("w", limit=1)
    depth = await queue.depth(queue="default")
    assert depth == QueueDepth(ready=0, scheduled=1, claimed=2, expired=0)
    await _until_expired(held, queue)
    depth = await queue.depth()
    assert (depth.ready, depth.scheduled, depth.claimed, depth.expired) == (1, 1, 1, 1)
    assert depth.total == 4


# --- units of work ---------------------------------------------------------------------------------


async def test_an_enqueue_in_a_rolled_back_unit_of_work_never_happened(queue: Any) -> None:
    woken: list[str] = []
    queue.on_enqueue(woken.append)
    with pytest.raises(ZeroDivisionError):
        async with queue.transaction() as tx:
            await queue.enqueue("k", key="x", tx=tx)
            1 / 0  # noqa: B018
    assert await queue.depth() == QueueDepth()
    assert woken == []
    async with queue.transaction() as tx:
        await queue.enqueue("k", key="x", tx=tx)
        assert woken == []  # woken after the commit, not before
    assert woken == ["default"]


async def test_a_completion_in_a_rolled_back_unit_of_work_leaves_the_job_claimed(queue: Any) -> None:
    await queue.enqueue("k")
    (job,) = await queue.claim("w")
    with pytest.raises(ZeroDivisionError):
        async with queue.transaction() as tx:
            await queue.complete(job, tx=tx)
            await queue.enqueue("next", tx=tx)
            1 / 0  # noqa: B018
    assert await queue.depth() == QueueDepth(claimed=1)
    async with queue.transaction() as tx:
        await queue.complete(job, tx=tx)
        await queue.enqueue("next", tx=tx)
    assert [j.kind for j in await queue.list_jobs()] == ["k", "next"]


# --- bad input: a typed error and nothing written ------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"priority": -1}, ValueOutOfRangeError),
        ({"priority": 2**31}, ValueOutOfRangeError),
        ({"priority": 1.5}, InvalidInputError),
        ({"max_attempts": 0}, ValueOutOfRangeError),
        ({"max_attempts": -3}, ValueOutOfRangeError),
        ({"not_before": datetime(2026, 1, 1)}, InvalidInputError),  # naive
        ({"not_before": "tomorrow"}, InvalidInputError),
        # The driver sends a UTC instant: past the calendar's ends in UTC it cannot, at them it
        # sends infinity (read back as a naive datetime.max): refused on every backend.
        ({"not_before": datetime.max.replace(tzinfo=timezone(timedelta(hours=-1)))}, ValueOutOfRangeError),
        ({"not_before": datetime.max.replace(tzinfo=UTC)}, ValueOutOfRangeError),
        ({"not_before": datetime.min.replace(tzinfo=UTC)}, ValueOutOfRangeError),
        ({"queue": ""}, InvalidInputError),
        ({"queue": "a\x00b"}, InvalidInputError),
        ({"key": "k\x00"}, InvalidInputError),
        ({"key": ""}, InvalidInputError),
        ({"flow_id": "not-a-uuid"}, InvalidInputError),
    ],
    ids=repr,
)
async def test_bad_enqueue_arguments(queue: Any, kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        await queue.enqueue("k", **kwargs)
    with pytest.raises(error):
        await queue.enqueue_many([JobSpec("ok"), JobSpec("k", **kwargs)])
    assert await queue.depth() == QueueDepth()


@pytest.mark.parametrize(
    "payload",
    [object(), math.nan, {"a": math.inf}, {1: "x"}, "nul\x00"],
    ids=["object", "nan", "inf", "int-key", "nul"],
)
async def test_a_payload_that_is_not_json(queue: Any, payload: Any) -> None:
    with pytest.raises(UnstorableValueError):
        await queue.enqueue("k", payload)
    assert await queue.depth() == QueueDepth()


async def test_bad_kinds_and_specs(queue: Any) -> None:
    for bad in ("", None, 3, "x" * 201):
        with pytest.raises(InvalidInputError):
            await queue.enqueue(bad)
    with pytest.raises(InvalidInputError):
        await queue.enqueue_many([{"payload": 1}])  # no kind
    with pytest.raises(InvalidInputError):
        await queue.enqueue_many([{"kind": "k", "colour": "red"}])
    with pytest.raises(InvalidInputError):
        await queue.enqueue_many("kk")
    assert await queue.depth() == QueueDepth()


async def test_a_foreign_lease_token_changes_nothing(queue: Any) -> None:
    await queue.enqueue("k")
    (job,) = await queue.claim("w")
    forged = Job(**{**{f: getattr(job, f) for f in job.__slots__}, "lease_token": uuid.uuid4()})
    for change in (queue.complete(forged), queue.fail(forged, "x"), queue.release(forged)):
        with pytest.raises(LeaseLostError):
            await change
    assert await queue.depth() == QueueDepth(claimed=1)
    await queue.complete(job)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"limit": 0},
        {"limit": -1},
        {"lease": timedelta(0)},
        {"lease": 30},
        {"queues": "default"},
        {"queues": []},
        {"kinds": ["a\x00"]},
    ],
    ids=repr,
)
async def test_bad_claim_arguments(queue: Any, kwargs: dict[str, Any]) -> None:
    await queue.enqueue("k")
    with pytest.raises(InvalidInputError):
        await queue.claim("w", **kwargs)
    with pytest.raises(InvalidInputError):
        await queue.claim("", limit=1)
    assert await queue.depth() == QueueDepth(ready=1)


async def test_run_out_leases_of_one_claim_are_taken_back_by_id(queue: Any) -> None:
    """The jobs one claim took share their lease's end: a smaller claim takes them back in id
    order on every backend, before any ready job. (PostgreSQL's plan chose among them, in the
    order their rows were last written: here the first job's row was written again after the
    second's, by a run-out lease released.)"""
    ids = await queue.enqueue_many([JobSpec("k", {"n": n}, not_before=_PAST) for n in range(2)])
    assert [j.id for j in await queue.claim("w", limit=1, lease=timedelta(microseconds=1))] == ids[:1]
    await _until_leases_run_out(queue, 1)
    assert await queue.release_expired() == 1  # the first job is ready again, due now
    taken = await queue.claim("w", limit=2, lease=timedelta(microseconds=1))
    assert sorted(j.id for j in taken) == ids
    await _until_leases_run_out(queue, 2)
    for expected in ids:
        (again,) = await queue.claim("w2", limit=1)
        assert (again.id, again.worker_id) == (expected, "w2")


async def _until_leases_run_out(queue: Any, count: int) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while (await queue.depth()).expired < count:
        assert loop.time() < deadline, "the leases never ran out"
        await asyncio.sleep(0.01)


@pytest.mark.parametrize(
    ("states", "error"),
    [
        (["finished"], UnknownStatusError),
        ([JobState.READY, 5], UnknownStatusError),
        ("ready", InvalidInputError),
    ],
    ids=repr,
)
async def test_list_jobs_refuses_states_that_do_not_exist(
    queue: Any, states: Any, error: type[Exception]
) -> None:
    await queue.enqueue("k")
    with pytest.raises(error):
        await queue.list_jobs(states=states)
    assert [j.state for j in await queue.list_jobs(states=["ready", JobState.CLAIMED])] == [JobState.READY]
