"""The flow the chaos tests run, importable by their subprocesses.

Three steps, each taking ``sleep`` seconds so that a kill lands in the middle of attempts; the middle
one fails transiently with probability ``p`` (any process, any attempt). Its outcome never depends on
how many attempts it took, so every flow has the fingerprint of the in-memory run.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from chem_persistence_async import Artifact, FlowDefinition, StepContext, StepOutput
from tests.worker.flows import Flaky


@dataclass(frozen=True)
class Nap:
    """Sleeps ``params["sleep"]`` seconds, then adds ``params["n"]`` to the running total (the flow's
    input ``start`` for the first step)."""

    id: str
    params: dict[str, Any] = field(default_factory=lambda: {"n": 1, "sleep": 0.0})

    async def run(self, ctx: StepContext) -> StepOutput:
        await asyncio.sleep(float(self.params["sleep"]))
        total = ctx.inputs[0].payload["total"] if ctx.inputs else ctx.flow_inputs.get("start", 0)  # type: ignore[index, union-attr]
        return StepOutput(artifacts=(Artifact.of("total", {"total": int(total) + int(self.params["n"])}),))


def chaos_definition(p: float, sleep: float) -> FlowDefinition:
    """``nap`` (+1), ``flaky`` (fails with probability ``p``, then +10), ``nap`` (+3)."""
    return FlowDefinition(
        "chaos3",
        [
            Nap("a", {"n": 1, "sleep": sleep}),
            Flaky("f", {"p": p, "sleep": sleep}),
            Nap("c", {"n": 3, "sleep": sleep}),
        ],
    )
