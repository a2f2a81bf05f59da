"""Flow definitions and the state replay rebuilds from events."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable
from uuid import UUID

from chem_persistence_async.domain.canonical import content_hash, normalize_json
from chem_persistence_async.domain.failures import StepExecutionError


@runtime_checkable
class StepLike(Protocol):
    """What the domain needs of a step: a stable id (the engine's ``Step`` adds ``run``)."""

    @property
    def id(self) -> str: ...


def _step_params(step: StepLike) -> Mapping[str, Any]:
    params = getattr(step, "params", None)
    return {} if params is None else params


class FlowDefinition:
    """A name and an ordered list of steps with unique ids.

    Its ``hash`` covers the name, each step's id, class name and params; it is what a stored flow
    is checked against when it is replayed.
    """

    __slots__ = ("hash", "name", "steps")

    def __init__(self, name: str, steps: Sequence[StepLike]) -> None:
        if not name:
            raise ValueError("a flow definition needs a name")
        ids = [step.id for step in steps]
        if any(not isinstance(i, str) or not i for i in ids):
            raise ValueError("every step needs a non-empty string id")
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"step ids must be unique; repeated: {', '.join(duplicates)}")
        self.name = name
        self.steps: tuple[StepLike, ...] = tuple(steps)
        self.hash = content_hash(
            {
                "name": name,
                "steps": [
                    {
                        "id": step.id,
                        "type": type(step).__qualname__,
                        "params": normalize_json(dict(_step_params(step))),
                    }
                    for step in self.steps
                ],
            }
        )

    @property
    def step_ids(self) -> tuple[str, ...]:
        return tuple(step.id for step in self.steps)

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

    @property
    def failed(self) -> bool:
        """True when a step failed for good (no retry follows): the flow stops there."""
        return any(slot.status is StepStatus.FAILED for slot in self.steps)

    @property
    def errors(self) -> tuple[StepExecutionError, ...]:
        """Every failed attempt of the flow, in the order the events recorded them."""
        return tuple(sorted((e for s in self.steps for e in s.errors), key=_error_order))


def _error_order(error: StepExecutionError) -> tuple[int, datetime]:
    return (error.event_seq or 0, error.ts)
