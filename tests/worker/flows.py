"""Flow definitions for worker tests; importable by worker subprocesses (``chem-persist worker``)."""

from __future__ import annotations

import asyncio
import os
import random
from dataclasses import dataclass, field
from typing import Any

from chem_persistence_async import (
    Artifact,
    FlowDefinition,
    StepContext,
    StepOutput,
    TransientStepError,
)


@dataclass(frozen=True)
class Add:
    """Adds ``params["n"]`` to the running total (the flow's input ``start`` for the first step)."""

    id: str
    params: dict[str, Any] = field(default_factory=lambda: {"n": 1})

    async def run(self, ctx: StepContext) -> StepOutput:
        total = ctx.inputs[0].payload["total"] if ctx.inputs else ctx.flow_inputs.get("start", 0)  # type: ignore[index, union-attr]
        return StepOutput(artifacts=(Artifact.of("total", {"total": int(total) + int(self.params["n"])}),))


@dataclass(frozen=True)
class Flaky:
    """Fails transiently with probability ``params["p"]`` (randomly: any process, any attempt),
    then adds 10. Its outcome does not depend on how many attempts it took."""

    id: str
    params: dict[str, Any] = field(default_factory=lambda: {"p": 0.3})

    async def run(self, ctx: StepContext) -> StepOutput:
        if random.random() < float(self.params["p"]):
            raise TransientStepError(f"flaky in pid {os.getpid()}")
        total = ctx.inputs[0].payload["total"] if ctx.inputs else 0  # type: ignore[index]
        await asyncio.sleep(float(self.params.get("sleep", 0)))
        return StepOutput(artifacts=(Artifact.of("total", {"total": int(total) + 10}),))


def three_steps() -> FlowDefinition:
    return FlowDefinition("sum3", [Add("a", {"n": 1}), Add("b", {"n": 2}), Add("c", {"n": 3})])


def flaky_steps(p: float = 0.3, sleep: float = 0.0) -> FlowDefinition:
    return FlowDefinition(
        "flaky3", [Add("a", {"n": 1}), Flaky("f", {"p": p, "sleep": sleep}), Add("c", {"n": 3})]
    )


CHAOS = flaky_steps(p=float(os.environ.get("CHEM_TEST_FLAKY_P", "0.3")), sleep=0.005)
"""What chaos tests' worker processes run (``chem-persist worker tests.worker.flows:CHAOS``)."""
