"""The planner: what happens next to a flow, decided from its replayed state alone. Pure.

``plan(instance, definition, policy, now)`` returns one action:

* ``RunStep``: start the next attempt of a step (first closing a lost attempt when there is one);
* ``CloseLost``: a lost attempt with no retry left: close it, and the flow has failed;
* ``Complete``: every step finished: append ``FlowCompleted``;
* ``Wait``: nothing may happen before ``until`` (a retry not yet due, another starter's attempt
  still in progress, a step suspended until a time; ``until`` is ``None`` for a step suspended
  until a signal only);
* ``Done``: the flow completed, or a step failed for good.

An attempt is *lost* when its ``StepStarted`` has no outcome and its ``lease_until`` has passed (or
it has none: a ``StepStarted`` written before leases existed). Closing it appends a ``StepFailed``
of class runtime (``attempt lost: ...``) and, if the ``RetryPolicy`` allows, its ``RetryScheduled``
due at once: every attempt ends with exactly one outcome, and the policy bounds a step that keeps
killing whoever runs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from chem_persistence_async.domain.events import FlowEventKind, RetryScheduled, StepFailed
from chem_persistence_async.domain.failures import ErrorClass, StepErrorInfo
from chem_persistence_async.domain.fingerprints import failure_fingerprint, flow_fingerprint
from chem_persistence_async.domain.flow import FlowDefinition, FlowInstance, StepSlot, StepStatus
from chem_persistence_async.engine.retry_policy import RetryPolicy


@dataclass(frozen=True, slots=True)
class RunStep:
    """Start attempt ``attempt`` of step ``index``. ``close`` are the events that end a lost
    previous attempt, appended together with the new ``StepStarted``."""

    index: int
    attempt: int
    close: tuple[FlowEventKind, ...] = ()


@dataclass(frozen=True, slots=True)
class CloseLost:
    """End a lost attempt that may not be retried: the flow fails at this step."""

    index: int
    close: tuple[FlowEventKind, ...]


@dataclass(frozen=True, slots=True)
class Complete:
    fingerprint: str


@dataclass(frozen=True, slots=True)
class Wait:
    """Nothing to do before ``until``: a retry not yet due, or an attempt in progress elsewhere."""

    until: datetime | None
    reason: Literal["retry", "in_progress", "suspended"]
    index: int
    attempt: int


@dataclass(frozen=True, slots=True)
class Done:
    completed: bool


Action = RunStep | CloseLost | Complete | Wait | Done


def plan(instance: FlowInstance, definition: FlowDefinition, policy: RetryPolicy, now: datetime) -> Action:
    """The next action for ``instance`` at time ``now`` (see the module docstring)."""
    if instance.completed or instance.failed:
        return Done(completed=instance.completed)
    index = instance.cursor
    if index == len(definition.steps):
        fingerprints = [slot.fingerprint or "" for slot in instance.steps]
        return Complete(flow_fingerprint(definition.hash, fingerprints, instance.inputs))
    slot = instance.steps[index]
    if slot.status is StepStatus.RUNNING:
        if slot.lease_until is not None and slot.lease_until > now:
            return Wait(slot.lease_until, "in_progress", index, slot.attempts)
        close = lost_attempt_events(instance, definition, policy, index, now)
        if len(close) == 1:
            return CloseLost(index, close)
        return RunStep(index, slot.attempts + 1, close)
    if slot.status is StepStatus.SUSPENDED:
        due = slot.suspended_until is not None and slot.suspended_until <= now
        if not (slot.resumable or due):
            return Wait(slot.suspended_until, "suspended", index, slot.attempts + 1)
        return RunStep(index, slot.attempts + 1)
    if slot.not_before is not None and slot.not_before > now:
        return Wait(slot.not_before, "retry", index, slot.attempts + 1)
    return RunStep(index, slot.attempts + 1)


def previous_fingerprint(instance: FlowInstance, definition: FlowDefinition, index: int) -> str:
    """What step ``index``'s fingerprint chains from: the previous step's, or the definition hash."""
    if index == 0:
        return definition.hash
    previous = instance.steps[index - 1].fingerprint
    if previous is None:  # pragma: no cover - replay never puts a cursor past an unfinished step
        raise AssertionError(f"step {index - 1} has no fingerprint")
    return previous


def lost_attempt_events(
    instance: FlowInstance,
    definition: FlowDefinition,
    policy: RetryPolicy,
    index: int,
    now: datetime,
    message: str | None = None,
) -> tuple[FlowEventKind, ...]:
    """``StepFailed`` (runtime, ``attempt lost``, or ``message``) for the running attempt of step
    ``index``, and its ``RetryScheduled`` due at ``now`` when the policy retries it."""
    slot: StepSlot = instance.steps[index]
    lease = slot.lease_until
    if message is None:
        message = (
            f"attempt lost: no outcome by the end of its lease ({lease.isoformat()})"
            if lease is not None
            else "attempt lost: no outcome and no lease (started before attempt leases)"
        )
    failed = StepFailed(
        step_index=index,
        step_id=slot.step_id,
        attempt=slot.attempts,
        error=StepErrorInfo(error_class=ErrorClass.RUNTIME, message=message, details={"lost": True}),
        retry_count=slot.retry_count,
        max_retries=policy.max_retries,
        fingerprint=failure_fingerprint(
            previous_fingerprint(instance, definition, index),
            slot.step_id,
            slot.attempts,
            ErrorClass.RUNTIME.value,
        ),
    )
    if not policy.should_retry(ErrorClass.RUNTIME, slot.retry_count):
        return (failed,)
    retry = RetryScheduled(
        step_index=index,
        step_id=slot.step_id,
        retry_index=slot.retry_count + 1,
        reason=f"runtime: {message[:200]}",
        not_before=now,
    )
    return (failed, retry)
