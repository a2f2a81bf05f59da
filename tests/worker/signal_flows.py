"""Flows that wait for the world (SPEC 8.3); importable by worker subprocesses."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from chem_persistence_async import Artifact, FlowDefinition, StepContext, StepOutput, Suspend


@dataclass(frozen=True)
class Seed:
    id: str = "seed"

    async def run(self, ctx: StepContext) -> StepOutput:
        return StepOutput(artifacts=(Artifact.of("order", {"order": ctx.flow_inputs.get("order", 0)}),))


@dataclass(frozen=True)
class Approve:
    """Goes on once an ``approve`` signal was delivered, else suspends for it (and, with
    ``params["timeout_s"]``, until that time at most: then it goes on unapproved)."""

    id: str = "approve"
    params: dict[str, Any] = field(default_factory=dict)

    async def run(self, ctx: StepContext) -> StepOutput:
        approvals = [s.data for s in ctx.signals if s.name == "approve"]
        order = ctx.inputs[0].payload
        if approvals:
            return StepOutput(
                artifacts=(Artifact.of("decision", {"order": order, "approved": approvals[0]}),)
            )
        timeout = self.params.get("timeout_s")
        if timeout is not None and ctx.attempt > 1:
            return StepOutput(artifacts=(Artifact.of("decision", {"order": order, "approved": None}),))
        until = None if timeout is None else datetime.now(UTC) + timedelta(seconds=float(timeout))
        return StepOutput(suspend=Suspend(until=until, signal="approve"))


@dataclass(frozen=True)
class Ship:
    id: str = "ship"

    async def run(self, ctx: StepContext) -> StepOutput:
        return StepOutput(artifacts=(Artifact.of("shipped", {"decision": ctx.inputs[0].payload}),))


@dataclass(frozen=True)
class Sleep:
    """Suspends until a time (``params["seconds"]`` from its first attempt), then goes on."""

    id: str = "sleep"
    params: dict[str, Any] = field(default_factory=lambda: {"seconds": 0.5})

    async def run(self, ctx: StepContext) -> StepOutput:
        if ctx.attempt == 1:
            return StepOutput(
                suspend=Suspend(until=datetime.now(UTC) + timedelta(seconds=float(self.params["seconds"])))
            )
        return StepOutput(artifacts=(Artifact.of("woke", {"after": ctx.attempt}),))


def approval() -> FlowDefinition:
    return FlowDefinition("approval", [Seed(), Approve(), Ship()])


def approval_with_timeout(seconds: float) -> FlowDefinition:
    return FlowDefinition("approval", [Seed(), Approve(params={"timeout_s": seconds}), Ship()])


def timer(seconds: float = 0.5) -> FlowDefinition:
    return FlowDefinition("timer", [Seed(), Sleep(params={"seconds": seconds}), Ship()])


APPROVAL = approval()
