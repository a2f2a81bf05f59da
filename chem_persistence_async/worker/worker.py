"""``Worker``: claims flow jobs and runs them, many at a time, until it is stopped (SPEC 8.2).

* It claims only jobs of the definitions it was given (by name and hash), at most
  ``concurrency`` at once, woken at once by a local enqueue or a NOTIFY from another process, when
  a job it put off is due (a retry's time, a failed job's backoff, the lease of a job it could not
  give back), and every ``poll_interval`` seconds whatever happens (a lost notification costs
  latency, not a job).
* A heartbeat renews every held lease at a third of the lease; a job whose lease was lost or that
  was cancelled stops being worked on (its commit would be refused anyway).
* ``stop()`` is graceful: nothing more is claimed, running steps get ``grace`` seconds to finish;
  what is still running then is interrupted: its attempt is closed (a runtime failure, retried at
  once if the policy allows) and its job released, in one unit of work, so another worker takes
  it over immediately instead of waiting for the lease.

It runs on any ``Backend`` (a PostgreSQL ``Database``, or ``InMemoryBackend()``): it reaches
every store through it and imports no backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

from chem_persistence_async.domain.definitions import definition_ref
from chem_persistence_async.domain.flow import FlowDefinition
from chem_persistence_async.domain.jobs import Job, JobState, default_backoff
from chem_persistence_async.engine import log_context
from chem_persistence_async.engine.engine import FLOW_JOB, SIGNAL_JOB, FlowEngine
from chem_persistence_async.engine.repository import FlowRepository
from chem_persistence_async.engine.retry_policy import RetryPolicy
from chem_persistence_async.errors import (
    ChemPersistError,
    DefinitionError,
    DefinitionMismatchError,
    FlowNotFoundError,
    InvalidInputError,
    JobCancelledError,
    JobError,
    LeaseLostError,
)
from chem_persistence_async.ports.backend import Backend, WakeListener
from chem_persistence_async.ports.event_store import FlowRecord
from chem_persistence_async.ports.records import FlowRecorder
from chem_persistence_async.ports.unit_of_work import Transaction
from chem_persistence_async.worker.flow_runner import FlowRunner, Holding

logger = logging.getLogger("chem_persistence_async.worker")


@dataclass
class WorkerStats:
    """What a worker did (``worker.stats``)."""

    claimed: int = 0
    completed: int = 0
    suspended: int = 0
    failed: int = 0
    """Jobs that raised (retried with a backoff, or dead when they cannot ever succeed)."""
    lost: int = 0
    """Jobs whose lease was taken over, or that were cancelled, while this worker held them."""
    interrupted: int = 0
    """Jobs released at shutdown with their attempt closed."""
    claims: int = 0
    """Claim statements sent."""


class Worker:
    """Runs flows of ``definitions`` from the work queue of ``db`` (see the module docstring)."""

    def __init__(
        self,
        db: Backend,
        definitions: FlowDefinition | Iterable[FlowDefinition],
        *,
        worker_id: str | None = None,
        concurrency: int = 8,
        queues: Iterable[str] = ("default",),
        lease: timedelta = timedelta(seconds=30),
        poll_interval: float = 1.0,
        listen: bool = True,
        retry_policy: RetryPolicy | None = None,
        grace: float = 30.0,
        records: FlowRecorder | bool = True,
    ) -> None:
        defs = [definitions] if isinstance(definitions, FlowDefinition) else list(definitions)
        if not defs:
            raise DefinitionError("a worker needs at least one FlowDefinition")
        for definition in defs:
            if not isinstance(definition, FlowDefinition):
                raise DefinitionError(f"expected FlowDefinition objects, got {type(definition).__name__}")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise InvalidInputError(f"concurrency must be an int >= 1, got {concurrency!r}")
        if not isinstance(lease, timedelta) or lease <= timedelta(0):
            raise InvalidInputError(f"lease must be a positive timedelta, got {lease!r}")
        if not poll_interval > 0:
            raise InvalidInputError(f"poll_interval must be > 0 seconds, got {poll_interval!r}")
        self._backend = db
        self._definitions = defs
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._concurrency = concurrency
        self._queues = tuple(queues)
        self._lease = lease
        self._poll = poll_interval
        self._listen = listen
        self._grace = grace
        self._queue = db.work_queue()
        store = self._store = db.event_store()
        # Records (SPEC 9.1) by default: the backend's, or the given recorder; False keeps none.
        recorder = db.workflow_records() if records is True else None if records is False else records
        self._engines = {
            definition_ref(d): FlowEngine(
                store, FlowRepository(), d, retry_policy=retry_policy, queue=self._queue, records=recorder
            )
            for d in defs
        }
        self._runner = FlowRunner(db, self._engines, self._queue, lease=lease)
        self._holding: dict[int, tuple[Holding, asyncio.Task[None]]] = {}
        self._wake = asyncio.Event()
        self._due: list[float] = []
        """Loop times when jobs this worker put off are due: it claims then, not at the next poll."""
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.stats = WorkerStats()
        self.started = asyncio.Event()
        """Set once the worker registered its definitions and listens (if it does)."""

    # --- running ----------------------------------------------------------------------------

    @property
    def definitions(self) -> list[str]:
        """``name@hash`` of every definition this worker runs."""
        return list(self._engines)

    @property
    def running(self) -> int:
        return len(self._holding)

    def stop(self) -> None:
        """Stop gracefully: claim nothing more, finish or release what is held (see the module)."""
        self._stopping.set()
        self._wake.set()

    def wake(self, queue: str | None = None) -> None:
        """Claim now rather than at the next poll (for ``queue``, or ``None``: any)."""
        if queue is None or queue in self._queues:
            self._wake.set()

    async def run(self) -> None:
        """Run until ``stop()``; then let running steps finish within the grace period."""
        registry = self._backend.definition_registry()
        for definition in self._definitions:
            await registry.register(definition)
        unsubscribe = self._queue.on_enqueue(self.wake)
        listener: WakeListener | None = self._backend.listener(self.wake) if self._listen else None
        if listener is not None:
            await listener.start()
        heartbeat = asyncio.get_running_loop().create_task(self._heartbeats(), name="chem-persist-heartbeat")
        logger.info(
            "worker %s started: %s on queue(s) %s, concurrency %d",
            self.worker_id,
            ", ".join(d.name for d in self._definitions),
            ", ".join(self._queues),
            self._concurrency,
            extra={"worker_id": self.worker_id},
        )
        self.started.set()
        try:
            await self._claim_loop()
        finally:
            await self._shut_down()
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            if listener is not None:
                await listener.aclose()
            unsubscribe()
            logger.info(
                "worker %s stopped: %s", self.worker_id, self.stats, extra={"worker_id": self.worker_id}
            )

    async def _claim_loop(self) -> None:
        failures = 0
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            self._wake.clear()
            looked = loop.time()
            free = self._concurrency - len(self._holding)
            claimed: list[Job] = []
            sent = time.monotonic()
            if free > 0:
                try:
                    claimed = await self._queue.claim(
                        self.worker_id,
                        limit=free,
                        lease=self._lease,
                        queues=self._queues,
                        kinds=(FLOW_JOB, SIGNAL_JOB),
                        definitions=list(self._engines),
                    )
                    self.stats.claims += 1
                    failures = 0
                except ChemPersistError as exc:
                    failures += 1
                    delay = min(self._poll, 0.05 * 2**failures)
                    logger.warning(
                        "worker %s: claim failed (%s); again in %.2fs",
                        self.worker_id,
                        exc,
                        delay,
                        extra={"worker_id": self.worker_id},
                    )
                    await self._sleep(delay)
                    continue
            read = self._read_ahead(claimed)
            for job in claimed:
                self._start(job, sent, read)
            if claimed and len(claimed) == free:
                continue  # every slot was filled: the next claim waits for one to free up
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._next_wait(looked))

    def _wake_at(self, when: datetime) -> None:
        """Claim again at ``when``, when a job this worker put off becomes due."""
        loop = asyncio.get_running_loop()
        delay = (when - datetime.now(UTC)).total_seconds()
        heapq.heappush(self._due, loop.time() + max(0.0, delay))

    def _next_wait(self, looked: float) -> float:
        """Seconds until the next poll, or until the next job put off is due if that is sooner
        (what was due by ``looked``, the last claim, that claim took, or a freed slot will)."""
        due = self._due
        while due and due[0] <= looked:
            heapq.heappop(due)
        if not due:
            return self._poll
        return min(self._poll, max(0.0, due[0] - asyncio.get_running_loop().time()))

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    def _read_ahead(self, claimed: list[Job]) -> asyncio.Task[dict[uuid.UUID, FlowRecord]] | None:
        """One read of every flow a claim brought (``store.read_flows``: one statement) instead of
        one per job; each job's first replay takes its flow from it (or reads it alone if the read
        failed). Worth it from two flow jobs on."""
        flows = [job.flow_id for job in claimed if job.kind == FLOW_JOB and job.flow_id is not None]
        if len(flows) < 2:
            return None
        task = asyncio.get_running_loop().create_task(self._store.read_flows(flows), name="chem-persist-read")
        task.add_done_callback(_retrieve)
        return task

    def _start(
        self, job: Job, claim_sent: float, read: asyncio.Task[dict[uuid.UUID, FlowRecord]] | None = None
    ) -> None:
        self.stats.claimed += 1
        holding = Holding(job, lease_from=claim_sent, read=read)
        task = asyncio.get_running_loop().create_task(
            self._handle(holding), name=f"chem-persist-job-{job.id}"
        )
        self._holding[job.id] = (holding, task)

    def _log_extra(self, job: Job) -> dict[str, str]:
        return {"worker_id": self.worker_id, "job_id": str(job.id), "flow_id": str(job.flow_id)}

    async def _handle(self, holding: Holding) -> None:
        job = holding.job
        log_context.bind(job_id=str(job.id), worker_id=self.worker_id)
        try:
            if job.kind == SIGNAL_JOB:
                ended = await self._runner.deliver_signal(holding)
            else:
                ended = await self._runner.run(holding, self._log_extra)
            if ended == "completed":
                self.stats.completed += 1
            else:
                self.stats.suspended += 1
                if holding.due is not None:
                    self._wake_at(holding.due)
        except asyncio.CancelledError:
            raise
        except (LeaseLostError, JobCancelledError) as exc:
            self.stats.lost += 1
            logger.info("job %d no longer ours: %s", job.id, exc, extra=self._log_extra(job))
            if isinstance(exc, JobCancelledError):
                await self._finish_cancelled(holding)
        except (FlowNotFoundError, DefinitionMismatchError) as exc:
            self.stats.failed += 1
            logger.error("job %d can never run: %s", job.id, exc, extra=self._log_extra(job))
            await self._give_up(holding, exc, retry=False)
        except Exception as exc:
            self.stats.failed += 1
            # The library's own errors (a database that went away for a while) say all there is to
            # say in one line; anything else is a bug worth its traceback.
            logger.warning(
                "job %d failed: %s",
                job.id,
                exc,
                exc_info=not isinstance(exc, ChemPersistError),
                extra=self._log_extra(job),
            )
            await self._give_up(holding, exc, retry=True)
        finally:
            self._holding.pop(job.id, None)
            self._wake.set()  # a slot is free

    async def _give_up(self, holding: Holding, exc: BaseException, *, retry: bool) -> None:
        """The job goes back with a backoff (or to the dead ones when it can never succeed); the
        worker claims again when it is due, or, if the job could not be given back (the database
        is away), when its lease runs out."""
        job = holding.job
        retry_at = datetime.now(UTC) + default_backoff(job.attempt)
        try:
            state = await self._queue.fail(
                job, f"{type(exc).__name__}: {exc}", retry=retry, retry_at=retry_at
            )
        except JobCancelledError:
            pass
        except ChemPersistError as err:  # the lease ran out meanwhile: the next claim handles it
            logger.info("job %d: could not record its failure: %s", job.id, err, extra=self._log_extra(job))
            # Still claimed, it comes back when its lease runs out. A renewal answered late, or not
            # at all (the database was going away), may have made that later than this worker
            # knows: look once more two leases from now.
            self._wake_at(holding.job.lease_expires_at)
            self._wake_at(datetime.now(UTC) + 2 * self._lease)
        else:
            if state is JobState.READY:
                self._wake_at(retry_at)

    async def _finish_cancelled(self, holding: Holding) -> None:
        """A job cancelled while held is finished as cancelled (outside any unit of work)."""
        with contextlib.suppress(JobCancelledError, LeaseLostError):
            await self._queue.release(holding.job)

    # --- heartbeats and shutdown ------------------------------------------------------------

    async def _heartbeats(self) -> None:
        interval = self._lease.total_seconds() / 3
        while True:
            await asyncio.sleep(interval)
            held = [holding for holding, _ in self._holding.values() if not holding.cancelled]
            if not held:
                continue
            sent = time.monotonic()
            try:
                renewed = await self._queue.heartbeat([h.job for h in held], lease=self._lease)
            except JobError as exc:
                renewed = exc.renewed
                for job_id in (*exc.lost_ids, *exc.cancelled_ids):
                    self._drop(job_id, "cancelled" if job_id in exc.cancelled_ids else "lease lost")
            except ChemPersistError as exc:
                logger.warning("heartbeat failed: %s", exc, extra={"worker_id": self.worker_id})
                continue
            by_id = {job.id: job for job in renewed}
            for holding in held:
                fresh = by_id.get(holding.job.id)
                if fresh is not None:
                    holding.renewed(fresh, sent)

    def _drop(self, job_id: int, why: str) -> None:
        """Stop working on a job that is no longer ours: its commit would be refused anyway."""
        entry = self._holding.get(job_id)
        if entry is None:
            return
        holding, task = entry
        holding.cancelled = True
        logger.info("job %d: %s; stopping its step", job_id, why, extra=self._log_extra(holding.job))
        task.cancel()

    async def _shut_down(self) -> None:
        if not self._holding:
            return
        tasks = [task for _, task in self._holding.values()]
        _, pending = await asyncio.wait(tasks, timeout=self._grace)
        for holding, task in list(self._holding.values()):
            if task in pending:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
                await self._interrupt(holding)

    async def _interrupt(self, holding: Holding) -> None:
        """Close the running attempt and release the job in one unit of work."""
        self.stats.interrupted += 1
        attempt, job = holding.attempt, holding.job
        engine = self._engines.get(job.definition or "")

        async def close(tx: Transaction) -> None:
            if attempt is not None and engine is not None:
                await engine.interrupt(attempt, f"worker {self.worker_id} shut down", tx=tx)
            await self._queue.release(job, tx=tx)

        try:
            await self._backend.run_in_transaction(close)
        except ChemPersistError as exc:  # the flow moved on or the lease is gone: nothing to release
            logger.info("job %d: not released at shutdown: %s", job.id, exc, extra=self._log_extra(job))

    # --- as a context manager ---------------------------------------------------------------

    async def __aenter__(self) -> Worker:
        self._task = asyncio.get_running_loop().create_task(
            self.run(), name=f"chem-persist-worker-{self.worker_id}"
        )
        started = asyncio.ensure_future(self.started.wait())
        await asyncio.wait({started, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if self._task.done():
            started.cancel()
            self._task.result()  # raises why it could not start
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        if self._task is not None:
            await self._task

    def __repr__(self) -> str:
        return f"<Worker {self.worker_id} running={len(self._holding)} {self.stats}>"


def _retrieve(task: asyncio.Task[Any]) -> None:
    """A read ahead that failed is read by the jobs that await it, or by nobody (all of them
    ended first): its exception is retrieved here so it is never reported as lost."""
    if not task.cancelled():
        task.exception()
