"""``FlowEngine``: decides the next action by replay, runs one attempt, commits its outcome.

The three are separate so a worker can run them apart and commit the outcome in its own unit of
work (with its next job and the end of its own job):

* ``plan`` (pure, ``engine.planner``): what happens next;
* ``begin`` appends the attempt's ``StepStarted`` (with its lease), ``run_attempt`` runs the step
  and turns what it did into events, touching no storage;
* ``commit`` appends those events, guarded by ``expected_version``: two engines on one flow can
  both run a step, but only one can commit its outcome, so nothing is ever written twice.

None of these sleeps: a retry not yet due is a ``Wait`` action for the caller to honour. Only the
conveniences ``run_next`` (before it writes anything) and ``run_to_end`` wait.
"""

from __future__ import annotations

import logging
import os
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4, uuid5

import anyio

from chem_persistence_async.codec.fast import collector_paused, new_event
from chem_persistence_async.domain.artifacts import Artifact
from chem_persistence_async.domain.canonical import content_hash, normalize_json
from chem_persistence_async.domain.definitions import definition_ref
from chem_persistence_async.domain.events import (
    FlowCompleted,
    FlowEvent,
    FlowEventKind,
    FlowInitialized,
    RetryScheduled,
    StepFailed,
    StepFinished,
    StepSignal,
    StepStarted,
    StepSuspended,
)
from chem_persistence_async.domain.failures import ErrorClass, StepErrorInfo
from chem_persistence_async.domain.fingerprints import failure_fingerprint, step_fingerprint
from chem_persistence_async.domain.flow import FlowDefinition, FlowInstance, StepSlot
from chem_persistence_async.domain.ids import check_name, to_flow_id
from chem_persistence_async.domain.jobs import Job, JobSpec, JobWrite
from chem_persistence_async.domain.projection import APPEND_TIME, FlowProjection, project_flow
from chem_persistence_async.engine import log_context
from chem_persistence_async.engine.artifact_cache import ArtifactCache
from chem_persistence_async.engine.flow_cache import DEFAULT_FLOW_CACHE_SIZE, FlowCache, frozen
from chem_persistence_async.engine.planner import (
    Action,
    CloseLost,
    Complete,
    Done,
    RunStep,
    Wait,
    lost_attempt_events,
    plan,
    previous_fingerprint,
)
from chem_persistence_async.engine.repository import FlowExtender, FlowLoader, Replayed
from chem_persistence_async.engine.retry_policy import RetryPolicy
from chem_persistence_async.engine.step import (
    StepContext,
    StepOutput,
    StepValidationError,
    Suspend,
    classify_error,
)
from chem_persistence_async.errors import (
    ConcurrencyConflict,
    DefinitionError,
    FlowFinishedError,
    FlowNotFoundError,
    InvalidInputError,
    JobCancelledError,
    LeaseLostError,
    MissingArtifactError,
    StepInProgressError,
    UnstorableValueError,
)
from chem_persistence_async.ports.event_store import AsyncEventStore, FlowMark, FlowRecord
from chem_persistence_async.ports.records import FlowRecorder, RecordingEventStore
from chem_persistence_async.ports.unit_of_work import Transaction
from chem_persistence_async.ports.work_queue import QueueCarryingEventStore, WorkQueuePort
from chem_persistence_async.replay import apply_events, initial_instance

logger = logging.getLogger("chem_persistence_async.engine")

_MAX_MESSAGE = 10_000
DEFAULT_ATTEMPT_LEASE = timedelta(seconds=30)
_FIRST_LOOK = timedelta(milliseconds=10)
_LAST_LOOK = timedelta(seconds=1)
"""How often ``run_to_end`` looks again at a step another engine is running."""


@dataclass(frozen=True, slots=True)
class Attempt:
    """A started attempt: the flow right after its ``StepStarted``, and what the step will see."""

    instance: FlowInstance
    ctx: StepContext
    previous: str
    """The fingerprint this step's chains from."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an attempt did, as the events that record it (nothing written yet)."""

    kinds: tuple[FlowEventKind, ...]
    artifacts: tuple[Artifact, ...] = ()
    error_class: ErrorClass | None = None
    """``None`` when the step finished."""
    retry_at: datetime | None = None
    """When a failed attempt will be retried (``None``: finished, or failed for good)."""
    message: str | None = None


@dataclass(frozen=True, slots=True)
class Committed:
    """What ``commit`` wrote: the flow after it, and the next attempt when it started one."""

    instance: FlowInstance
    then: Attempt | None = None
    job: str | None = None
    """With ``commit(job=...)``: how the job ended with it, ``completed`` or ``suspended``."""
    due: datetime | None = None
    """When a job suspended with it is due again."""


_NO_ID = UUID(int=0)
_RECORDED_FLOWS = 10_000
"""Flows whose records version an engine remembers (the oldest is forgotten first)."""
_MAX_REBASES = 20
_MAX_DELIVERY_ROUNDS = 20

SIGNAL_JOB = "signal"
"""The kind of the job that carries a signal to a flow (its key names the flow and the send id)."""


def signal_key(flow_id: UUID, send_id: str) -> str:
    """The signal job's key: one active job per flow and send id."""
    return f"signal:{flow_id}:{send_id}"


def signal_event_id(flow_id: UUID, send_id: str) -> UUID:
    """The delivered ``StepSignal``'s event id, made from the flow and the send id: a signal
    delivered twice (its job delivered twice, or sent twice) is stored once."""
    return uuid5(flow_id, f"signal:{send_id}")


FLOW_JOB = "flow"
"""The kind of the job that moves a flow on (its key is the flow id; no attempt limit)."""


class FlowEngine:
    """Runs flows of one ``FlowDefinition`` against a store, through a repository."""

    def __init__(
        self,
        store: AsyncEventStore,
        repository: FlowLoader,
        definition: FlowDefinition,
        *,
        retry_policy: RetryPolicy | None = None,
        clock: Callable[[], datetime] | None = None,
        attempt_lease: timedelta = DEFAULT_ATTEMPT_LEASE,
        artifact_cache_bytes: int = 16 * 1024 * 1024,
        queue: WorkQueuePort | None = None,
        records: FlowRecorder | None = None,
        flow_cache_size: int = DEFAULT_FLOW_CACHE_SIZE,
    ) -> None:
        if not isinstance(definition, FlowDefinition):
            raise DefinitionError(f"expected a FlowDefinition, got {type(definition).__name__}")
        if attempt_lease <= timedelta(0):
            raise InvalidInputError("attempt_lease must be positive")
        self._store = store
        self._repository = repository
        self._definition = definition
        self._policy = retry_policy or RetryPolicy()
        self._clock = clock or (lambda: datetime.now(UTC))
        self._attempt_lease = attempt_lease
        self._artifacts = ArtifactCache(artifact_cache_bytes)
        self._flows = FlowCache(flow_cache_size)
        """The flows this engine loaded or wrote, replayed, as of a mark the next load reads after."""
        self._extender = repository if self._flows.size and isinstance(repository, FlowExtender) else None
        self._queue = queue
        self._records = records
        self._recorded: dict[UUID, int] = {}
        """Per flow: the version this engine's last recorded append committed (bounded)."""
        self._carrier: RecordingEventStore | None = None
        """The store itself, when it writes the recorder's records inside its appends."""
        if records is not None and isinstance(store, RecordingEventStore) and store.carries(records):
            self._carrier = store
        self._job_carrier: QueueCarryingEventStore | None = None
        """The store itself, when it writes the queue's jobs inside its appends (and the records
        with them, if any are kept)."""
        if (
            queue is not None
            and isinstance(store, QueueCarryingEventStore)
            and store.carries_queue(queue)
            and (records is None or self._carrier is not None)
        ):
            self._job_carrier = store

    @property
    def definition(self) -> FlowDefinition:
        return self._definition

    @property
    def retry_policy(self) -> RetryPolicy:
        return self._policy

    @property
    def store(self) -> AsyncEventStore:
        return self._store

    @property
    def definition_ref(self) -> str:
        """``name@hash``: how flow jobs name the definition they need."""
        return definition_ref(self._definition)

    def now(self) -> datetime:
        return self._clock()

    # --- the conveniences -------------------------------------------------------------------

    async def start(
        self,
        *,
        flow_id: UUID | str | None = None,
        inputs: Mapping[str, Any] | None = None,
        tx: Transaction | None = None,
    ) -> UUID:
        """Append the ``FlowInitialized`` of a new flow and return its id."""
        fid = uuid4() if flow_id is None else to_flow_id(flow_id)
        await self._append(initial_instance(fid, self._definition), [self.initialized(inputs)], tx=tx)
        return fid

    async def submit(
        self,
        *,
        flow_id: UUID | str | None = None,
        inputs: Mapping[str, Any] | None = None,
        priority: int = 0,
        not_before: datetime | None = None,
        queue: str = "default",
    ) -> UUID:
        """Start a flow for the workers: its ``FlowInitialized`` and its first job, in ONE commit
        (one statement on a store that carries the queue, else one unit of work). The job's key is
        the flow id (a flow has at most one active job)."""
        self._require_queue()
        fid = uuid4() if flow_id is None else to_flow_id(flow_id)
        initialized = self.initialized(inputs)
        spec = JobSpec(FLOW_JOB, None, queue, str(fid), priority, not_before, None, fid, self.definition_ref)
        write = JobWrite.enqueue(spec.checked())
        try:
            await self._append(initial_instance(fid, self._definition), [initialized], job=write)
        except ConcurrencyConflict:
            raise InvalidInputError(f"flow {fid} already exists") from None
        return fid

    async def signal(
        self,
        flow_id: UUID | str,
        name: str,
        data: Any = None,
        *,
        delay: timedelta | None = None,
        send_id: str | None = None,
    ) -> str:
        """Send the flow a signal: durable, delivered once (a ``StepSignal`` in its log), after
        ``delay`` if given, cancellable by ``send_id`` until delivered. Returns the send id.

        A worker delivers it (or, where no worker runs, ``run_next``/``run_to_end`` of the flow
        once it is due). Sending the same ``send_id`` twice delivers it once. The flow must exist
        (``FlowNotFoundError``) and not be finished (``FlowFinishedError``); a delayed signal whose
        flow finishes before it is due is dropped when it comes due."""
        work = self._require_queue()
        fid = to_flow_id(flow_id)
        name = check_name(name, "signal name")
        send = uuid4().hex if send_id is None else check_name(send_id, "send_id")
        if delay is not None and (not isinstance(delay, timedelta) or delay < timedelta(0)):
            raise InvalidInputError(f"delay must be a timedelta >= 0, got {delay!r}")
        payload = {"name": name, "data": normalize_json(data), "send_id": send}
        instance = await self.load(fid)
        if instance.completed or instance.failed:
            raise FlowFinishedError(
                f"flow {fid} {'completed' if instance.completed else 'failed'}: it takes no more signals"
            )
        await work.enqueue(
            SIGNAL_JOB,
            payload,
            key=signal_key(fid, send),
            not_before=None if not delay else self._clock() + delay,
            max_attempts=None,
            flow_id=fid,
            definition=self.definition_ref,
        )
        return send

    async def cancel_signal(self, flow_id: UUID | str, send_id: str) -> bool:
        """Cancel a signal not yet delivered; ``True`` if it was (a signal being delivered right
        now is stopped before it commits)."""
        work = self._require_queue()
        return await work.cancel(signal_key(to_flow_id(flow_id), check_name(send_id, "send_id")))

    async def deliver(self, job: Job, *, tx: Transaction, wake_flow: bool = True) -> FlowInstance | None:
        """Deliver a claimed signal job inside ``tx``: append its ``StepSignal`` (at most once), and
        with ``wake_flow`` make the flow's job due now when the signal lets a suspended step go on.
        Returns the flow after it, or ``None`` when the flow had finished (the signal is dropped)."""
        payload = job.payload if isinstance(job.payload, dict) else {}
        fid = to_flow_id(job.flow_id)
        send = str(payload.get("send_id"))
        event_id = signal_event_id(fid, send)
        for _ in range(_MAX_DELIVERY_ROUNDS):
            instance = await self.load(fid, tx=tx)
            if any(r.send_id == send for r in instance.received):
                return instance  # delivered already (this job ran twice, or it was sent twice)
            if instance.completed or instance.failed:
                logger.info(
                    "flow %s finished before signal %s was due: dropped",
                    fid,
                    send,
                    extra=log_context.extra(flow_id=str(fid)),
                )
                return None
            index = min(instance.cursor, len(instance.steps) - 1)
            kind = StepSignal(
                step_index=index,
                step_id=instance.steps[index].step_id,
                signal=str(payload.get("name")),
                data=payload.get("data"),
                send_id=send,
            )
            try:
                after = await self._append(instance, [kind], event_ids=[event_id], tx=tx)
            except ConcurrencyConflict:
                continue  # the flow moved meanwhile: decide again on what it is now
            work = self._queue
            if wake_flow and work is not None and after.suspended and after.steps[after.cursor].resumable:
                await work.enqueue(
                    FLOW_JOB,
                    None,
                    key=str(fid),
                    flow_id=fid,
                    definition=self.definition_ref,
                    max_attempts=None,
                    sooner=True,
                    tx=tx,
                )
            return after
        raise ConcurrencyConflict(fid, None, None)

    async def deliver_due_signals(self, flow_id: UUID | str) -> int:
        """Deliver the flow's signals that are due (what a worker does; for an engine that runs a
        flow itself). Returns how many were delivered or dropped."""
        work = self._queue
        if work is None:
            return 0
        fid = to_flow_id(flow_id)
        jobs = await work.claim(f"engine:{os.getpid()}", limit=100, kinds=[SIGNAL_JOB], flow_id=fid)
        for job in jobs:

            async def unit(tx: Transaction, job: Job = job) -> None:
                await self.deliver(job, tx=tx, wake_flow=False)
                await work.complete(job, tx=tx)

            try:
                await self._store.run_in_transaction(unit)
            except (JobCancelledError, LeaseLostError):
                continue  # cancelled while being delivered, or taken over: not delivered here
        return len(jobs)

    def _require_queue(self) -> WorkQueuePort:
        if self._queue is None:
            raise InvalidInputError("this engine has no queue: FlowEngine(..., queue=WorkQueue(db))")
        return self._queue

    def initialized(self, inputs: Mapping[str, Any] | None = None) -> FlowInitialized:
        """The ``FlowInitialized`` that starts a flow of this engine's definition on ``inputs``."""
        if inputs is not None and not isinstance(inputs, Mapping):
            raise InvalidInputError(f"inputs must be a mapping of JSON values, got {type(inputs).__name__}")
        definition = self._definition
        return FlowInitialized(
            definition_name=definition.name,
            definition_hash=definition.hash,
            step_count=len(definition.steps),
            inputs=normalize_json(dict(inputs or {})),
        )

    async def load(
        self, flow_id: UUID | str, *, tx: Transaction | None = None, record: FlowRecord | None = None
    ) -> FlowInstance:
        """The flow's state, replayed (from ``record`` when it was read already, as
        ``store.read_flows`` reads a batch); ``FlowNotFoundError`` if it has no events.

        With the engine's cache of flows (``flow_cache_size``), a flow loaded or written through
        this engine before is extended by the events after it alone; its JSON values are then
        read-only (``domain.frozen``: the state is handed to every caller that loads it)."""
        fid = to_flow_id(flow_id)
        extender = self._extender
        # The collector stays paused for the whole load, across its read: the read's decode, the
        # replay and the freezing each paused it alone, and between them the first allocation set
        # off the collections all three had deferred, over every event just decoded. A load by a
        # new engine, one process, interleaved: 10 / 100 / 1,000 / 10,000 events 0.60 / 1.72 /
        # 16.6 / 194 ms -> 0.55 / 1.49 / 11.6 / 127; a cached load unchanged (one short read).
        with collector_paused():
            if extender is None:
                repository, store, definition = self._repository, self._store, self._definition
                instance = await repository.load(store, fid, definition, tx=tx, record=record)
            else:
                instance = await self._load_kept(extender, fid, tx, record)
        if instance.version == 0:
            raise FlowNotFoundError(f"flow {flow_id} does not exist (it has no events)")
        return instance

    async def _load_kept(
        self, extender: FlowExtender, fid: UUID, tx: Transaction | None, record: FlowRecord | None
    ) -> FlowInstance:
        """``load`` through the cache: the flow kept, extended; kept again (once ``tx`` commits:
        what a unit of work read may still roll back)."""
        flows = self._flows
        held = flows.get(fid)
        replayed = await extender.load_after(self._store, fid, self._definition, held, tx=tx, record=record)
        if replayed.mark is None:
            flows.forget(fid)
            return replayed.instance
        if replayed is held:
            return replayed.instance
        kept = Replayed(frozen(replayed.instance, None if held is None else held.instance), replayed.mark)
        if tx is None:
            flows.put(fid, kept)
        else:
            tx.on_commit(lambda: flows.put(fid, kept))
        return kept.instance

    async def run_next(self, flow_id: UUID | str) -> FlowInstance:
        """One attempt of the next step (or the ``FlowCompleted``); returns the flow afterwards.

        First delivers the flow's signals that are due (with a queue). Waits for a retry that is
        not due yet (it holds nothing meanwhile). A suspended flow that may not go on yet is
        returned as it is. Raises ``StepInProgressError`` while another engine's attempt holds the
        step, and ``ConcurrencyConflict`` if another engine advanced the flow meanwhile.
        """
        fid = to_flow_id(flow_id)
        await self.deliver_due_signals(fid)
        instance = await self.load(fid)
        while True:
            action = self.plan(instance)
            if isinstance(action, Wait):
                if action.reason == "in_progress":
                    slot = instance.steps[action.index]
                    assert action.until is not None
                    raise StepInProgressError(instance.flow_id, slot.step_id, action.attempt, action.until)
                if action.reason == "suspended" or action.until is None:
                    return instance
                await self._sleep_until(action.until)
                continue
            return await self.execute(instance, action)

    async def run_to_end(
        self, flow_id: UUID | str | None = None, *, inputs: Mapping[str, Any] | None = None
    ) -> UUID:
        """Run a flow until it completes, a step fails for good, or it is suspended; start one if
        no id is given.

        Resumes a flow from wherever its events leave it, whoever wrote them; delivers its due
        signals (with a queue); waits out retries and other engines' attempts in progress; a
        conflict with another engine is resolved by reloading and going on. A suspended flow is
        left waiting (``run_next`` or ``run_to_end`` resume it once it may go on).
        """
        if flow_id is None:
            fid = await self.start(inputs=inputs)
        else:
            if inputs is not None:
                raise InvalidInputError("inputs are given when a flow starts: pass no flow_id")
            fid = to_flow_id(flow_id)
        await self.deliver_due_signals(fid)
        instance = await self.load(fid)
        look_again = _FIRST_LOOK
        while True:
            action = self.plan(instance)
            if isinstance(action, Done):
                return fid
            if isinstance(action, Wait):
                if action.reason == "suspended":
                    return fid
                assert action.until is not None
                if action.reason == "in_progress":
                    # The other starter usually finishes long before its lease runs out: look
                    # again soon, then less and less often, never past the lease.
                    await self._sleep_until(min(action.until, self._clock() + look_again))
                    look_again = min(look_again * 2, _LAST_LOOK)
                else:
                    await self._sleep_until(action.until)
                await self.deliver_due_signals(fid)
                instance = await self.load(fid)
                continue
            look_again = _FIRST_LOOK
            try:
                if isinstance(action, RunStep):
                    attempt: Attempt | None = await self.begin(instance, action)
                    while attempt is not None:  # one append per step: outcome and next start
                        outcome = await self.run_attempt(attempt)
                        committed = await self.commit(attempt, outcome, chain=True)
                        instance, attempt = committed.instance, committed.then
                else:
                    instance = await self.execute(instance, action)
            except ConcurrencyConflict:
                logger.info(
                    "flow %s advanced elsewhere; reloading", fid, extra=log_context.extra(flow_id=str(fid))
                )
                instance = await self.load(fid)

    async def event_codes(self, flow_id: UUID | str) -> list[str]:
        return [event.code for event in await self._store.list(flow_id)]

    async def event_variants(self, flow_id: UUID | str) -> list[str]:
        return list(dict.fromkeys(await self.event_codes(flow_id)))

    async def flow_fingerprint(self, flow_id: UUID | str) -> str | None:
        return (await self.load(flow_id)).fingerprint

    # --- the pieces -------------------------------------------------------------------------

    def plan(self, instance: FlowInstance) -> Action:
        """What happens next to ``instance``, now (pure: see ``engine.planner``)."""
        return plan(instance, self._definition, self._policy, self._clock())

    async def execute(
        self,
        instance: FlowInstance,
        action: Action,
        *,
        lease_until: datetime | None = None,
        tx: Transaction | None = None,
    ) -> FlowInstance:
        """Carry out one non-waiting action: begin, run and commit an attempt, close a lost one, or
        complete the flow. ``tx`` is for the commit only (an attempt's start is committed first)."""
        if isinstance(action, RunStep):
            attempt = await self.begin(instance, action, lease_until=lease_until)
            return (await self.commit(attempt, await self.run_attempt(attempt), tx=tx)).instance
        if isinstance(action, CloseLost):
            return await self.close_lost(instance, action, tx=tx)
        if isinstance(action, Complete):
            return await self.complete(instance, action, tx=tx)
        if isinstance(action, Done):
            return instance
        until = "a signal" if action.until is None else action.until.isoformat()
        raise InvalidInputError(f"{action!r} cannot be executed now: it waits until {until}")

    async def begin(
        self,
        instance: FlowInstance,
        action: RunStep,
        *,
        lease_until: datetime | None = None,
        tx: Transaction | None = None,
    ) -> Attempt:
        """Append the attempt's ``StepStarted`` (after the events closing a lost attempt) with its
        lease (``lease_until``: a worker's job lease; default now + ``attempt_lease``)."""
        index = action.index
        slot = instance.steps[index]
        lease = lease_until or self._clock() + self._attempt_lease
        started = StepStarted(
            step_index=index, step_id=slot.step_id, attempt=action.attempt, lease_until=lease
        )
        kinds = [*action.close, started]
        if action.close:
            logger.warning(
                "flow %s: step %s attempt %d was lost (no outcome by its lease); closing it",
                instance.flow_id,
                slot.step_id,
                slot.attempts,
                extra=log_context.extra(
                    flow_id=str(instance.flow_id), step_id=slot.step_id, attempt=slot.attempts
                ),
            )
        after = await self._append(instance, kinds, tx=tx)
        return await self._attempt(after, index, action.attempt, tx, ())

    async def _attempt(
        self,
        after: FlowInstance,
        index: int,
        attempt: int,
        tx: Transaction | None,
        produced: tuple[Artifact, ...],
    ) -> Attempt:
        """The started attempt ``attempt`` of step ``index`` (its ``StepStarted`` is in ``after``)."""
        inputs = await self._inputs(after.steps[index - 1] if index else None, tx, produced)
        ctx = StepContext(
            flow_id=after.flow_id,
            step_index=index,
            step_id=after.steps[index].step_id,
            attempt=attempt,
            inputs=inputs,
            params=self._definition.params_of(index),
            flow_inputs=after.inputs,
            signals=after.received,
        )
        return Attempt(after, ctx, previous_fingerprint(after, self._definition, index))

    async def run_attempt(self, attempt: Attempt) -> Outcome:
        """Run the step and describe what it did as events. Touches no storage; never raises for
        what the step does (its exceptions become a ``StepFailed`` outcome)."""
        ctx = attempt.ctx
        step: Any = self._definition.steps[ctx.step_index]
        try:
            output = _check_output(await step.run(ctx))
        except Exception as exc:
            return self._failure(attempt, exc)
        hashes = tuple(artifact.hash for artifact in output.artifacts)
        kinds: list[FlowEventKind] = []
        if output.signal is not None:
            kinds.append(
                StepSignal(
                    step_index=ctx.step_index,
                    step_id=ctx.step_id,
                    signal=output.signal,
                    data=output.signal_data,
                )
            )
        if output.suspend is not None:
            kinds.append(
                StepSuspended(
                    step_index=ctx.step_index,
                    step_id=ctx.step_id,
                    attempt=ctx.attempt,
                    until=output.suspend.until,
                    signal=output.suspend.signal,
                )
            )
            return Outcome(tuple(kinds), ())
        kinds.append(
            StepFinished(
                step_index=ctx.step_index,
                step_id=ctx.step_id,
                outputs=hashes,
                fingerprint=step_fingerprint(attempt.previous, ctx.step_id, hashes),
            )
        )
        return Outcome(tuple(kinds), output.artifacts)

    async def commit(
        self,
        attempt: Attempt,
        outcome: Outcome,
        *,
        tx: Transaction | None = None,
        chain: bool = False,
        lease_until: datetime | None = None,
        job: Job | None = None,
        follow: Action | None = None,
    ) -> Committed:
        """Append the outcome, guarded by the version the attempt started at.

        With ``chain``, what comes next goes into the same append when it can: the next step's
        ``StepStarted`` (with ``lease_until``, returned started as ``Committed.then``) or the
        ``FlowCompleted``. One statement per step instead of two; the events are the same.

        With ``job`` (the claimed flow job the attempt runs under), when no next step starts in
        the append, the job ends in the same commit: completed when the flow is done or waits for
        a signal, else suspended until the flow can go on (a retry's time, a timer; now for a
        lost attempt to close), and only while the job's lease is still held (``LeaseLostError``,
        ``JobCancelledError``: nothing written). On a store that carries the queue that is ONE
        statement; otherwise one unit of work. ``Committed.job`` says how it ended. ``job``
        implies ``chain``. ``follow``: ``follow(attempt, outcome)`` when the caller has it already
        (it is computed again only if signals delivered meanwhile change the flow).
        """
        instance, chained = attempt.instance, chain or job is not None
        for _ in range(_MAX_REBASES):
            kinds, started, follow = self._with_follow(instance, outcome.kinds, chained, lease_until, follow)
            end = None if job is None or started is not None else self._job_end(follow, job)
            try:
                after = await self._append(instance, kinds, artifacts=outcome.artifacts, tx=tx, job=end)
                break
            except InvalidInputError as exc:
                if outcome.error_class is not None:
                    raise
                # What the step produced cannot be stored (an artifact over the size limit, NaN in
                # its metadata, an output that is not there): the attempt failed validation.
                outcome = self._failure(attempt, StepValidationError(f"the step's output was refused: {exc}"))
                follow = None  # (the plan after the outcome that goes in now)
            except ConcurrencyConflict:
                # Signals delivered while the step ran do not change what it did: the outcome goes
                # in after them. Anything else written meanwhile means another runner moved on.
                instance, follow = await self._rebase_on_signals(instance, tx), None
        else:
            raise ConcurrencyConflict(instance.flow_id, instance.version, None)
        if outcome.artifacts:
            cache = self._artifacts
            if tx is None:
                cache.put_all(outcome.artifacts)
            else:
                tx.on_commit(lambda: cache.put_all(outcome.artifacts))
        then = None
        if started is not None:
            then = await self._attempt(after, started.step_index, started.attempt, tx, outcome.artifacts)
        if end is None:
            return Committed(after, then)
        return Committed(after, then, "completed" if end.kind == "complete" else "suspended", end.until)

    def follow(self, attempt: Attempt, outcome: Outcome) -> Action:
        """The plan once the outcome is appended (as the flow stands now: signals delivered
        meanwhile may still change it); ``commit(..., follow=)`` takes it instead of working it
        out again."""
        return self._follow(attempt.instance, list(outcome.kinds))

    def chains(self, attempt: Attempt, outcome: Outcome, follow: Action | None = None) -> bool:
        """Whether ``commit(attempt, outcome, chain=True)`` would start the next step in the same
        append (as the flow stands now: signals delivered meanwhile may still change it)."""
        plan_after = self.follow(attempt, outcome) if follow is None else follow
        return isinstance(plan_after, RunStep) and not plan_after.close

    def _job_end(self, follow: Action | None, job: Job) -> JobWrite:
        """How a flow job ends with an append after which ``follow`` is the plan: completed when
        the flow is done or waits for a signal (the signal's delivery enqueues it again), else
        suspended until it can go on (a retry's time, a timer; now for anything else, such as a
        lost attempt to close or a step another engine started)."""
        if isinstance(follow, Complete | Done) or (isinstance(follow, Wait) and follow.until is None):
            return JobWrite.complete(job)
        until = follow.until if isinstance(follow, Wait) and follow.until else self._clock()
        return JobWrite.suspend(job, until)

    async def interrupt(
        self, attempt: Attempt, reason: str, *, tx: Transaction | None = None
    ) -> FlowInstance:
        """End an attempt its runner gives up on (a worker shutting down): a runtime ``StepFailed``
        (``attempt interrupted: reason``) and, if the policy allows, a ``RetryScheduled`` due now,
        so the next runner need not wait for the attempt's lease to run out."""
        instance = attempt.instance
        close = lost_attempt_events(
            instance,
            self._definition,
            self._policy,
            attempt.ctx.step_index,
            self._clock(),
            message=f"attempt interrupted: {reason}",
        )
        return await self._append(instance, close, tx=tx)

    def _with_follow(
        self,
        instance: FlowInstance,
        outcome: tuple[FlowEventKind, ...],
        chain: bool,
        lease_until: datetime | None,
        follow: Action | None = None,
    ) -> tuple[list[FlowEventKind], StepStarted | None, Action | None]:
        """The outcome's events, and with ``chain`` what comes next in the same append: the next
        step's ``StepStarted`` (returned) or the ``FlowCompleted``; and the plan after the
        outcome (``None`` without ``chain``; ``follow`` when it is given)."""
        kinds = list(outcome)
        if chain and follow is None:
            follow = self._follow(instance, kinds)
        elif not chain:
            follow = None
        if isinstance(follow, RunStep) and not follow.close:
            started = StepStarted(
                step_index=follow.index,
                step_id=instance.steps[follow.index].step_id,
                attempt=follow.attempt,
                lease_until=lease_until or self._clock() + self._attempt_lease,
            )
            return [*kinds, started], started, follow
        if isinstance(follow, Complete):
            kinds.append(FlowCompleted(flow_fingerprint=follow.fingerprint))
        return kinds, None, follow

    async def _rebase_on_signals(self, instance: FlowInstance, tx: Transaction | None) -> FlowInstance:
        """``instance`` with the events appended since, if they are all signals from outside;
        else the ``ConcurrencyConflict`` stands."""
        newer = [
            e for e in await self._store.list(instance.flow_id, tx=tx) if e.flow_version > instance.version
        ]
        if not newer or not all(isinstance(e.kind, StepSignal) and e.kind.send_id is not None for e in newer):
            raise ConcurrencyConflict(
                instance.flow_id, instance.version, newer[-1].flow_version if newer else None
            )
        return apply_events(instance, newer, self._definition)

    def _follow(self, instance: FlowInstance, kinds: list[FlowEventKind]) -> Action:
        """What the plan will be once ``kinds`` are appended (on provisional events)."""
        now = self._clock()
        provisional = [
            new_event(0, instance.flow_id, instance.version + i, now, kind, _NO_ID)
            for i, kind in enumerate(kinds, 1)
        ]
        return plan(
            apply_events(instance, provisional, self._definition), self._definition, self._policy, now
        )

    async def close_lost(
        self, instance: FlowInstance, action: CloseLost, *, tx: Transaction | None = None
    ) -> FlowInstance:
        """Close a lost attempt that may not be retried: the flow fails at this step."""
        after = await self._append(instance, action.close, tx=tx)
        slot = instance.steps[action.index]
        logger.warning(
            "flow %s: step %s attempt %d was lost and no retry is left; the flow failed",
            instance.flow_id,
            slot.step_id,
            slot.attempts,
            extra=log_context.extra(
                flow_id=str(instance.flow_id), step_id=slot.step_id, attempt=slot.attempts
            ),
        )
        return after

    async def complete(
        self, instance: FlowInstance, action: Complete, *, tx: Transaction | None = None
    ) -> FlowInstance:
        return await self._append(instance, [FlowCompleted(flow_fingerprint=action.fingerprint)], tx=tx)

    # --- helpers ----------------------------------------------------------------------------

    async def _append(
        self,
        instance: FlowInstance,
        kinds: Sequence[FlowEventKind],
        *,
        artifacts: tuple[Artifact, ...] = (),
        event_ids: Sequence[UUID] | None = None,
        tx: Transaction | None = None,
        job: JobWrite | None = None,
    ) -> FlowInstance:
        """Append ``kinds`` at the version ``instance`` was decided on; returns the flow after them.

        The append succeeded at that version, so these events are exactly what the log now holds
        after it: they are applied rather than read back. With a recorder, the records go in the
        append itself when the store carries them (one statement on PostgreSQL), else they follow
        in the same unit of work (one is opened when none is given). So does ``job``, a change to
        a job of the engine's queue that commits with the events or not at all."""
        store, recorder, definition = self._store, self._records, self._definition
        if job is not None:
            return await self._append_with_job(instance, kinds, job, artifacts, tx)
        carrier = self._carrier
        if carrier is not None and recorder is not None:
            # The records go in the append itself, projected now; written only if the events are.
            after, projection = self._projected(instance, kinds)
            appended = await carrier.append_recorded(
                instance.flow_id,
                kinds,
                projection,
                recorder=recorder,
                expected_version=instance.version,
                artifacts=artifacts,
                event_ids=event_ids,
                tx=tx,
            )
            self._note_recorded(instance.flow_id, after.version, tx)
            return self._advance(
                instance, _after_append(instance, after, kinds, appended, definition), appended, tx
            )
        if recorder is None:
            appended = await store.append_many(
                instance.flow_id,
                kinds,
                artifacts=artifacts,
                expected_version=instance.version,
                event_ids=event_ids,
                tx=tx,
            )
            return self._advance(instance, apply_events(instance, appended, definition), appended, tx)

        async def unit(unit_tx: Transaction) -> FlowInstance:
            appended = await store.append_many(
                instance.flow_id,
                kinds,
                artifacts=artifacts,
                expected_version=instance.version,
                event_ids=event_ids,
                tx=unit_tx,
            )
            after = apply_events(instance, appended, definition)
            await recorder.record_flow(after, definition, appended, tx=unit_tx)
            return self._advance(instance, after, appended, unit_tx)

        if tx is not None:
            return await unit(tx)
        return await store.run_in_transaction(unit)

    async def _append_with_job(
        self,
        instance: FlowInstance,
        kinds: Sequence[FlowEventKind],
        job: JobWrite,
        artifacts: tuple[Artifact, ...],
        tx: Transaction | None,
    ) -> FlowInstance:
        """``_append`` with ``job``: in the append's own statement when the store carries the
        queue, else in one unit of work (``tx``, or one opened here)."""
        queue = self._require_queue()
        carrier = self._job_carrier
        if carrier is None or tx is not None:

            async def unit(unit_tx: Transaction) -> FlowInstance:
                after = await self._append(instance, kinds, artifacts=artifacts, tx=unit_tx)
                await _write_job(queue, job, unit_tx)
                return after

            return await (unit(tx) if tx is not None else self._store.run_in_transaction(unit))
        definition, recorder, fid = self._definition, self._records, instance.flow_id
        after, projection = self._projected(instance, kinds) if recorder is not None else (None, None)
        appended = await carrier.append_with_job(
            fid,
            kinds,
            job,
            queue=queue,
            expected_version=instance.version,
            records=projection,
            recorder=recorder,
            artifacts=artifacts,
        )
        if after is None:
            return self._advance(instance, apply_events(instance, appended, definition), appended, None)
        self._note_recorded(fid, after.version, None)
        return self._advance(
            instance, _after_append(instance, after, kinds, appended, definition), appended, None
        )

    def _advance(
        self,
        instance: FlowInstance,
        after: FlowInstance,
        appended: Sequence[FlowEvent],
        tx: Transaction | None,
    ) -> FlowInstance:
        """The flow after this engine appended ``appended`` to ``instance``; kept in the cache when
        ``instance`` is the state kept there (read from the store, proved by its mark: the append,
        made at its version, then holds exactly what the store holds), once ``tx`` commits."""
        flows = self._flows
        entry = flows.get(instance.flow_id) if flows.holds(instance) else None
        if entry is None or entry.mark is None or not appended:
            return after
        if appended[0].flow_version != instance.version + 1 or appended[-1].flow_version != after.version:
            return after
        failures = sum(1 for event in appended if isinstance(event.kind, StepFailed))
        mark = FlowMark.of(appended, entry.mark.errors + failures, entry.mark.first_seq)
        kept = Replayed(frozen(after, instance), mark)
        fid = instance.flow_id

        def keep() -> None:
            if flows.holds(instance):
                flows.put(fid, kept)

        if tx is None:
            keep()
        else:
            tx.on_commit(keep)
        return kept.instance

    def _projected(
        self, instance: FlowInstance, kinds: Sequence[FlowEventKind]
    ) -> tuple[FlowInstance, FlowProjection]:
        """``projected_append`` for an append that carries its records. When this engine's own
        recorded append left the flow at this version, the stored records are there too (any
        other append since would make this one conflict): only the stages ``kinds`` name need
        writing."""
        known = self._recorded.get(instance.flow_id) == instance.version
        return projected_append(instance, kinds, self._definition, named_only=known)

    def _note_recorded(self, flow_id: UUID, version: int, tx: Transaction | None) -> None:
        """Remember that the flow's records are at ``version`` (once ``tx`` commits)."""

        def note() -> None:
            recorded = self._recorded
            recorded.pop(flow_id, None)
            if len(recorded) >= _RECORDED_FLOWS:
                del recorded[next(iter(recorded))]  # the oldest
            recorded[flow_id] = version

        if tx is None:
            note()
        else:
            tx.on_commit(note)

    async def _sleep_until(self, until: datetime) -> None:
        wait = (until - self._clock()).total_seconds()
        if wait > 0:
            await anyio.sleep(wait)

    def _failure(self, attempt: Attempt, exc: Exception) -> Outcome:
        """The ``StepFailed`` (and its ``RetryScheduled`` when the policy retries) for ``exc``."""
        ctx = attempt.ctx
        slot: StepSlot = attempt.instance.steps[ctx.step_index]
        error_class = classify_error(exc)
        message = (str(exc) or type(exc).__name__)[:_MAX_MESSAGE]
        details: dict[str, Any] = {
            "stack_trace": "".join(traceback.format_exception(exc))[-_MAX_MESSAGE:],
            "input_hash": content_hash([artifact.hash for artifact in ctx.inputs]),
            "params": _jsonable(ctx.params),
            "exception_type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        }
        extra = getattr(exc, "details", None)
        if isinstance(extra, Mapping) and extra:
            details["extra"] = _jsonable(extra)
        retry_count = slot.retry_count
        policy = self._policy
        kinds: list[FlowEventKind] = [
            StepFailed(
                step_index=ctx.step_index,
                step_id=ctx.step_id,
                attempt=ctx.attempt,
                error=StepErrorInfo(error_class=error_class, message=message, details=details),
                retry_count=retry_count,
                max_retries=policy.max_retries,
                fingerprint=failure_fingerprint(
                    attempt.previous, ctx.step_id, ctx.attempt, error_class.value
                ),
            )
        ]
        retry_at = None
        if policy.should_retry(error_class, retry_count):
            retry_at = self._clock() + policy.backoff(retry_count + 1)
            kinds.append(
                RetryScheduled(
                    step_index=ctx.step_index,
                    step_id=ctx.step_id,
                    retry_index=retry_count + 1,
                    reason=f"{error_class.value}: {message[:200]}",
                    not_before=retry_at,
                )
            )
        logger.info(
            "flow %s: step %s attempt %d failed (%s): %s; %s",
            ctx.flow_id,
            ctx.step_id,
            ctx.attempt,
            error_class.value,
            message.splitlines()[0][:200] if message else "",
            f"retry at {retry_at.isoformat()}" if retry_at else "no retry",
            extra=log_context.extra(
                flow_id=str(ctx.flow_id),
                step_id=ctx.step_id,
                attempt=ctx.attempt,
                error_class=error_class.value,
            ),
        )
        return Outcome(tuple(kinds), (), error_class, retry_at, message)

    async def _inputs(
        self, previous: StepSlot | None, tx: Transaction | None, produced: tuple[Artifact, ...] = ()
    ) -> tuple[Artifact, ...]:
        if previous is None or not previous.outputs:
            return ()
        fresh = {artifact.hash: artifact for artifact in produced}
        if all(h in fresh for h in previous.outputs):
            return tuple(fresh[h] for h in previous.outputs)
        cache = self._artifacts
        missing = [h for h in previous.outputs if h not in cache]
        if missing:
            cache.put_all((await self._store.get_artifacts(missing, tx=tx)).values())
        found = {h: cache.get(h) for h in previous.outputs}
        absent = [h for h, artifact in found.items() if artifact is None]
        if absent:
            raise MissingArtifactError(
                f"inputs of the step after {previous.step_id!r} are not stored: "
                + ", ".join(h[:16] + "…" for h in absent)
            )
        return tuple(artifact for artifact in found.values() if artifact is not None)


def _after_append(
    instance: FlowInstance,
    after: FlowInstance,
    kinds: Sequence[FlowEventKind],
    appended: Sequence[FlowEvent],
    definition: FlowDefinition,
) -> FlowInstance:
    """The flow after an append whose state ``after`` was projected before it: that one, unless a
    ``StepFailed`` went in (its error row in the state has the stored time and seq; nothing else
    in a flow's state comes from the database)."""
    if any(isinstance(kind, StepFailed) for kind in kinds):
        return apply_events(instance, appended, definition)
    return after


async def _write_job(queue: WorkQueuePort, job: JobWrite, tx: Transaction) -> None:
    """``job`` through the queue's own API, in the unit of work ``tx`` (a store that does not
    carry the queue)."""
    if job.spec is not None:
        spec = job.spec
        await queue.enqueue(
            spec.kind,
            None,
            queue=spec.queue,
            key=spec.key,
            priority=spec.priority,
            not_before=spec.not_before,
            max_attempts=spec.max_attempts,
            flow_id=spec.flow_id,
            definition=spec.definition,
            tx=tx,
        )
    elif job.job is not None and job.kind == "complete":
        await queue.complete(job.job, tx=tx)
    elif job.job is not None and job.until is not None:
        await queue.suspend(job.job, job.until, tx=tx)


def projected_append(
    instance: FlowInstance,
    kinds: Sequence[FlowEventKind],
    definition: FlowDefinition,
    *,
    named_only: bool = False,
) -> tuple[FlowInstance, FlowProjection]:
    """The flow once ``kinds`` are appended after ``instance``, and its records, made before the
    append: on provisional events whose time is ``APPEND_TIME`` and ``seq`` 0 (the store puts in
    the time it wrote them at; only a ``StepFailed``'s error row in the state has either). With
    ``named_only``, the records hold only the stages ``kinds`` name."""
    fid, version = instance.flow_id, instance.version
    provisional = [
        new_event(0, fid, version + i, APPEND_TIME, kind, _NO_ID) for i, kind in enumerate(kinds, 1)
    ]
    after = apply_events(instance, provisional, definition)
    return after, project_flow(after, definition, provisional, named_only=named_only)


def _check_output(output: object) -> StepOutput:
    if not isinstance(output, StepOutput):
        raise StepValidationError(f"step returned {type(output).__name__}, not StepOutput")
    for artifact in output.artifacts:
        if not isinstance(artifact, Artifact):
            raise StepValidationError(f"step output holds {type(artifact).__name__}, not Artifact")
        if not artifact.content_matches():
            raise StepValidationError(f"artifact {artifact.hash[:16]}… does not match its content")
    if output.suspend is not None:
        if not isinstance(output.suspend, Suspend):
            raise StepValidationError(f"suspend must be a Suspend, not {type(output.suspend).__name__}")
        if output.artifacts:
            raise StepValidationError("a step that suspends produces no artifacts (it runs again later)")
    if output.signal is None:
        return output
    try:
        data = normalize_json(output.signal_data)
    except UnstorableValueError as exc:
        raise StepValidationError(f"signal data cannot be stored: {exc}") from None
    return replace(output, signal_data=data)


def _jsonable(value: Mapping[str, Any]) -> Any:
    try:
        return normalize_json(dict(value))
    except UnstorableValueError:
        return {key: repr(item) for key, item in value.items()}
