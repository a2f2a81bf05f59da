"""Flow definitions and the state replay rebuilds from events."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from operator import attrgetter
from typing import Any, Protocol, runtime_checkable
from uuid import UUID

from chem_persistence_async.domain.canonical import content_hash, normalize_json
from chem_persistence_async.domain.failures import StepExecutionError
from chem_persistence_async.errors import DefinitionError, UnstorableValueError


@runtime_checkable
class StepLike(Protocol):
    """What the domain needs of a step: a stable id (the engine's ``Step`` adds ``run``, which
    ``FlowDefinition`` checks is ``async def``)."""

    @property
    def id(self) -> str: ...


def _step_params(step: object) -> Mapping[str, Any]:
    params = getattr(step, "params", None)
    return {} if params is None else params


def _check_step(position: int, step: object) -> tuple[str, Any]:
    """The step's id and normalised params, or ``DefinitionError`` saying what is wrong with it."""
    where = f"step {position} ({type(step).__qualname__})"
    try:
        step_id = step.id  # type: ignore[attr-defined]
    except AttributeError:
        raise DefinitionError(f"{where} has no 'id': give it a non-empty string id") from None
    if not isinstance(step_id, str) or not step_id:
        raise DefinitionError(f"{where} has id {step_id!r}: a step id must be a non-empty string")
    where = f"step {step_id!r} ({type(step).__qualname__})"
    run = getattr(step, "run", None)
    if run is None:
        raise DefinitionError(f"{where} has no run method: define 'async def run(self, ctx)'")
    if not inspect.iscoroutinefunction(run):
        kind = "a synchronous def" if inspect.isroutine(run) else f"a {type(run).__name__}"
        raise DefinitionError(f"{where}: run is {kind}, not 'async def run(self, ctx)'; the engine awaits it")
    params = _step_params(step)
    if not isinstance(params, Mapping):
        raise DefinitionError(f"{where}: params must be a mapping, not {type(params).__name__}")
    try:
        normalized = normalize_json(dict(params))
    except UnstorableValueError as exc:
        raise DefinitionError(f"{where}: params cannot be stored as JSON: {exc}") from None
    return step_id, normalized


class FlowDefinition:
    """A name and an ordered list of steps with unique ids.

    Its ``hash`` covers the name, each step's id, class name and params; it is what a stored flow
    is checked against when it is replayed. Mistakes a step can only make once (no id, an empty or
    repeated one, a ``run`` that is not ``async def``, params that are not JSON) raise
    ``DefinitionError`` here, when the definition is built, not as failed attempts at run time.
    """

    __slots__ = ("_step_ids", "hash", "name", "steps")

    def __init__(self, name: str, steps: Sequence[StepLike]) -> None:
        if not isinstance(name, str) or not name:
            raise DefinitionError(f"a flow definition needs a non-empty string name, not {name!r}")
        if isinstance(steps, str | bytes | Mapping) or not isinstance(steps, Iterable):
            raise DefinitionError(f"definition {name!r}: steps must be a list of steps")
        self.steps: tuple[StepLike, ...] = tuple(steps)
        checked = [_check_step(position, step) for position, step in enumerate(self.steps)]
        ids = [step_id for step_id, _ in checked]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise DefinitionError(
                f"definition {name!r}: step ids must be unique; repeated: {', '.join(duplicates)}"
            )
        self.name = name
        self._step_ids = tuple(ids)
        self.hash = content_hash(
            {
                "name": name,
                "steps": [
                    {"id": step_id, "type": type(step).__qualname__, "params": params}
                    for (step_id, params), step in zip(checked, self.steps, strict=True)
                ],
            }
        )

    @property
    def step_ids(self) -> tuple[str, ...]:
        """The steps' ids, as checked (and hashed) when the definition was built: kept then, not
        gathered again at every replay."""
        return self._step_ids

    def params_of(self, index: int) -> Mapping[str, Any]:
        return _step_params(self.steps[index])

    def describe(self) -> list[dict[str, Any]]:
        """Each step's id, type and params: what the hash covers besides the name (and what the
        definition registry stores)."""
        return [
            {
                "id": step.id,
                "type": type(step).__qualname__,
                "params": normalize_json(dict(_step_params(step))),
            }
            for step in self.steps
        ]

    def __repr__(self) -> str:
        return f"FlowDefinition(name={self.name!r}, steps={list(self.step_ids)!r}, hash={self.hash[:12]}…)"


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    SUSPENDED = "suspended"
    """The step's last attempt ended waiting for a time or a signal (``StepSuspended``)."""


@dataclass(frozen=True, slots=True)
class ReceivedSignal:
    """A signal delivered to the flow from outside (``engine.signal``), in delivery order."""

    name: str
    data: Any
    send_id: str
    step_index: int
    """The step that was current when it arrived."""
    version: int
    """The flow version of its ``StepSignal``."""


@dataclass(frozen=True, slots=True)
class StepSlot:
    """One step's state after replay. ``errors`` is its failed attempts, in attempt order."""

    step_id: str
    status: StepStatus = StepStatus.PENDING
    outputs: tuple[str, ...] = ()
    fingerprint: str | None = None
    retry_count: int = 0
    errors: tuple[StepExecutionError, ...] = ()
    attempts: int = 0
    """How many attempts were started (``StepStarted`` events)."""
    not_before: datetime | None = None
    """When a scheduled retry may run (pending after a ``RetryScheduled``)."""
    lease_until: datetime | None = None
    """While ``running``: until when its starter holds the attempt (``StepStarted.lease_until``)."""
    suspended_until: datetime | None = None
    """While ``suspended``: when it may run again (``None``: only its signal wakes it)."""
    waiting_for: str | None = None
    """While ``suspended``: the signal that wakes it (``None``: only its time)."""
    resumable: bool = False
    """While ``suspended``: the awaited signal arrived after the attempt that suspended began."""
    started_version: int = 0
    """The flow version of the step's last ``StepStarted``."""


_status_of = attrgetter("status")


@dataclass(frozen=True, slots=True)
class FlowInstance:
    """What replay returns: the whole state of one flow, rebuilt from its events alone.

    ``cursor`` is the index of the next step to run (``len(steps)`` once every step finished);
    ``version`` is the flow's last ``flow_version`` (0 for a flow with no events), which the engine
    passes back as ``expected_version``.
    """

    flow_id: UUID
    definition_hash: str
    completed: bool
    cursor: int
    steps: tuple[StepSlot, ...]
    fingerprint: str | None
    version: int
    signals: tuple[tuple[str, str, Any], ...] = field(default=())
    inputs: Mapping[str, Any] = field(default_factory=dict)
    """The flow's inputs, from its ``FlowInitialized``."""
    received: tuple[ReceivedSignal, ...] = ()
    """Signals delivered to the flow from outside, in order (what a step sees as ``ctx.signals``)."""

    @property
    def suspended(self) -> bool:
        """True when the current step waits for a time or a signal."""
        return self.cursor < len(self.steps) and self.steps[self.cursor].status is StepStatus.SUSPENDED

    @property
    def failed(self) -> bool:
        """True when a step failed for good (no retry follows): the flow stops there."""
        return StepStatus.FAILED in map(_status_of, self.steps)  # (no Python frame per slot)

    @property
    def errors(self) -> tuple[StepExecutionError, ...]:
        """Every failed attempt of the flow, in the order the events recorded them."""
        return tuple(sorted((e for s in self.steps for e in s.errors), key=_error_order))


def _error_order(error: StepExecutionError) -> tuple[int, datetime]:
    return (error.event_seq or 0, error.ts)
