"""A flow whose artifacts hold values PostgreSQL's JSONB would change (``-0.0``, a float of 1e23) runs
to the end on both backends with the same fingerprint (SPEC 6), also when a later step reads the
artifacts back from the database instead of the engine's cache."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chem_persistence_async import (
    Artifact,
    Database,
    FlowDefinition,
    FlowEngine,
    InMemoryEventStore,
    InMemoryFlowRepository,
    PgEventStore,
    PgFlowRepository,
    StepContext,
    StepOutput,
    StepStatus,
    artifact_hash,
)

PAYLOAD = {"zero": -0.0, "zeros": [-0.0, 0.0], "big": 1e23, "tiny": 5e-324, "nested": {"z": -0.0}}
"""What JSONB gives back as ``0.0``, ``100000000000000000000000`` and 324 decimals."""


@dataclass(frozen=True)
class EmitRaw:
    """An artifact built by hand from the raw payload (``-0.0`` and all), its hash the library's."""

    id: str
    params: dict[str, Any] = field(default_factory=dict)

    async def run(self, ctx: StepContext) -> StepOutput:
        artifact = Artifact(hash=artifact_hash("raw", PAYLOAD), kind="raw", payload=PAYLOAD)
        return StepOutput(artifacts=(artifact, Artifact.of("built", PAYLOAD)))


@dataclass(frozen=True)
class Forward:
    """Passes its inputs on unchanged: the engine checks each against its hash."""

    id: str
    params: dict[str, Any] = field(default_factory=dict)

    async def run(self, ctx: StepContext) -> StepOutput:
        return StepOutput(
            artifacts=ctx.inputs, signal="seen", signal_data={"payloads": [a.payload for a in ctx.inputs]}
        )


DEFINITION = FlowDefinition("jsonb-values", [EmitRaw("emit"), Forward("forward"), Forward("again")])


async def _run(store: Any, repository: Any) -> tuple[str, list[Any]]:
    first = FlowEngine(store, repository, DEFINITION)
    flow_id = await first.start()
    await first.run_next(flow_id)  # the artifacts are written ...
    # ... and a fresh engine (no artifact cache) reads them back from the store for the next steps.
    second = FlowEngine(store, repository, DEFINITION)
    assert await second.run_to_end(flow_id) == flow_id
    instance = await second.load(flow_id)
    assert instance.completed
    assert [slot.status for slot in instance.steps] == [StepStatus.FINISHED] * 3
    fingerprint = await second.flow_fingerprint(flow_id)
    assert fingerprint is not None
    stored = await store.get_artifacts(instance.steps[-1].outputs)
    return fingerprint, [stored[h] for h in instance.steps[-1].outputs]


async def test_flow_with_values_jsonb_normalises_completes_alike_on_both_backends(db: Database) -> None:
    memory_fp, memory_artifacts = await _run(InMemoryEventStore(), InMemoryFlowRepository())
    pg_fp, pg_artifacts = await _run(PgEventStore(db), PgFlowRepository())
    assert memory_fp == pg_fp
    assert memory_artifacts == pg_artifacts
    for artifact in pg_artifacts:
        assert artifact.content_matches()
        assert artifact.payload["zero"] == 0.0
        assert str(artifact.payload["zero"]) == "0.0"  # the sign is gone, as JSONB drops it
        assert artifact.payload["big"] == 10**23
        assert artifact.payload["tiny"] == 5e-324
    # The hand-built artifact and Artifact.of agree: both hash the normalised form.
    assert pg_artifacts[0].hash == artifact_hash("raw", PAYLOAD)
