"""Running one claimed flow job: the step's outcome, the flow's next move and the job's own end
commit in ONE unit of work.

For a claimed job the runner replays the flow and asks the planner what comes next:

* a step to run: it appends the attempt's ``StepStarted`` (its lease is the job's), runs the step
  (heartbeats keep the job's lease alive), then appends the outcome (guarded by
  ``expected_version``) together with the next step's ``StepStarted`` or the ``FlowCompleted``.
  When the next step starts in the same append, no job state changes, so that append is the
  whole commit (one statement, which the store's group commit may share with other jobs'
  appends); the lease is checked first (a renewal, guarded by the lease token) unless this
  worker's last renewal was sent less than half a lease ago, when nobody else can hold the job
  yet. When the flow ends or waits, the outcome and the job's completion or suspension commit
  together, and only while the job's lease token still holds it (``engine.commit(job=...)``: ONE
  statement on a store that carries the queue, else one unit of work): if any part fails, none
  of it commits. A job delivered twice commits nothing the second time (``expected_version``),
  and a worker that stalled past its lease commits nothing once another took the job over (its
  renewal or its job write is refused, or its append conflicts with the new holder's);
* a retry not yet due, or an attempt still held by someone else: the job is suspended until
  then; it holds no worker, no connection and no timer meanwhile;
* a flow already done (or one that completes or fails now): the job is completed.

Consecutive steps of one flow run on in the same worker without going back to the queue: each
commit is durable on its own, and the job's lease stays this worker's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar
from uuid import UUID

from chem_persistence_async.domain.flow import FlowInstance
from chem_persistence_async.domain.jobs import Job
from chem_persistence_async.engine.engine import Attempt, FlowEngine, Outcome
from chem_persistence_async.engine.planner import CloseLost, Complete, Done, RunStep, Wait
from chem_persistence_async.errors import ChemPersistError, ConcurrencyConflict
from chem_persistence_async.ports.backend import Backend
from chem_persistence_async.ports.event_store import FlowRecord
from chem_persistence_async.ports.unit_of_work import Transaction
from chem_persistence_async.ports.work_queue import WorkQueuePort

logger = logging.getLogger("chem_persistence_async.worker")

T = TypeVar("T")

_MAX_RELOADS = 20


@dataclass
class Holding:
    """A claimed job as the worker holds it: its latest lease, and the attempt it runs now."""

    job: Job
    lease_from: float = field(default_factory=time.monotonic)
    """``time.monotonic()`` when the request that gave ``job`` its lease was sent: the lease runs
    at least a whole lease from then, whatever the clocks of the client and the server say."""
    attempt: Attempt | None = None
    cancelled: bool = False
    """Its lease was lost or the job was cancelled: nothing more may be committed for it."""
    read: asyncio.Task[dict[UUID, FlowRecord]] | None = None
    """The claim's read of its flows (``Worker._read_ahead``), for this job's first replay."""
    due: datetime | None = None
    """When a job the runner suspended is due again (a retry's time, another starter's lease)."""
    extra: dict[str, str] = field(default_factory=dict)

    def renewed(self, job: Job, sent_at: float | None = None) -> None:
        """Take ``job``'s lease (renewed by a request sent at ``sent_at``), unless the one held
        already runs longer: the answers to two renewals (a heartbeat, a step's commit) may come
        back in either order."""
        if job.lease_expires_at >= self.job.lease_expires_at:
            self.job = job
            if sent_at is not None:
                self.lease_from = max(self.lease_from, sent_at)

    def lease_is_young(self, lease: timedelta) -> bool:
        """Less than half a lease since the last renewal was sent: nobody else can hold the job."""
        return time.monotonic() - self.lease_from < lease.total_seconds() / 2


class FlowRunner:
    """Moves flows of the definitions it knows on, one claimed job at a time. ``lease`` is the
    worker's: each commit renews the job for that long, and the next attempt's lease ends with it."""

    def __init__(
        self, backend: Backend, engines: dict[str, FlowEngine], queue: WorkQueuePort, *, lease: timedelta
    ) -> None:
        self._backend = backend
        self._engines = engines
        self._queue = queue
        self._lease = lease

    async def run(self, holding: Holding, log_extra: Callable[[Job], dict[str, str]]) -> str:
        """Move the job's flow on as far as it can go now; returns how the job ended
        (``completed``, ``suspended``)."""
        job = holding.job
        engine = self._engines[job.definition or ""]
        assert job.flow_id is not None
        for _ in range(_MAX_RELOADS):
            instance = await self._load(engine, holding, job.flow_id)
            try:
                return await self._advance(engine, instance, holding, log_extra)
            except ConcurrencyConflict:
                # Another engine wrote to the flow meanwhile (a run_to_end elsewhere, or the
                # previous holder of this job): replay and decide again.
                logger.info(
                    "flow %s advanced elsewhere; replaying it", job.flow_id, extra=log_extra(holding.job)
                )
                holding.attempt = None
        raise ConcurrencyConflict(job.flow_id, None, None)

    async def _load(self, engine: FlowEngine, holding: Holding, flow_id: UUID) -> FlowInstance:
        """The flow replayed: the first time from the claim's read of its flows when there is
        one (a read that failed, or found no events, is done again here alone)."""
        read, holding.read = holding.read, None
        if read is not None:
            try:
                record = (await read).get(flow_id)
            except ChemPersistError:
                record = None
            if record is not None and record.events:
                return await engine.load(flow_id, record=record)
        return await engine.load(flow_id)

    async def _advance(
        self,
        engine: FlowEngine,
        instance: FlowInstance,
        holding: Holding,
        log_extra: Callable[[Job], dict[str, str]],
    ) -> str:
        queue = self._queue
        action = engine.plan(instance)
        if isinstance(action, Done):
            await queue.complete(holding.job)
            return "completed"
        if isinstance(action, Wait):
            if action.until is None:  # suspended until a signal: its delivery enqueues the flow again
                await queue.complete(holding.job)
                return "completed"
            await queue.suspend(holding.job, action.until)
            holding.due = action.until
            return "suspended"
        if isinstance(action, Complete | CloseLost):

            async def settle(tx: Transaction) -> None:
                await engine.execute(instance, action, tx=tx)
                await queue.complete(holding.job, tx=tx)

            await self._in_transaction(settle)
            return "completed"
        assert isinstance(action, RunStep)
        attempt: Attempt | None = await engine.begin(
            instance, action, lease_until=holding.job.lease_expires_at
        )
        while attempt is not None:
            holding.attempt = attempt
            outcome = await engine.run_attempt(
                attempt
            )  # (the engine logs a failure, job and worker included)
            attempt, ended = await self._commit(engine, holding, attempt, outcome)
            if ended is not None:
                holding.attempt = None
                return ended
        return "suspended"  # pragma: no cover - the loop always ends through ``ended``

    async def _commit(
        self, engine: FlowEngine, holding: Holding, attempt: Attempt, outcome: Outcome
    ) -> tuple[Attempt | None, str | None]:
        """The lease guard, the outcome (with the next step's start or the flow's end), and, when
        the flow ends or waits, the job's next state in the same unit of work. Returns the next
        attempt, or how the job ended."""
        follow = engine.follow(attempt, outcome)
        if engine.chains(attempt, outcome, follow):
            # The next step starts in the outcome's own append and the job stays as it is: that
            # one statement is the whole commit (group commit may share it with other jobs').
            job = await self._guard(holding, None)
            committed = await engine.commit(
                attempt, outcome, chain=True, lease_until=job.lease_expires_at, follow=follow
            )
            if committed.then is not None:
                return committed.then, None
            # Signals delivered while the step ran changed what follows: settle the job now.
            after = committed.instance
            return None, await self._in_transaction(lambda tx: self._settle(engine, holding, after, tx))

        # The flow ends or waits: the outcome and the job's end commit together, and only while
        # the job's lease is this worker's (one statement where the store carries the queue).
        committed = await engine.commit(
            attempt, outcome, job=holding.job, lease_until=holding.job.lease_expires_at, follow=follow
        )
        if committed.then is not None:  # signals delivered meanwhile let the next step start
            return committed.then, None
        if committed.job == "suspended":
            holding.due = committed.due
            return None, "suspended"
        return None, "completed"

    async def _guard(self, holding: Holding, tx: Transaction | None) -> Job:
        """The job with its lease checked and renewed, unless the last renewal is young: then
        nobody else can hold the job, and a job statement later in the unit (its completion, its
        suspension) checks the lease token anyway."""
        if holding.lease_is_young(self._lease) and not holding.cancelled:
            return holding.job
        sent = time.monotonic()
        (renewed,) = await self._queue.heartbeat([holding.job], lease=self._lease, tx=tx)
        if tx is None:
            holding.renewed(renewed, sent)
        else:
            tx.on_commit(lambda: holding.renewed(renewed, sent))
        return renewed

    async def _settle(
        self, engine: FlowEngine, holding: Holding, instance: FlowInstance, tx: Transaction
    ) -> str:
        """The job's next state once its flow ended or waits (in the unit ``tx``): how it ended."""
        queue = self._queue
        follow = engine.plan(instance)
        if isinstance(follow, Done) or (isinstance(follow, Wait) and follow.until is None):
            # Done, or suspended until a signal: no job waits for it; the signal's delivery
            # enqueues one.
            await queue.complete(holding.job, tx=tx)
            return "completed"
        # A retry or a timer not yet due waits in the queue; anything else (a lost attempt to
        # close, a step another engine started) goes round through the queue at once.
        until = follow.until if isinstance(follow, Wait) and follow.until else engine.now()
        await queue.suspend(holding.job, until, tx=tx)
        holding.due = until
        return "suspended"

    async def deliver_signal(self, holding: Holding) -> str:
        """A claimed signal job: its ``StepSignal``, the flow's job made due when the signal lets a
        suspended step go on, and the signal job's end, in one unit of work."""
        job = holding.job
        engine = self._engines[job.definition or ""]
        queue = self._queue

        async def unit(tx: Transaction) -> None:
            await engine.deliver(job, tx=tx)
            await queue.complete(job, tx=tx)

        await self._in_transaction(unit)
        return "completed"

    async def _in_transaction(self, fn: Callable[[Transaction], Awaitable[T]]) -> T:
        """``fn`` in one unit of work, run again from the start after a transient failure (an
        outcome whose commit was lost is found by ``expected_version``: a conflict, then a replay)."""
        return await self._backend.run_in_transaction(fn)
