"""Jobs of the work queue (SPEC 8.1): what is enqueued, what a claim hands out, what depth counts.

``JobSpec.checked`` is the one place enqueue arguments are validated, for every backend, before
anything is written.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal, NamedTuple
from uuid import UUID

from chem_persistence_async.domain.canonical import canonical_json
from chem_persistence_async.domain.ids import (
    BIGINT_MAX,
    INT_MAX,
    MAX_NAME_LENGTH,
    check_aware,
    check_int,
    check_name,
    text_argument,
    to_flow_id,
)
from chem_persistence_async.errors import (
    InvalidInputError,
    JobCancelledError,
    LeaseLostError,
    UnknownStatusError,
    ValueOutOfRangeError,
)

MAX_KEY_LENGTH = 500
MAX_BACKOFF = timedelta(minutes=5)


class JobState(StrEnum):
    READY = "ready"
    CLAIMED = "claimed"
    COMPLETED = "completed"
    DEAD = "dead"
    CANCELLED = "cancelled"


FINISHED_STATES = frozenset({JobState.COMPLETED, JobState.DEAD, JobState.CANCELLED})


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One job to enqueue: ``enqueue``'s parameters as fields (``kind`` required)."""

    kind: str
    payload: Any = None
    queue: str = "default"
    key: str | None = None
    priority: int = 0
    not_before: datetime | None = None
    max_attempts: int | None = 3
    """``None``: no limit (flow jobs)."""
    flow_id: UUID | None = None
    definition: str | None = None
    """For flow jobs: ``name@hash`` of the definition, so only workers that know it claim it."""

    @classmethod
    def of(cls, spec: JobSpec | Mapping[str, Any]) -> JobSpec:
        """A ``JobSpec`` from itself or from a mapping of the same fields."""
        if isinstance(spec, JobSpec):
            return spec
        if not isinstance(spec, Mapping):
            raise InvalidInputError(f"a job spec is a JobSpec or a mapping, not {type(spec).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(spec) - known)
        if unknown:
            raise InvalidInputError(f"unknown job spec field(s): {', '.join(map(str, unknown))}")
        if "kind" not in spec:
            raise InvalidInputError("a job spec needs a kind")
        return cls(**spec)

    def checked(self) -> CheckedJob:
        """Validate every field; the payload becomes canonical JSON bytes.

        Kinds and queues are few and repeat from job to job: a name checked once is remembered
        (``_known_name``), and in-range ints of the exact type skip the general check, so a batch
        of one kind costs its payloads' encoding and little else."""
        kind, queue = self.kind, self.queue
        if type(kind) is not str or kind not in _KNOWN_NAMES:
            kind = _known_name(check_name(kind, "kind"))
        if type(queue) is not str or queue not in _KNOWN_NAMES:
            queue = _known_name(check_name(queue, "queue"))
        key = None if self.key is None else text_argument(self.key, "key", max_length=MAX_KEY_LENGTH)
        if self.key is not None and not key:
            raise InvalidInputError("key must not be empty (use None for no key)")
        priority = self.priority
        if type(priority) is not int or not 0 <= priority <= INT_MAX:
            priority = check_int(priority, "priority", minimum=0)
        max_attempts = self.max_attempts
        if max_attempts is not None and (type(max_attempts) is not int or not 1 <= max_attempts <= INT_MAX):
            max_attempts = check_int(max_attempts, "max_attempts", minimum=1)
        not_before = None if self.not_before is None else check_aware(self.not_before, "not_before")
        flow_id = None if self.flow_id is None else to_flow_id(self.flow_id)
        definition = (
            None if self.definition is None else check_name(self.definition, "definition", max_length=400)
        )
        return CheckedJob(
            kind,
            queue,
            key,
            canonical_json(self.payload),
            priority,
            not_before,
            max_attempts,
            flow_id,
            definition,
        )


_KNOWN_NAMES: dict[str, None] = {}
_KNOWN_NAMES_MAX = 1024


def _known_name(name: str) -> str:
    """Remember ``name`` as a valid kind or queue name (``check_name`` passed it); the memory is
    bounded: when full it starts again."""
    if len(_KNOWN_NAMES) >= _KNOWN_NAMES_MAX:
        _KNOWN_NAMES.clear()
    _KNOWN_NAMES[name] = None
    return name


class CheckedJob(NamedTuple):
    """A ``JobSpec`` that passed ``checked``: what the backends write. A named tuple rather than a
    frozen dataclass: ``enqueue_many`` makes one per job, and a frozen dataclass's ``__init__``
    (one ``object.__setattr__`` per field) cost 1.5 of the 6.3 µs that checking a job took."""

    kind: str
    queue: str
    key: str | None
    payload: bytes
    priority: int
    not_before: datetime | None
    max_attempts: int | None
    flow_id: UUID | None
    definition: str | None


@dataclass(frozen=True, slots=True)
class Job:
    """A claimed job. ``lease_token`` guards every change a worker makes to it."""

    id: int
    queue: str
    kind: str
    key: str | None
    payload: Any
    priority: int
    attempt: int
    max_attempts: int | None
    flow_id: UUID | None
    lease_token: UUID
    lease_expires_at: datetime
    created_at: datetime
    definition: str | None = None
    not_before: datetime | None = None
    worker_id: str | None = None

    @property
    def last_attempt(self) -> bool:
        return self.max_attempts is not None and self.attempt >= self.max_attempts


@dataclass(frozen=True, slots=True)
class JobWrite:
    """What an append of a flow's events does to a job in the same commit (``QueueCarryingEventStore``
    writes it in the append's own statement): ``enqueue`` the flow's first job (``spec``), or, for
    the claimed ``job`` whose lease must still be held, ``complete`` it, ``suspend`` it until
    ``until`` (ready again then, the same attempt next time). Nothing of either is written without
    the other."""

    kind: Literal["enqueue", "complete", "suspend"]
    spec: CheckedJob | None = None
    job: Job | None = None
    until: datetime | None = None

    @classmethod
    def enqueue(cls, spec: CheckedJob) -> JobWrite:
        return cls("enqueue", spec=spec)

    @classmethod
    def complete(cls, job: Job) -> JobWrite:
        return cls("complete", job=job)

    @classmethod
    def suspend(cls, job: Job, until: datetime) -> JobWrite:
        return cls("suspend", job=job, until=check_aware(until, "until"))

    @property
    def queue(self) -> str:
        """The queue whose workers this write may concern."""
        if self.spec is not None:
            return self.spec.queue
        assert self.job is not None
        return self.job.queue

    @property
    def wakes(self) -> bool:
        """Whether committing it makes a job ready (workers of ``queue`` are woken)."""
        return self.kind in ("enqueue", "suspend")


@dataclass(frozen=True, slots=True)
class JobInfo:
    """An active or finished job, for inspection (``list_jobs``)."""

    id: int
    queue: str
    kind: str
    key: str | None
    payload: Any
    priority: int
    attempt: int
    max_attempts: int | None
    flow_id: UUID | None
    definition: str | None
    state: JobState
    not_before: datetime | None
    lease_expires_at: datetime | None
    worker_id: str | None
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class QueueDepth:
    """Disjoint counts of active jobs: ready and due, ready but not yet due, claimed with a live
    lease, claimed with a lease run out. They add up to the active jobs."""

    ready: int = 0
    scheduled: int = 0
    claimed: int = 0
    expired: int = 0

    @property
    def total(self) -> int:
        return self.ready + self.scheduled + self.claimed + self.expired


def claim_order(job: Job) -> tuple[int, datetime, int]:
    """How a claim lists what it took: higher priority first, then earlier ``not_before``, then
    lower id."""
    return (-job.priority, job.not_before or job.created_at, job.id)


def default_backoff(attempt: int) -> timedelta:
    """``fail``'s default wait before the next attempt: ``min(2**attempt seconds, 5 minutes)``."""
    if attempt >= 20:
        return MAX_BACKOFF
    return min(timedelta(seconds=2**attempt), MAX_BACKOFF)


def check_states(values: object) -> list[JobState] | None:
    """``list_jobs``'s ``states``: a list of ``JobState`` members or their values, else
    ``UnknownStatusError`` naming the valid ones (``None``: every state)."""
    if values is None:
        return None
    if isinstance(values, str | bytes) or not isinstance(values, list | tuple | set | frozenset):
        raise InvalidInputError(f"states must be a list of job states, got {type(values).__name__}")
    states = []
    for value in values:
        try:
            states.append(JobState(value))
        except (ValueError, TypeError):
            valid = ", ".join(state.value for state in JobState)
            raise UnknownStatusError(f"a job state is one of {valid}; got {value!r:.60}") from None
    return states


def check_names(values: object, what: str, *, max_length: int = MAX_NAME_LENGTH) -> list[str]:
    """A non-empty list of names (``queues``, ``kinds``, ``definitions``)."""
    if isinstance(values, str | bytes) or not isinstance(values, list | tuple | set | frozenset):
        raise InvalidInputError(f"{what} must be a list of names, got {type(values).__name__}")
    names = [check_name(v, what, max_length=max_length) for v in values]
    if not names:
        raise InvalidInputError(f"{what} must not be empty")
    return names


def check_lease(value: object) -> timedelta:
    if not isinstance(value, timedelta):
        raise InvalidInputError(f"lease must be a timedelta, got {type(value).__name__}")
    seconds = value.total_seconds()
    if not math.isfinite(seconds) or not 0 < seconds <= 7 * 24 * 3600:
        raise ValueOutOfRangeError(f"lease must be between 0 and 7 days, got {value}")
    return value


def check_jobs(values: object, what: str) -> list[Job]:
    """Claimed jobs handed back to be finished (``complete_many``, ``claim(complete=)``): a
    sequence of ``Job``, each with an id and a lease token the database can take."""
    if isinstance(values, str | bytes | Job) or not isinstance(values, Sequence):
        raise InvalidInputError(f"{what} must be a sequence of claimed Jobs, got {type(values).__name__}")
    jobs = list(values)
    for job in jobs:
        if not isinstance(job, Job):
            raise InvalidInputError(f"{what} must hold claimed Jobs, got a {type(job).__name__}")
        check_int(job.id, f"{what}: a job's id", minimum=1, maximum=BIGINT_MAX)
        if not isinstance(job.lease_token, UUID):
            raise InvalidInputError(f"{what}: job {job.id} has no lease token (it was not claimed)")
    return jobs


def check_completed(cancelled: list[int], lost: list[int], *, claimed: list[Job] | None = None) -> None:
    """``complete_many``'s outcome, the same on every backend: nothing, or the error naming the
    jobs that were cancelled (finished as such) or whose lease was lost (the others were finished).
    ``claimed``: what a ``claim(complete=)`` took in the same statement, carried by the error."""
    _refuse_cancelled_or_lost(cancelled, lost, claimed=claimed)


def check_heartbeat(renewed: list[Job], cancelled: list[int], lost: list[int]) -> list[Job]:
    """``heartbeat``'s outcome, the same on every backend: the renewed jobs, or the error naming
    what was cancelled or lost (with ``renewed`` on it)."""
    _refuse_cancelled_or_lost(cancelled, lost, renewed=renewed)
    return renewed


def lease_lost(job_id: int) -> LeaseLostError:
    """The error for one job whose lease another claim took over (or that is gone), on every
    backend and path alike."""
    return LeaseLostError(f"job {job_id}: its lease was taken over by another claim", job_id=job_id)


def job_cancelled(job_id: int) -> JobCancelledError:
    """The error for one job whose cancellation was requested while it was held."""
    return JobCancelledError(f"job {job_id} was cancelled", job_id=job_id)


def _refuse_cancelled_or_lost(cancelled: list[int], lost: list[int], **carried: Any) -> None:
    """``JobCancelledError`` if any job was cancelled, else ``LeaseLostError`` if any lease was
    lost; ``carried``: what the error carries besides (the jobs renewed, or claimed)."""
    if cancelled:
        raise JobCancelledError(
            f"job(s) {cancelled} were cancelled",
            job_id=cancelled[0],
            cancelled_ids=cancelled,
            lost_ids=lost,
            **carried,
        )
    if lost:
        raise LeaseLostError(
            f"job(s) {lost}: their lease was taken over by another claim",
            job_id=lost[0],
            lost_ids=lost,
            **carried,
        )
