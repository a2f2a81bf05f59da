"""``WorkQueue``: the durable work queue on PostgreSQL (SPEC 8.1); its SQL is ``sql/queue.py``."""

from __future__ import annotations

import builtins
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import fields, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

import asyncpg

from chem_persistence_async.backends.postgres.database import Database
from chem_persistence_async.backends.postgres.sql import queue as sql
from chem_persistence_async.backends.postgres.sql.query import Query
from chem_persistence_async.codec.fast import COLUMNS_FROM, column_builder
from chem_persistence_async.domain.ids import check_aware, check_int, check_name, to_flow_id
from chem_persistence_async.domain.jobs import (
    CheckedJob,
    Job,
    JobInfo,
    JobSpec,
    JobState,
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
from chem_persistence_async.errors import InvalidInputError
from chem_persistence_async.ports.unit_of_work import Transaction

T = TypeVar("T")

_MAX_ENQUEUE_ROUNDS = 50
_MAX_ERROR_LENGTH = 10_000


class WorkQueue:
    """The ``WorkQueuePort`` on PostgreSQL. On its own an operation goes through ``Database.run``
    (retried on transient failures: every write is keyed by job id and lease token, or by key);
    with ``tx=`` it runs inside that unit of work."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @property
    def database(self) -> Database:
        return self._db

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        return self._db.transaction()

    def on_enqueue(self, callback: Callable[[str], None]) -> Callable[[], None]:
        return self._db.notifier.subscribe(callback)

    async def _run(
        self, tx: Transaction | None, q: Query, values: Mapping[str, Any], operation: str
    ) -> builtins.list[Any]:
        return await self._db.fetch(q, values, tx=tx, operation=operation)

    def _committed(self, tx: Transaction | None, queues: set[str]) -> None:
        """Wake workers for ``queues`` now, or once the unit of work commits."""
        notifier = self._db.notifier
        if tx is None:
            notifier.enqueued(queues)
        else:
            tx.on_commit(lambda: notifier.enqueued(queues))

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
        values = _job_values(job)
        if job.key is None:
            ((job_id,),) = await self._run(tx, sql.ENQUEUE_UNKEYED, values, "enqueue")
            self._committed(tx, {job.queue})
            return int(job_id)
        values["sooner"] = bool(sooner)
        for _ in range(_MAX_ENQUEUE_ROUNDS):
            rows = await self._run(tx, sql.ENQUEUE, values, "enqueue")
            if rows:
                if rows[0][1]:
                    self._committed(tx, {job.queue})
                return int(rows[0][0])
            # The key's holder committed after this statement's snapshot, or finished meanwhile.
        raise InvalidInputError(f"key {key!r} of queue {queue!r} kept changing hands; giving up")

    async def enqueue_many(
        self, specs: Iterable[JobSpec | Mapping[str, Any]], *, tx: Transaction | None = None
    ) -> builtins.list[int]:
        if isinstance(specs, str | bytes | Mapping):
            raise InvalidInputError("enqueue_many takes an iterable of JobSpec (or mappings)")
        jobs = [JobSpec.of(spec).checked() for spec in specs]
        if not jobs:
            return []
        if all(j.key is None for j in jobs):
            rows = await self._run(tx, sql.ENQUEUE_MANY_UNKEYED, _many_values(jobs), "enqueue_many")
            self._committed(tx, {j.queue for j in jobs})
            return sorted(int(row[0]) for row in rows)  # (they ascend in the order given)
        for _ in range(_MAX_ENQUEUE_ROUNDS):
            rows = await self._run(tx, sql.ENQUEUE_MANY, _many_values(jobs), "enqueue_many")
            by_key = {(row[1], row[2]): int(row[0]) for row in rows if row[2] is not None}
            unkeyed = sorted(int(row[0]) for row in rows if row[2] is None)
            if all(j.key is None or (j.queue, j.key) in by_key for j in jobs):
                inserted = {row[1] for row in rows if row[3]}
                if inserted:
                    self._committed(tx, inserted)
                fresh = iter(unkeyed)
                return [next(fresh) if j.key is None else by_key[(j.queue, j.key)] for j in jobs]
            if tx is not None:
                raise InvalidInputError(
                    "a key's holder finished while enqueueing; run the unit of work again"
                )
        raise InvalidInputError("keys kept changing hands while enqueueing; giving up")

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
        """See ``WorkQueuePort.claim``; with ``complete``, the claim's statement finishes those
        jobs first (``sql.claim_query(completing=True)``)."""
        finishing = check_jobs(complete, "complete")
        if flow_id is not None:
            if finishing:
                raise InvalidInputError("claim(flow_id=...) does not complete jobs: use complete_many")
            return await self._claim_for_flow(worker_id, to_flow_id(flow_id), limit, lease, kinds)
        size = check_int(limit, "limit", minimum=1, maximum=10_000)
        names = check_names(queues, "queues")
        values: dict[str, Any] = {
            "worker_id": check_name(worker_id, "worker_id"),
            "limit": size,
            "lease": check_lease(lease),
            "queue": names[0],
            "queues": names,
            "kinds": None if kinds is None else check_names(kinds, "kinds"),
            "definitions": None
            if definitions is None
            else check_names(definitions, "definitions", max_length=400),
        }
        statement = sql.claim_query(size, len(names), completing=bool(finishing))
        if not finishing:
            jobs = _jobs(await self._run(None, statement, values, "claim"))
            jobs.sort(key=claim_order)
            return jobs
        values["ids"] = [j.id for j in finishing]
        values["tokens"] = [j.lease_token for j in finishing]
        rows = await self._run(None, statement, values, "claim")
        width = 1 + len(sql.JOB_COLUMN_NAMES)
        jobs = _jobs([row[1:width] for row in rows if row[0]])
        jobs.sort(key=claim_order)
        outcome = {int(row[1]): (row[-2], row[-1]) for row in rows if not row[0]}
        check_completed(*_unfinished(finishing, outcome), claimed=jobs)
        return jobs

    async def _claim_for_flow(
        self, worker_id: str, flow_id: UUID, limit: int, lease: timedelta, kinds: Sequence[str] | None
    ) -> builtins.list[Job]:
        values = {
            "worker_id": check_name(worker_id, "worker_id"),
            "limit": check_int(limit, "limit", minimum=1, maximum=10_000),
            "lease": check_lease(lease),
            "flow_id": flow_id,
            "kinds": check_names(kinds if kinds is not None else ["flow", "signal"], "kinds"),
        }
        jobs = _jobs(await self._run(None, sql.CLAIM_FOR_FLOW, values, "claim"))
        jobs.sort(key=claim_order)
        return jobs

    async def heartbeat(
        self, jobs: Sequence[Job], *, lease: timedelta = timedelta(seconds=30), tx: Transaction | None = None
    ) -> builtins.list[Job]:
        """Renew the leases of ``jobs``; returns them with their new expiry. A job cancelled
        meanwhile is finished as cancelled (``JobCancelledError``), one taken over by another claim
        changes nothing (``LeaseLostError``); either error carries ``renewed``, the jobs that were."""
        jobs = list(jobs)
        if not jobs:
            return []
        values = {
            "ids": [j.id for j in jobs],
            "tokens": [j.lease_token for j in jobs],
            "lease": check_lease(lease),
        }
        rows = await self._run(tx, sql.HEARTBEAT, values, "heartbeat")
        expiry = {int(row[0]): row[1] for row in rows if not row[2]}
        cancelled = [int(row[0]) for row in rows if row[2]]
        renewed = [_renewed(j, expiry[j.id]) for j in jobs if j.id in expiry]
        lost = [j.id for j in jobs if j.id not in expiry and j.id not in cancelled]
        return check_heartbeat(renewed, cancelled, lost)

    async def complete(self, job: Job, *, tx: Transaction | None = None) -> None:
        """Finish the job (it moves to the history as ``completed``)."""
        await self._finish(job, JobState.COMPLETED, None, tx)

    async def complete_many(self, jobs: Sequence[Job], *, tx: Transaction | None = None) -> None:
        """Finish every job as ``completed`` in ONE statement (see ``WorkQueuePort.complete_many``):
        a batch from one claim costs one round trip and one commit instead of one each."""
        jobs = check_jobs(jobs, "jobs")
        if not jobs:
            return
        values = {"ids": [j.id for j in jobs], "tokens": [j.lease_token for j in jobs]}
        rows = await self._run(tx, sql.FINISH_MANY, values, "complete_many")
        check_completed(*_unfinished(jobs, {int(row[0]): (row[1], row[2]) for row in rows}))

    async def fail(
        self,
        job: Job,
        error: str | BaseException,
        *,
        retry_at: datetime | None = None,
        retry: bool = True,
        tx: Transaction | None = None,
    ) -> JobState:
        """Back to ready after a backoff (``retry_at``, default ``min(2**attempt s, 5 min)`` from now),
        or ``dead`` once ``max_attempts`` are spent or when ``retry`` is false. Returns the state the
        job is in now."""
        message = (str(error) or type(error).__name__)[:_MAX_ERROR_LENGTH]
        if retry_at is not None:
            check_aware(retry_at, "retry_at")
        if job.last_attempt or not retry:
            await self._finish(job, JobState.DEAD, message, tx)
            return JobState.DEAD
        not_before = retry_at or (await self._db_now(tx)) + default_backoff(job.attempt)
        await self._requeue(job, not_before, 0, message, tx)
        return JobState.READY

    async def suspend(self, job: Job, until: datetime, *, tx: Transaction | None = None) -> None:
        """Ready again at ``until``; the next claim has the same ``attempt`` as this one."""
        await self._requeue(job, check_aware(until, "until"), -1, None, tx)

    async def release(self, job: Job, *, tx: Transaction | None = None) -> None:
        """Ready now (graceful shutdown); the next claim has the same ``attempt`` as this one."""
        await self._requeue(job, None, -1, None, tx)

    async def _finish(self, job: Job, state: JobState, error: str | None, tx: Transaction | None) -> None:
        values = {"id": job.id, "token": job.lease_token, "state": state.value, "error": error}
        ((now, before),) = await self._run(tx, sql.FINISH, values, state.value)
        if now == state.value or (now is None and before == state.value):
            return  # (``before``: an earlier run of this finish committed; its answer was lost)
        if now == JobState.CANCELLED.value or before == JobState.CANCELLED.value:
            raise job_cancelled(job.id)
        raise lease_lost(job.id)

    async def _requeue(
        self, job: Job, not_before: datetime | None, delta: int, error: str | None, tx: Transaction | None
    ) -> None:
        values = {
            "id": job.id,
            "token": job.lease_token,
            "not_before": not_before,
            "attempt_delta": delta,
            "error": error,
        }
        ((back, cancelled),) = await self._run(tx, sql.REQUEUE, values, "requeue")
        if back:
            self._committed(tx, {job.queue})
            return
        if cancelled:
            raise job_cancelled(job.id)
        raise lease_lost(job.id)

    async def _db_now(self, tx: Transaction | None) -> datetime:
        rows = await self._run(tx, _NOW, {}, "now")
        value: datetime = rows[0][0]
        return value

    # --- operators --------------------------------------------------------------------------

    async def cancel(self, key: str, *, queue: str = "default", tx: Transaction | None = None) -> bool:
        """A ready (or delayed) job goes to the history as ``cancelled``; a claimed one is marked so
        its worker's next heartbeat or completion raises ``JobCancelledError``."""
        values = {"key": check_name(key, "key"), "queue": check_name(queue, "queue")}
        rows = await self._run(tx, sql.CANCEL, values, "cancel")
        return bool(rows[0][0])

    async def release_expired(self) -> int:
        rows = await self._run(None, sql.RELEASE_EXPIRED, {}, "release_expired")
        return int(rows[0][0])

    async def depth(self, *, queue: str | None = None) -> QueueDepth:
        values = {"queue": None if queue is None else check_name(queue, "queue")}
        ((ready, scheduled, claimed, expired),) = await self._run(None, sql.DEPTH, values, "depth")
        return QueueDepth(ready, scheduled, claimed, expired)

    async def stats(self) -> builtins.list[dict[str, Any]]:
        """Per queue: the depth counts, the oldest due job's age in seconds, and finished counts."""
        rows = await self._run(None, sql.STATS, {}, "stats")
        history = await self._run(None, sql.HISTORY_COUNTS, {}, "stats")
        finished: dict[str, dict[str, int]] = {}
        for queue, state, count in history:
            finished.setdefault(queue, {})[state] = int(count)
        out = []
        for queue, ready, scheduled, claimed, expired, age in rows:
            out.append(
                {
                    "queue": queue,
                    "depth": QueueDepth(ready, scheduled, claimed, expired),
                    "oldest_ready_age_s": None if age is None else float(age),
                    "finished": finished.pop(queue, {}),
                }
            )
        for queue, counts in finished.items():
            out.append(
                {"queue": queue, "depth": QueueDepth(), "oldest_ready_age_s": None, "finished": counts}
            )
        return sorted(out, key=lambda row: row["queue"])

    async def list_jobs(
        self,
        *,
        queue: str | None = None,
        states: Sequence[JobState | str] | None = None,
        flow_id: UUID | None = None,
        limit: int = 100,
    ) -> builtins.list[JobInfo]:
        wanted = check_states(states)
        values = {
            "queue": None if queue is None else check_name(queue, "queue"),
            "states": None if wanted is None else [s.value for s in wanted],
            "flow_id": None if flow_id is None else to_flow_id(flow_id),
            "limit": check_int(limit, "limit", minimum=1, maximum=100_000),
        }
        rows = await self._run(None, sql.LIST_JOBS, values, "list_jobs")
        return [_info(row) for row in rows]

    async def purge(self, older_than: timedelta | datetime, *, batch_size: int = 10_000) -> int:
        """Delete finished jobs older than ``older_than`` (an age or an aware time), in batches of
        ``batch_size`` (each its own short transaction); returns how many were deleted."""
        check_int(batch_size, "batch_size", minimum=1, maximum=1_000_000)
        if isinstance(older_than, timedelta):
            cutoff = await self._db_now(None) - older_than
        else:
            cutoff = check_aware(older_than, "older_than")
        total = 0
        while True:

            async def batch(conn: asyncpg.Connection) -> int:
                status = await conn.execute(
                    sql.PURGE.text, *sql.PURGE.args({"cutoff": cutoff, "batch_size": batch_size})
                )
                return int(status.split()[-1])

            deleted = await self._db.run(batch, operation="purge")
            total += deleted
            if deleted < batch_size:
                return total

    async def run_in_transaction(self, fn: Callable[[Transaction], Awaitable[T]]) -> T:
        return await self._db.run_in_transaction(fn)

    def __repr__(self) -> str:
        return f"<WorkQueue {self._db!r}>"


_NOW = Query("SELECT now()", ())


def _job_values(job: CheckedJob) -> dict[str, Any]:
    return {
        "queue": job.queue,
        "kind": job.kind,
        "key": job.key,
        "payload": job.payload,
        "priority": job.priority,
        "not_before": job.not_before,
        "max_attempts": job.max_attempts,
        "flow_id": job.flow_id,
        "definition": job.definition,
    }


def _many_values(jobs: Sequence[CheckedJob]) -> dict[str, Any]:
    """``enqueue_many``'s parameters: a column every job shares as its one value, any other as an
    array (``sql.queue.SPEC_COLUMNS``)."""
    values: dict[str, Any] = {
        "keys": [j.key for j in jobs],
        "payloads": b"[" + b",".join([j.payload for j in jobs]) + b"]",
    }
    for column, array in _SPEC_ARRAYS:
        each = [getattr(j, column) for j in jobs]
        shared = each[0]
        if each.count(shared) == len(each):
            values[column], values[array] = shared, None
        else:
            values[column], values[array] = None, each
    return values


_SPEC_ARRAYS = [(column, array) for column, array, _ in sql.SPEC_COLUMNS]


def _unfinished(
    jobs: Sequence[Job], outcome: Mapping[int, tuple[str | None, str | None]]
) -> tuple[builtins.list[int], builtins.list[int]]:
    """``FINISH_MANY``'s answer, ``{id: (state finished as now, state an earlier run left)}`` for
    the jobs not completed now (any other was), as the ids of the jobs that were cancelled and of
    those whose lease was lost."""
    done, cancelled = JobState.COMPLETED.value, JobState.CANCELLED.value
    gone_cancelled, lost = [], []
    for job in jobs:
        now, before = outcome.get(job.id, (done, None))
        if now == done or (now is None and before == done):
            continue
        if cancelled in (now, before):
            gone_cancelled.append(job.id)
        else:
            lost.append(job.id)
    return gone_cancelled, lost


if tuple(f.name for f in fields(Job)) != sql.JOB_COLUMN_NAMES:  # pragma: no cover - a guard
    raise RuntimeError("Job's fields and the claim's columns differ: update _jobs")
_build_jobs = column_builder(Job, sql.JOB_COLUMN_NAMES)
"""Claimed jobs from the claim's columns, which are ``Job``'s fields in order (checked above):
a claim of ten built by ``__init__`` with keywords cost 105 µs of client CPU, a third of its
statement's (measured); by columns, positionally under ``COLUMNS_FROM``."""


def _jobs(rows: Sequence[Any]) -> builtins.list[Job]:
    """Claimed jobs from rows of ``sql._JOB_COLUMNS`` (the payload decoded from its JSON)."""
    count = len(rows)
    if count < COLUMNS_FROM:  # (as the builder would: by __init__, without two zips)
        return [_new_job(*row[:4], _decode_json(row[4]), *row[5:]) for row in rows]
    columns: builtins.list[Sequence[Any]] = list(zip(*rows, strict=True))
    columns[4] = list(map(_decode_json, columns[4]))
    return _build_jobs(count, *columns)


_new_job: Callable[..., Job] = Job
"""``Job`` from a claim's columns in order (checked against its fields above)."""

_decode_json = json.JSONDecoder().decode
"""``json.loads`` of a str without its checks (the claim sends the payload as text)."""


def _renewed(job: Job, expiry: datetime) -> Job:
    return replace(job, lease_expires_at=expiry)


def _info(row: Any) -> JobInfo:
    return JobInfo(
        id=row[0],
        queue=row[1],
        kind=row[2],
        key=row[3],
        payload=json.loads(row[4]),
        priority=row[5],
        attempt=row[6],
        max_attempts=row[7],
        flow_id=row[8],
        definition=row[9],
        state=JobState(row[10]),
        not_before=row[11],
        lease_expires_at=row[12],
        worker_id=row[13],
        last_error=row[14],
        created_at=row[15],
        finished_at=row[16],
    )
