"""What a step is, what it receives and returns, and how its failures are classified."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable
from uuid import UUID

from pydantic import ValidationError

from chem_persistence_async.domain.artifacts import Artifact
from chem_persistence_async.domain.failures import ErrorClass
from chem_persistence_async.domain.flow import ReceivedSignal
from chem_persistence_async.domain.ids import check_aware
from chem_persistence_async.errors import InvalidInputError


@dataclass(frozen=True, slots=True)
class StepContext:
    """Everything an attempt may depend on. ``inputs`` are the previous step's output artifacts."""

    flow_id: UUID
    step_index: int
    step_id: str
    attempt: int
    inputs: tuple[Artifact, ...]
    params: Mapping[str, Any]
    flow_inputs: Mapping[str, Any] = field(default_factory=dict)
    """The flow's inputs (``engine.start(inputs=...)``, ``submit(inputs=...)``)."""
    signals: tuple[ReceivedSignal, ...] = ()
    """Signals sent to the flow (``engine.signal``) and delivered before this attempt started, in
    order: ``name``, ``data``, ``send_id``."""


@dataclass(frozen=True, slots=True)
class Suspend:
    """Wait until ``until`` (an aware time), or until the signal ``signal`` is delivered to the
    flow, whichever comes first; the step then runs again as its next attempt and sees the signal
    in ``ctx.signals``. A suspended flow holds no worker, no connection and no timer."""

    until: datetime | None = None
    signal: str | None = None

    def __post_init__(self) -> None:
        if self.until is None and self.signal is None:
            raise InvalidInputError("Suspend needs an until time, a signal name, or both")
        if self.until is not None:
            check_aware(self.until, "Suspend.until")
        if self.signal is not None and (
            not isinstance(self.signal, str) or not self.signal or "\x00" in self.signal
        ):
            raise InvalidInputError(f"Suspend.signal must be a non-empty signal name, got {self.signal!r}")


@dataclass(frozen=True, slots=True)
class StepOutput:
    """What an attempt produced. ``signal`` (with ``signal_data``) emits a ``StepSignal``;
    ``suspend`` ends the attempt waiting (it then has no artifacts)."""

    artifacts: tuple[Artifact, ...] = ()
    signal: str | None = None
    signal_data: Any = None
    suspend: Suspend | None = None


@runtime_checkable
class Step(Protocol):
    """A step: a stable ``id`` (and optional ``params``, part of the definition hash) and ``run``."""

    @property
    def id(self) -> str: ...

    async def run(self, ctx: StepContext) -> StepOutput: ...


class StepError(Exception):
    """Base of the exceptions a step raises to say how it failed."""

    error_class: ErrorClass = ErrorClass.RUNTIME

    def __init__(self, message: str = "", *, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.details = dict(details) if details else {}


class TransientStepError(StepError):
    """Worth another attempt (a flaky dependency, a timeout)."""

    error_class = ErrorClass.TRANSIENT


class PermanentStepError(StepError):
    """Will fail the same way again; the flow stops at this step."""

    error_class = ErrorClass.PERMANENT


class StepValidationError(StepError):
    """The step's inputs or outputs are invalid; never retried."""

    error_class = ErrorClass.VALIDATION


def classify_error(exc: BaseException) -> ErrorClass:
    """Step exceptions carry their class; pydantic validation errors and the library's own bad-input
    errors (an artifact holding NaN or a NUL, say) are VALIDATION; all else RUNTIME."""
    if isinstance(exc, StepError):
        return exc.error_class
    if isinstance(exc, ValidationError | InvalidInputError):
        return ErrorClass.VALIDATION
    return ErrorClass.RUNTIME
