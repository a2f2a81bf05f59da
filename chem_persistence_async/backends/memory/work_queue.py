"""``InMemoryWorkQueue``: the reference semantics of the work queue (SPEC 8.1), in memory.

Every method finishes its state change without awaiting in between, so concurrent tasks see each
operation as atomic (as a PostgreSQL statement). Inside a unit of work (``tx=``) each change
records how to undo itself. ``clock`` stands for the database clock.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID, uuid4

from chem_persistence_async.backends.memory.transaction import (
    MemoryTransaction,
    memory_transaction,
    memory_tx,
    run_in_memory_transaction,
)
from chem_persistence_async.domain.ids import check_aware, check_int, check_name, to_flow_id
from chem_persistence_async.domain.jobs import (
    CheckedJob,
    Job,
    JobInfo,
    JobSpec,
    JobState,
    JobWrite,
    QueueDepth,
    check_completed,
    check_heartbeat,
    check_jobs,
    check_lease,
    check_names,
    check_states,
    claim_order,
    default_backoff,
    job_cancelled,
    lease_lost,
)
from chem_persistence_async.errors import InvalidInputError, JobCancelledError, LeaseLostError
from chem_persistence_async.ports.unit_of_work import Transaction

T = TypeVar("T")

_MAX_ERROR_LENGTH = 10_000


@dataclass(slots=True)
class _Row:
    id: int
    job: CheckedJob
    not_before: datetime
    created_at: datetime
    state: JobState = JobState.READY
    attempt: int = 0
    lease_token: UUID | None = None
    lease_expires_at: datetime | None = None
    worker_id: str | None = None
    cancel_requested: bool = False
    last_error: str | None = None
    finished_at: datetime | None = None


class InMemoryWorkQueue:
    """The ``WorkQueuePort`` in a process's memory (tests, notebooks, the reference for parity)."""

    def __init__(self, *, clock: Callable[[], datetime] | None = None) -> None:
        self._clock = clock or (lambda: datetime.now(UTC))
        self._next_id = 0
        self._active: dict[int, _Row] = {}
        self._history: dict[int, _Row] = {}
        self._keys: dict[tuple[str, str], int] = {}
        self._wake: list[Callable[[str], None]] = []

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        return memory_transaction()

    async def run_in_transaction(self, fn: Callable[[Transaction], Awaitable[T]]) -> T:
        return await run_in_memory_transaction(fn)

    def on_enqueue(self, callback: Callable[[str], None]) -> Callable[[], None]:
        self._wake.append(callback)
        return lambda: self._wake.remove(callback) if callback in self._wake else None

    # --- the journal ------------------------------------------------------------------------

    def _touch(self, journal: MemoryTransaction | None, *ids: int) -> None:
        """Before changing rows ``ids`` inside a unit of work, remember them as they are."""
        if journal is None:
            return
        saved = [
            (i, None if i not in self._active else replace(self._active[i]), i in self._history) for i in ids
        ]
        keys = dict(self._keys)

        def undo() -> None:
            for i, row, was_finished in saved:
                if row is None:
                    self._active.pop(i, None)
                else:
                    self._active[i] = row
                if not was_finished:
                    self._history.pop(i, None)
            self._keys.clear()
            self._keys.update(keys)

        journal.record_undo(undo)

    def _committed(self, journal: MemoryTransaction | None, queues: set[str]) -> None:
        def wake() -> None:
            for queue in queues:
                for callback in list(self._wake):
                    callback(queue)

        if journal is None:
            wake()
        else:
            journal.on_commit(wake)

    # --- enqueue ----------------------------------------------------------------------------

    async def enqueue(
        self,
        kind: str,
        payload: Any = None,
        *,
        queue: str = "default",
        key: str | None = None,
        priority: int = 0,
        not_before: datetime | None = None,
        max_attempts: int | None = 3,
        flow_id: UUID | None = None,
        definition: str | None = None,
        sooner: bool = False,
        tx: Transaction | None = None,
    ) -> int:
        job = JobSpec(
            kind, payload, queue, key, priority, not_before, max_attempts, flow_id, definition
        ).checked()
        journal = memory_tx(tx)
        job_id, inserted = self._insert(job, journal)
        if inserted:
            self._committed(journal, {job.queue})
        elif sooner:
            row = self._active[job_id]
            due = job.not_before or self._clock()
            if row.state is JobState.READY and row.not_before > due:
                self._touch(journal, job_id)
                row.not_before = due
                self._committed(journal, {job.queue})
        return job_id

    async def enqueue_many(
        self, specs: Iterable[JobSpec | Mapping[str, Any]], *, tx: Transaction | None = None
    ) -> builtins.list[int]:
        if isinstance(specs, str | bytes | Mapping):
            raise InvalidInputError("enqueue_many takes an iterable of JobSpec (or mappings)")
        jobs = [JobSpec.of(spec).checked() for spec in specs]
        journal = memory_tx(tx)
        ids, queues = [], set()
        for job in jobs:
            job_id, inserted = self._insert(job, journal)
            ids.append(job_id)
            if inserted:
                queues.add(job.queue)
        if queues:
            self._committed(journal, queues)
        return ids

    def _insert(self, job: CheckedJob, journal: MemoryTransaction | None) -> tuple[int, bool]:
        if job.key is not None and (job.queue, job.key) in self._keys:
            return self._keys[(job.queue, job.key)], False
        self._next_id += 1
        job_id = self._next_id
        self._touch(journal, job_id)
        now = self._clock()
        self._active[job_id] = _Row(job_id, job, job.not_before or now, now)
        if job.key is not None:
            self._keys[(job.queue, job.key)] = job_id
        return job_id, True

    # --- claim and what a worker does with a claimed job -----------------------------------------

    async def claim(
        self,
        worker_id: str,
        *,
        limit: int = 1,
        lease: timedelta = timedelta(seconds=30),
        queues: Sequence[str] = ("default",),
        kinds: Sequence[str] | None = None,
        definitions: Sequence[str] | None = None,
        flow_id: UUID | None = None,
        complete: Sequence[Job] = (),
    ) -> builtins.list[Job]:
        finishing = check_jobs(complete, "complete")
        worker = check_name(worker_id, "worker_id")
        limit = check_int(limit, "limit", minimum=1, maximum=10_000)
        lease = check_lease(lease)
        if flow_id is not None:
            if finishing:
                raise InvalidInputError("claim(flow_id=...) does not complete jobs: use complete_many")
            return self._claim_for_flow(worker, to_flow_id(flow_id), limit, lease, kinds)
        wanted = set(check_names(queues, "queues"))
        kind_set = None if kinds is None else set(check_names(kinds, "kinds"))
        definition_set = (
            None if definitions is None else set(check_names(definitions, "definitions", max_length=400))
        )
        # As the SQL does in one statement: finish ``complete`` first, and never claim one of them.
        cancelled, lost = self._complete_all(finishing, None)
        finished = {j.id for j in finishing}
        now = self._clock()

        def eligible(row: _Row) -> bool:
            job = row.job
            return (
                row.id not in finished
                and job.queue in wanted
                and (kind_set is None or job.kind in kind_set)
                and (job.definition is None or definition_set is None or job.definition in definition_set)
            )

        expired: list[_Row] = []
        for name in wanted:  # as the SQL does: at most ``limit`` expired leases per queue
            expired += sorted(
                (
                    r
                    for r in self._active.values()
                    if r.job.queue == name
                    and r.state is JobState.CLAIMED
                    and _expired(r, now)
                    and eligible(r)
                ),
                key=lambda r: (r.lease_expires_at or now, r.id),
            )[:limit]
        picked: list[_Row] = []
        for row in expired:
            if row.job.max_attempts is not None and row.attempt >= row.job.max_attempts:
                self._finish_row(
                    row, JobState.DEAD, row.last_error or "its lease ran out on its last attempt"
                )
            else:
                picked.append(row)
        ready = sorted(
            (
                r
                for r in self._active.values()
                if r.state is JobState.READY and r.not_before <= now and eligible(r)
            ),
            key=lambda r: (-r.job.priority, r.not_before, r.id),
        )
        picked.sort(key=lambda r: (-r.job.priority, r.id))
        claimed = [self._claim_row(row, worker, now, lease) for row in (picked + ready)[:limit]]
        claimed.sort(key=claim_order)
        check_completed(cancelled, lost, claimed=claimed)
        return claimed

    def _claim_for_flow(
        self, worker: str, flow_id: UUID, limit: int, lease: timedelta, kinds: Sequence[str] | None
    ) -> builtins.list[Job]:
        kind_set = set(check_names(kinds if kinds is not None else ["flow", "signal"], "kinds"))
        now = self._clock()
        due = sorted(
            (
                r
                for r in self._active.values()
                if r.job.flow_id == flow_id
                and r.job.kind in kind_set
                and (
                    (r.state is JobState.READY and r.not_before <= now)
                    or (r.state is JobState.CLAIMED and _expired(r, now))
                )
            ),
            key=lambda r: (r.not_before, r.id),
        )[:limit]
        claimed = [self._claim_row(row, worker, now, lease) for row in due]
        claimed.sort(key=claim_order)
        return claimed

    def _claim_row(self, row: _Row, worker: str, now: datetime, lease: timedelta) -> Job:
        row.state = JobState.CLAIMED
        row.attempt += 1
        row.lease_token = uuid4()
        row.lease_expires_at = now + lease
        row.worker_id = worker
        return _job(row)

    def _held(self, job: Job) -> _Row | None:
        row = self._active.get(job.id)
        if row is None or row.lease_token != job.lease_token:
            return None
        return row

    async def heartbeat(
        self, jobs: Sequence[Job], *, lease: timedelta = timedelta(seconds=30), tx: Transaction | None = None
    ) -> builtins.list[Job]:
        lease = check_lease(lease)
        journal = memory_tx(tx)
        jobs = list(jobs)
        self._touch(journal, *(j.id for j in jobs))
        now = self._clock()
        renewed, cancelled, lost = [], [], []
        for job in jobs:
            row = self._held(job)
            if row is None:
                lost.append(job.id)
            elif row.cancel_requested:
                self._finish_row(row, JobState.CANCELLED, row.last_error)
                cancelled.append(job.id)
            else:
                row.lease_expires_at = now + lease
                renewed.append(replace(job, lease_expires_at=row.lease_expires_at))
        return check_heartbeat(renewed, cancelled, lost)

    async def complete(self, job: Job, *, tx: Transaction | None = None) -> None:
        self._finish(job, JobState.COMPLETED, None, memory_tx(tx))

    async def complete_many(self, jobs: Sequence[Job], *, tx: Transaction | None = None) -> None:
        check_completed(*self._complete_all(check_jobs(jobs, "jobs"), memory_tx(tx)))

    def _complete_all(
        self, jobs: Sequence[Job], journal: MemoryTransaction | None
    ) -> tuple[builtins.list[int], builtins.list[int]]:
        """Finish every job that is still held as ``completed``; the ids of those that were
        cancelled (finished as such) and of those whose lease was lost."""
        cancelled, lost = [], []
        for job in jobs:
            try:
                self._finish(job, JobState.COMPLETED, None, journal)
            except JobCancelledError:
                cancelled.append(job.id)
            except LeaseLostError:
                lost.append(job.id)
        return cancelled, lost

    async def fail(
        self,
        job: Job,
        error: str | BaseException,
        *,
        retry_at: datetime | None = None,
        retry: bool = True,
        tx: Transaction | None = None,
    ) -> JobState:
        message = (str(error) or type(error).__name__)[:_MAX_ERROR_LENGTH]
        if retry_at is not None:
            check_aware(retry_at, "retry_at")
        journal = memory_tx(tx)
        if job.last_attempt or not retry:
            self._finish(job, JobState.DEAD, message, journal)
            return JobState.DEAD
        self._requeue(job, retry_at or self._clock() + default_backoff(job.attempt), 0, message, journal)
        return JobState.READY

    async def suspend(self, job: Job, until: datetime, *, tx: Transaction | None = None) -> None:
        self._requeue(job, check_aware(until, "until"), -1, None, memory_tx(tx))

    async def release(self, job: Job, *, tx: Transaction | None = None) -> None:
        self._requeue(job, None, -1, None, memory_tx(tx))

    def require_held(self, job: Job) -> None:
        """``LeaseLostError`` or ``JobCancelledError`` unless ``job`` is held and not being
        cancelled; nothing changes (``InMemoryEventStore.append_with_job`` asks before it writes)."""
        row = self._held(job)
        if row is None:
            raise lease_lost(job.id)
        if row.cancel_requested:
            raise job_cancelled(job.id)

    def apply_write(self, write: JobWrite, journal: MemoryTransaction) -> None:
        """Make ``write`` in the unit of work ``journal`` (with no await: atomic with the append
        that carries it), as PostgreSQL's ``sql.queue.JOB_WRITES_AFTER`` make it."""
        if write.spec is not None:
            if self._insert(write.spec, journal)[1]:
                self._committed(journal, {write.spec.queue})
            return
        assert write.job is not None
        if write.kind == "complete":
            self._finish(write.job, JobState.COMPLETED, None, journal)
        else:
            self._requeue(write.job, write.until, -1, None, journal)

    def _finish(
        self, job: Job, state: JobState, error: str | None, journal: MemoryTransaction | None
    ) -> None:
        row = self._held(job)
        if row is None:
            done = self._history.get(job.id)
            if done is not None and done.lease_token == job.lease_token:
                if done.state is state:
                    return
                if done.state is JobState.CANCELLED:
                    raise job_cancelled(job.id)
            raise lease_lost(job.id)
        self._touch(journal, job.id)
        if row.cancel_requested:
            self._finish_row(row, JobState.CANCELLED, error or row.last_error)
            raise job_cancelled(job.id)
        self._finish_row(row, state, error or row.last_error)

    def _requeue(
        self,
        job: Job,
        not_before: datetime | None,
        delta: int,
        error: str | None,
        journal: MemoryTransaction | None,
    ) -> None:
        row = self._held(job)
        if row is None:
            raise lease_lost(job.id)
        self._touch(journal, job.id)
        if row.cancel_requested:
            self._finish_row(row, JobState.CANCELLED, row.last_error)
            raise job_cancelled(job.id)
        row.state = JobState.READY
        row.not_before = not_before or self._clock()
        row.attempt = max(row.attempt + delta, 0)
        row.lease_token = row.lease_expires_at = row.worker_id = None
        if error is not None:
            row.last_error = error
        self._committed(journal, {row.job.queue})

    def _finish_row(self, row: _Row, state: JobState, error: str | None) -> None:
        del self._active[row.id]
        if row.job.key is not None:
            self._keys.pop((row.job.queue, row.job.key), None)
        row.state = state
        row.last_error = error
        row.finished_at = self._clock()
        self._history[row.id] = row

    # --- operators --------------------------------------------------------------------------

    async def cancel(self, key: str, *, queue: str = "default", tx: Transaction | None = None) -> bool:
        key, queue = check_name(key, "key"), check_name(queue, "queue")
        journal = memory_tx(tx)
        job_id = self._keys.get((queue, key))
        if job_id is None:
            return False
        self._touch(journal, job_id)
        row = self._active[job_id]
        if row.state is JobState.READY:
            self._finish_row(row, JobState.CANCELLED, row.last_error)
        else:
            row.cancel_requested = True
        return True

    async def release_expired(self) -> int:
        now = self._clock()
        count = 0
        for row in list(self._active.values()):
            if row.state is JobState.CLAIMED and _expired(row, now):
                count += 1
                if row.job.max_attempts is not None and row.attempt >= row.job.max_attempts:
                    self._finish_row(
                        row, JobState.DEAD, row.last_error or "its lease ran out on its last attempt"
                    )
                else:
                    row.state = JobState.READY
                    row.not_before = now
                    row.lease_token = row.lease_expires_at = row.worker_id = None
        return count

    async def depth(self, *, queue: str | None = None) -> QueueDepth:
        name = None if queue is None else check_name(queue, "queue")
        now = self._clock()
        ready = scheduled = claimed = expired = 0
        for row in self._active.values():
            if name is not None and row.job.queue != name:
                continue
            if row.state is JobState.READY:
                if row.not_before <= now:
                    ready += 1
                else:
                    scheduled += 1
            elif row.lease_expires_at is not None and row.lease_expires_at >= now:
                claimed += 1
            else:
                expired += 1
        return QueueDepth(ready, scheduled, claimed, expired)

    async def list_jobs(
        self,
        *,
        queue: str | None = None,
        states: Sequence[JobState | str] | None = None,
        flow_id: UUID | None = None,
        limit: int = 100,
    ) -> builtins.list[JobInfo]:
        name = None if queue is None else check_name(queue, "queue")
        checked = check_states(states)
        wanted = None if checked is None else set(checked)
        fid = None if flow_id is None else to_flow_id(flow_id)
        limit = check_int(limit, "limit", minimum=1, maximum=100_000)
        rows = sorted([*self._active.values(), *self._history.values()], key=lambda r: r.id)
        out = []
        for row in rows:
            if name is not None and row.job.queue != name:
                continue
            if wanted is not None and row.state not in wanted:
                continue
            if fid is not None and row.job.flow_id != fid:
                continue
            out.append(_info(row))
            if len(out) == limit:
                break
        return out

    async def purge(self, older_than: timedelta | datetime, *, batch_size: int = 10_000) -> int:
        check_int(batch_size, "batch_size", minimum=1, maximum=1_000_000)
        cutoff = (
            self._clock() - older_than
            if isinstance(older_than, timedelta)
            else check_aware(older_than, "older_than")
        )
        doomed = [
            i for i, row in self._history.items() if row.finished_at is not None and row.finished_at < cutoff
        ]
        for i in doomed:
            del self._history[i]
        return len(doomed)

    def __repr__(self) -> str:
        return f"<InMemoryWorkQueue active={len(self._active)} finished={len(self._history)}>"


def _expired(row: _Row, now: datetime) -> bool:
    return row.lease_expires_at is not None and row.lease_expires_at < now


def _job(row: _Row) -> Job:
    job = row.job
    assert row.lease_token is not None
    assert row.lease_expires_at is not None
    return Job(
        id=row.id,
        queue=job.queue,
        kind=job.kind,
        key=job.key,
        payload=json.loads(job.payload),
        priority=job.priority,
        attempt=row.attempt,
        max_attempts=job.max_attempts,
        flow_id=job.flow_id,
        lease_token=row.lease_token,
        lease_expires_at=row.lease_expires_at,
        created_at=row.created_at,
        definition=job.definition,
        not_before=row.not_before,
        worker_id=row.worker_id,
    )


def _info(row: _Row) -> JobInfo:
    job = row.job
    active = row.finished_at is None
    return JobInfo(
        id=row.id,
        queue=job.queue,
        kind=job.kind,
        key=job.key,
        payload=json.loads(job.payload),
        priority=job.priority,
        attempt=row.attempt,
        max_attempts=job.max_attempts,
        flow_id=job.flow_id,
        definition=job.definition,
        state=row.state,
        not_before=row.not_before if active else None,
        lease_expires_at=row.lease_expires_at if active else None,
        worker_id=row.worker_id,
        last_error=row.last_error,
        created_at=row.created_at,
        finished_at=row.finished_at,
    )
