"""Step classes for engine tests. Importable by subprocesses, so a flow can be resumed elsewhere."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from chem_persistence_async import (
    Artifact,
    FlowDefinition,
    PermanentStepError,
    StepContext,
    StepOutput,
    StepValidationError,
    TransientStepError,
)


@dataclass(frozen=True)
class Produce:
    """Produces one artifact from its params (and its inputs' hashes, so outputs chain)."""

    id: str
    params: dict[str, Any] = field(default_factory=dict)

    async def run(self, ctx: StepContext) -> StepOutput:
        return StepOutput(
            artifacts=(Artifact.of("value", {"step": ctx.step_id, "from": [a.hash for a in ctx.inputs]}),)
        )


@dataclass(frozen=True)
class FailUntil:
    """Fails with ``kind`` while ``ctx.attempt <= failures`` (so it behaves the same in any process)."""

    id: str
    params: dict[str, Any] = field(default_factory=lambda: {"failures": 2, "kind": "transient"})

    async def run(self, ctx: StepContext) -> StepOutput:
        if ctx.attempt <= int(ctx.params["failures"]):
            kind = ctx.params["kind"]
            message = f"attempt {ctx.attempt} failed on purpose"
            if kind == "transient":
                raise TransientStepError(message, details={"attempt": ctx.attempt})
            if kind == "permanent":
                raise PermanentStepError(message)
            if kind == "validation":
                raise StepValidationError(message)
            if kind == "pydantic":
                _Strict.model_validate({"n": "not a number"})
            raise RuntimeError(message)
        return StepOutput(artifacts=(Artifact.of("value", {"step": ctx.step_id, "attempt": ctx.attempt}),))


class _Strict(BaseModel):
    n: int


def flaky_definition(failures: int = 2, kind: str = "transient") -> FlowDefinition:
    return FlowDefinition(
        "flaky",
        [Produce("first"), FailUntil("flaky", {"failures": failures, "kind": kind}), Produce("last")],
    )


@dataclass(frozen=True)
class Signal:
    """Emits a signal whose data PostgreSQL's JSONB would change (a float of 1e20 becomes an int)."""

    id: str

    async def run(self, ctx: StepContext) -> StepOutput:
        return StepOutput(signal="progress", signal_data={"big": 1e20, "b": 1, "a": [0.5]})
