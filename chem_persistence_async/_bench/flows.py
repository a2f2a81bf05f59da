"""Flow definitions the queue benchmarks run, importable by worker processes.

Worker processes are started as users start them (``chem-persist worker MODULE:ATTR``), so the
definitions live in a module of their own: ``chem_persistence_async._bench.flows:NOOP3`` and
``chem_persistence_async._bench.flows:WAKE``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from chem_persistence_async.domain.artifacts import Artifact
from chem_persistence_async.domain.flow import FlowDefinition
from chem_persistence_async.engine.step import StepContext, StepOutput


@dataclass(frozen=True)
class NoOp:
    """A step that does nothing: what is measured is the engine, the queue and the workers."""

    id: str

    async def run(self, ctx: StepContext) -> StepOutput:
        return StepOutput()


@dataclass(frozen=True)
class StampStart:
    """Records when it started (``time.monotonic()``, one clock for every process on a Linux
    machine) in its output, so the wake-up latency is read from the step itself."""

    id: str

    async def run(self, ctx: StepContext) -> StepOutput:
        started = time.monotonic()
        return StepOutput(artifacts=(Artifact.of("started", {"t": started, "n": ctx.flow_inputs.get("n")}),))


def noop3() -> FlowDefinition:
    return FlowDefinition("bench-noop3", [NoOp("a"), NoOp("b"), NoOp("c")])


def wake() -> FlowDefinition:
    return FlowDefinition("bench-wake", [StampStart("stamp")])


NOOP3 = noop3()
"""Three no-op steps: the whole-flow throughput benchmarks (and DBOS's peer workflow)."""

WAKE = wake()
"""One step that stamps its start: the wake-up latency benchmark."""
