"""The in-memory and PostgreSQL work queues driven in lockstep by a hypothesis state machine
(SPEC 8).

Every rule makes the same call on ``InMemoryWorkQueue`` and ``WorkQueue``: jobs enqueued one by one
or in batches (keys taken or free, ``sooner``, priorities, due or later, attempts bounded or not,
bad arguments), claimed by kinds and queues with a live or a run-out lease, and what a worker then
does to a job it holds (or held: a stale lease token): heartbeat, complete (one, or many, or with
the next claim), fail with or without a retry, suspend, release; cancels by key, expired leases
released, finished jobs purged; every read. After each rule both queues returned the same (job
ids paired as they are returned, times of either clock left out) or raised the same typed error,
and every job of the example reads back the same.

Times a job is due at are fixed (long past, far off) so that what is due does not depend on either
clock; a lease is 5 minutes, or a microsecond (run out by the next call).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, rule

from chem_persistence_async import (
    InMemoryWorkQueue,
    Job,
    JobSpec,
    WorkQueue,
)
from tests.contracts.test_lockstep import (
    MEMORY,
    POSTGRES,
    DatabaseMachine,
    as_is,
    machine_settings,
    mostly,
    run_lockstep,
    typed,
)

PAST = datetime(2000, 1, 1, tzinfo=UTC)
LATER = datetime(2999, 1, 1, tzinfo=UTC)
QUEUES = ("q1", "q2")
KINDS = ("a", "b")


keys = mostly([None, "k1", "k2", "k3"], ["", "k\x00", 5])
priorities = mostly([0, 1, 5], [-1, 2**31, 1.5])
due = mostly([PAST, None, LATER], [datetime(2000, 1, 1), "soon"])
attempts = mostly([3, 1, None, 2], [0, -1])
payloads = st.none() | st.dictionaries(st.sampled_from(["a", "b"]), st.integers(-3, 3), max_size=2)
leases = st.sampled_from([timedelta(minutes=5), timedelta(minutes=5), timedelta(microseconds=1)])


class QueueLockstep(DatabaseMachine):
    """The work queues (``test_queues_in_lockstep``)."""

    EMPTIED = ("work_queue", "work_queue_history")

    def __init__(self) -> None:
        super().__init__()
        self.queues: tuple[Any, Any] = (InMemoryWorkQueue(), WorkQueue(self.db))
        self.held: tuple[dict[int, Job], dict[int, Job]] = ({}, {})
        """Per backend, by memory's id: the last claim of each job (its lease may be stale)."""

    # --- comparing -----------------------------------------------------------------------------

    def label(self, side: int, job_id: int) -> Any:
        return job_id if side == MEMORY else self.paired.get(job_id, ("unpaired", job_id))

    def _pair_ids(self, ids: list[list[int]]) -> None:
        """Pair the ids two calls returned, position by position."""
        for memory, postgres in zip(ids[0], ids[1], strict=True):
            self.pair(memory, postgres)

    def job_view(self, side: int, job: Any) -> Any:
        """A job as both queues should agree on it: its id paired, neither clock's times, the
        times the machine chose (``PAST``, ``LATER``) kept."""
        out = {}
        for name in type(job).__dataclass_fields__:
            value = getattr(job, name)
            if name in ("created_at", "lease_expires_at", "finished_at", "lease_token"):
                out[name] = value is not None
            elif name == "not_before":
                out[name] = value if value in (PAST, LATER) else "their clock" if value else None
            elif name == "id":
                out[name] = self.label(side, value)
            else:
                out[name] = typed(value)
        return out

    # --- enqueueing ------------------------------------------------------------------------------

    @initialize(count=st.integers(1, 4))
    def first_jobs(self, count: int) -> None:
        """Due jobs of every queue and kind, for the claims to take."""
        specs = [JobSpec(KINDS[i % 2], {"i": i}, QUEUES[i // 2 % 2], not_before=PAST) for i in range(count)]
        self._pair_ids(self.both(lambda s: self.queues[s].enqueue_many(specs), lambda s, r: len(r)))

    def _spec(self, data: st.DataObject) -> dict[str, Any]:
        return dict(
            kind=data.draw(st.sampled_from(KINDS), label="kind"),
            payload=data.draw(payloads, label="payload"),
            queue=data.draw(st.sampled_from(QUEUES), label="queue"),
            key=data.draw(keys, label="key"),
            priority=data.draw(priorities, label="priority"),
            not_before=data.draw(due, label="not_before"),
            max_attempts=data.draw(attempts, label="max_attempts"),
        )

    @rule(data=st.data(), sooner=st.booleans())
    def enqueue(self, data: st.DataObject, sooner: bool) -> None:
        spec = self._spec(data)
        kind = spec.pop("kind")
        payload = spec.pop("payload")
        ids = self.both(
            lambda s: self.queues[s].enqueue(kind, payload, sooner=sooner, **spec), lambda s, r: 0
        )
        if not isinstance(ids[0], type):
            self._pair_ids([[ids[0]], [ids[1]]])

    @rule(data=st.data())
    def enqueue_many(self, data: st.DataObject) -> None:
        specs = [self._spec(data) for _ in range(data.draw(st.integers(0, 3), label="count"))]
        ids = self.both(
            lambda s: self.queues[s].enqueue_many([JobSpec(**spec) for spec in specs]), lambda s, r: len(r)
        )
        if not isinstance(ids[0], type):
            self._pair_ids(ids)

    # --- claiming and working -----------------------------------------------------------------

    @rule(data=st.data(), lease=leases, finish=st.booleans())
    def claim(self, data: st.DataObject, lease: timedelta, finish: bool) -> None:
        """A claim by queues and kinds, with a live lease or none; with ``finish``, the jobs
        held are completed in the claim's own statement."""
        limit = data.draw(st.integers(1, 3), label="limit")
        queues = data.draw(st.lists(st.sampled_from(QUEUES), min_size=1, max_size=2, unique=True))
        kinds = data.draw(st.none() | st.lists(st.sampled_from(KINDS), min_size=1, unique=True))
        held = sorted(self.held[MEMORY])
        chosen = data.draw(st.lists(st.sampled_from(held), unique=True, max_size=2)) if held else []
        done = [[self.held[side][i] for i in chosen] for side in (MEMORY, POSTGRES)]

        async def call(s: int) -> list[Job]:
            return await self.queues[s].claim(
                "w", limit=limit, lease=lease, queues=queues, kinds=kinds, complete=done[s] if finish else ()
            )

        jobs = self.both(call, lambda s, r: [self.job_view(s, j) for j in r])
        if not isinstance(jobs[0], type):
            for side in (MEMORY, POSTGRES):
                for job in jobs[side]:
                    self.held[side][self.label(side, job.id)] = job

    def _held(self, data: st.DataObject) -> list[Any] | None:
        if not self.held[MEMORY]:
            return None
        i = data.draw(st.sampled_from(sorted(self.held[MEMORY])), label="job")
        return [self.held[MEMORY][i], self.held[POSTGRES][i]]

    @rule(data=st.data())
    def work_on_a_job(self, data: st.DataObject) -> None:
        """What a worker does to a job it holds, or held (its lease taken since: stale)."""
        jobs = self._held(data)
        if jobs is None:
            return
        action = data.draw(
            st.sampled_from(["heartbeat", "complete", "complete_many", "fail", "suspend", "release"])
        )
        retry = data.draw(st.booleans(), label="retry")
        retry_at = data.draw(st.sampled_from([None, PAST, LATER]), label="retry_at")
        until = data.draw(st.sampled_from([PAST, LATER]), label="until")

        async def call(s: int) -> Any:
            queue, job = self.queues[s], jobs[s]
            if action == "heartbeat":
                renewed = await queue.heartbeat([job], lease=timedelta(minutes=5))
                return [self.job_view(s, j) for j in renewed]
            if action == "complete":
                return await queue.complete(job)
            if action == "complete_many":
                return await queue.complete_many([job])
            if action == "fail":
                return await queue.fail(job, "boom", retry_at=retry_at, retry=retry)
            if action == "suspend":
                return await queue.suspend(job, until)
            return await queue.release(job)

        self.both(call, lambda s, r: r if isinstance(r, list) else typed(r))

    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        key = data.draw(keys.filter(lambda k: k is not None), label="key")
        queue = data.draw(st.sampled_from(QUEUES), label="queue")
        self.both(lambda s: self.queues[s].cancel(key, queue=queue))

    @rule()
    def release_expired(self) -> None:
        self.both(lambda s: self.queues[s].release_expired())

    @rule(older_than=st.sampled_from([timedelta(0), timedelta(days=1), PAST]))
    def purge(self, older_than: Any) -> None:
        self.both(lambda s: self.queues[s].purge(older_than))

    # --- reads -----------------------------------------------------------------------------------

    @rule(data=st.data())
    def read(self, data: st.DataObject) -> None:
        queue = data.draw(st.sampled_from([None, *QUEUES]), label="queue")
        states = data.draw(
            st.none()
            | st.lists(
                st.sampled_from(["ready", "claimed", "completed", "failed", "cancelled", "bogus"]),
                min_size=1,
                max_size=2,
                unique=True,
            ),
            label="states",
        )
        self.both(lambda s: self.queues[s].depth(queue=queue), as_is)
        self.both(
            lambda s: self.queues[s].list_jobs(queue=queue, states=states, limit=1000),
            lambda s, r: sorted((self.job_view(s, j) for j in r), key=repr),
        )

    @invariant()
    def jobs_read_back_equal(self) -> None:
        self.both(
            lambda s: self.queues[s].list_jobs(limit=1000),
            lambda s, r: sorted((self.job_view(s, j) for j in r), key=repr),
        )
        self.both(lambda s: self.queues[s].depth(), as_is)


def test_queues_in_lockstep(db_url: str) -> None:
    run_lockstep(QueueLockstep, db_url, machine_settings(15))


@pytest.mark.slow
def test_queues_in_lockstep_for_longer(db_url: str) -> None:
    run_lockstep(QueueLockstep, db_url, machine_settings(15, longer=True))
