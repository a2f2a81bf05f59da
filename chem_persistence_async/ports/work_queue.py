"""``WorkQueuePort``: the durable work queue contract (SPEC 8.1), met by every backend.

Delivery is at least once: a claim hands a job out with a fresh lease token and bumps its
``attempt``; a job whose lease runs out comes back with the next claim (no sweeper). Every change a
worker makes is guarded by its lease token (``LeaseLostError`` once another claim took the job).
Everything takes ``tx=``, so a job's end can commit in the same unit of work as its effects.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable
from uuid import UUID

from chem_persistence_async.domain.artifacts import Artifact
from chem_persistence_async.domain.events import FlowEvent, FlowEventKind
from chem_persistence_async.domain.jobs import Job, JobInfo, JobSpec, JobState, JobWrite, QueueDepth
from chem_persistence_async.domain.projection import FlowProjection
from chem_persistence_async.ports.records import FlowRecorder
from chem_persistence_async.ports.unit_of_work import Transaction


class WorkQueuePort(Protocol):
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
        """The job's id; an active job's id when its ``key`` is taken (nothing written, except that
        with ``sooner`` a ready job holding the key is brought forward to ``not_before``)."""
        ...

    async def enqueue_many(
        self, specs: Iterable[JobSpec | Mapping[str, Any]], *, tx: Transaction | None = None
    ) -> builtins.list[int]: ...

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
        """Due jobs (and run-out leases) in ``queues``; with ``flow_id``, that flow's due jobs of
        ``kinds`` in any queue (what an engine running the flow without workers delivers).

        ``complete``: jobs this worker is done with, finished in the claim's own statement (one
        round trip and one commit per batch instead of two: "bundle the acks with the next
        fetch"), exactly as ``complete_many(complete)`` would finish them; the claim never takes
        one of them back. When some were cancelled or lost, the others are finished and the new
        jobs claimed all the same, then ``complete_many``'s error is raised with the claimed jobs
        on it (``claimed``: the caller holds them). Not with ``flow_id``.

        A parameter of ``claim`` rather than a method of its own: what comes back, its order, its
        arguments and the index use are the claim's; the finish is an add-on that leaves them
        alone, and ``jobs = await queue.claim(worker, limit=10, complete=jobs)`` is the loop."""
        ...

    async def heartbeat(
        self, jobs: Sequence[Job], *, lease: timedelta = timedelta(seconds=30), tx: Transaction | None = None
    ) -> builtins.list[Job]: ...

    async def complete(self, job: Job, *, tx: Transaction | None = None) -> None: ...

    async def complete_many(self, jobs: Sequence[Job], *, tx: Transaction | None = None) -> None:
        """``complete`` of every job in one statement (one round trip, one commit for a batch a
        claim handed out). A job cancelled meanwhile is finished as cancelled and one whose lease
        was taken over is left alone; the others are finished all the same, then
        ``JobCancelledError`` or ``LeaseLostError`` names them (``cancelled_ids``, ``lost_ids``)."""
        ...

    async def fail(
        self,
        job: Job,
        error: str | BaseException,
        *,
        retry_at: datetime | None = None,
        retry: bool = True,
        tx: Transaction | None = None,
    ) -> JobState: ...

    async def suspend(self, job: Job, until: datetime, *, tx: Transaction | None = None) -> None: ...

    async def release(self, job: Job, *, tx: Transaction | None = None) -> None: ...

    async def cancel(self, key: str, *, queue: str = "default", tx: Transaction | None = None) -> bool: ...

    async def release_expired(self) -> int: ...

    async def depth(self, *, queue: str | None = None) -> QueueDepth: ...

    async def list_jobs(
        self,
        *,
        queue: str | None = None,
        states: Sequence[JobState | str] | None = None,
        flow_id: UUID | None = None,
        limit: int = 100,
    ) -> builtins.list[JobInfo]: ...

    async def purge(self, older_than: timedelta | datetime, *, batch_size: int = 10_000) -> int: ...

    def transaction(self) -> AbstractAsyncContextManager[Transaction]: ...

    def on_enqueue(self, callback: Callable[[str], None]) -> Callable[[], None]:
        """Call ``callback(queue)`` once a job for ``queue`` is committed by this process (the
        in-process wake-up of SPEC 8.4); returns the function that unsubscribes it."""
        ...


@runtime_checkable
class QueueCarryingEventStore(Protocol):
    """An event store that can write a job's change (``JobWrite``) as part of an append itself (on
    PostgreSQL, in the append's one statement, with the records when it carries them too): a
    flow's submit, or a step's outcome with the end of the worker's job, is one commit and one
    round trip instead of a unit of work of four."""

    def carries_queue(self, queue: WorkQueuePort) -> bool:
        """Whether ``append_with_job`` can write ``queue``'s jobs (same backend, same database)."""
        ...

    async def append_with_job(
        self,
        flow_id: UUID,
        kinds: Sequence[FlowEventKind],
        job: JobWrite,
        *,
        queue: WorkQueuePort,
        expected_version: int,
        records: FlowProjection | None = None,
        recorder: FlowRecorder | None = None,
        artifacts: Iterable[Artifact] = (),
    ) -> builtins.list[FlowEvent]:
        """``append_many`` at ``expected_version`` with ``job`` written in the same commit, both or
        neither (and ``records`` into ``recorder``, as ``RecordingEventStore.append_recorded``
        does). Events found stored already (this call's earlier attempt, whose answer was lost)
        come back as they are, and the job write is not made again. ``LeaseLostError`` or
        ``JobCancelledError`` when the job to change is no longer held: nothing is written.
        Never inside a unit of work: it is its own commit."""
        ...
