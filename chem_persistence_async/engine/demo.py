"""The demo flow: four small steps that really produce, split, forward and count artifacts."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from chem_persistence_async.domain.artifacts import Artifact
from chem_persistence_async.domain.flow import FlowDefinition
from chem_persistence_async.engine.step import StepContext, StepOutput, StepValidationError

logger = logging.getLogger("chem_persistence_async.demo")


@dataclass(frozen=True)
class SeedStep:
    """Produces the numbers ``start .. start+count-1`` as one ``numbers`` artifact."""

    id: str = "seed"
    params: dict[str, Any] = field(default_factory=lambda: {"start": 1, "count": 10})

    async def run(self, ctx: StepContext) -> StepOutput:
        start, count = int(ctx.params["start"]), int(ctx.params["count"])
        if count < 0:
            raise StepValidationError("count must be >= 0")
        return StepOutput(artifacts=(Artifact.of("numbers", {"values": list(range(start, start + count))}),))


@dataclass(frozen=True)
class SplitStep:
    """Splits its ``numbers`` input into an ``even`` and an ``odd`` artifact."""

    id: str = "split"

    async def run(self, ctx: StepContext) -> StepOutput:
        values = _values(ctx.inputs)
        return StepOutput(
            artifacts=(
                Artifact.of("numbers", {"parity": "even", "values": [v for v in values if v % 2 == 0]}),
                Artifact.of("numbers", {"parity": "odd", "values": [v for v in values if v % 2]}),
            )
        )


@dataclass(frozen=True)
class ForwardStep:
    """Passes its inputs on unchanged: the same hashes, stored once."""

    id: str = "forward"

    async def run(self, ctx: StepContext) -> StepOutput:
        return StepOutput(artifacts=ctx.inputs)


@dataclass(frozen=True)
class PrintAndCountStep:
    """Logs a summary of its inputs and produces their ``count`` and ``sum``."""

    id: str = "print_and_count"

    async def run(self, ctx: StepContext) -> StepOutput:
        values = _values(ctx.inputs)
        summary = {"count": len(values), "sum": sum(values)}
        logger.info("flow %s: %d values, sum %d", ctx.flow_id, summary["count"], summary["sum"])
        return StepOutput(artifacts=(Artifact.of("summary", summary),))


def _values(inputs: tuple[Artifact, ...]) -> list[int]:
    values: list[int] = []
    for artifact in inputs:
        payload = artifact.payload
        if not isinstance(payload, dict) or not isinstance(payload.get("values"), list):
            raise StepValidationError(f"input {artifact.hash[:12]}… holds no list of values")
        values.extend(int(v) for v in payload["values"])  # type: ignore[union-attr, arg-type]
    return values


def demo_definition(*, start: int = 1, count: int = 10) -> FlowDefinition:
    return FlowDefinition(
        "demo",
        [SeedStep(params={"start": start, "count": count}), SplitStep(), ForwardStep(), PrintAndCountStep()],
    )
