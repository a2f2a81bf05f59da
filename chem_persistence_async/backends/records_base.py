"""The half of the workflow records that does not depend on the backend.

Stage outputs are artifacts under a key made from the run, the workflow type and the stage, and the
engine's flows are recorded by projecting their events (``project_flow``): both are written the same
way on every backend, which only supplies how a projection and an artifact are stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from chem_persistence_async.domain.events import FlowEvent
from chem_persistence_async.domain.flow import FlowDefinition, FlowInstance
from chem_persistence_async.domain.ids import check_name
from chem_persistence_async.domain.projection import FlowProjection, project_flow
from chem_persistence_async.domain.records import (
    ArtifactType,
    WorkflowArtifactRecord,
    check_uuid,
    stage_output_key,
)
from chem_persistence_async.ports.unit_of_work import Transaction


class WorkflowRecordsBase:
    async def get_stage_id_for_artifact(
        self, run_id: UUID | str, stage_id: str, *, tx: Transaction | None = None
    ) -> UUID | None:
        raise NotImplementedError

    async def save_artifact(
        self,
        workflow_run_id: UUID | str,
        key: str,
        type: ArtifactType | str,
        data: Any,
        *,
        workflow_stage_id: UUID | str | None = None,
        metadata: Any = None,
        tx: Transaction | None = None,
    ) -> WorkflowArtifactRecord:
        raise NotImplementedError

    async def save_stage_output(
        self,
        run_id: UUID | str,
        workflow_type: str,
        stage_id: str,
        output: Any,
        *,
        tx: Transaction | None = None,
    ) -> str:
        """Store a stage's output as the run's ``STAGE_OUTPUT`` artifact; returns its key."""
        rid = check_uuid(run_id, "run_id")
        key = stage_output_key(
            rid, check_name(workflow_type, "workflow_type"), check_name(stage_id, "stage_id")
        )
        stage = await self.get_stage_id_for_artifact(rid, stage_id, tx=tx)
        await self.save_artifact(rid, key, ArtifactType.STAGE_OUTPUT, output, workflow_stage_id=stage, tx=tx)
        return key

    async def record_flow(
        self,
        instance: FlowInstance,
        definition: FlowDefinition,
        events: Sequence[FlowEvent],
        *,
        tx: Transaction,
    ) -> None:
        """Merge the projection of ``events`` (just appended in ``tx``) into the flow's records."""
        await self._write_projection(project_flow(instance, definition, events), False, tx)

    async def rebuild_flow(
        self,
        instance: FlowInstance,
        definition: FlowDefinition,
        events: Sequence[FlowEvent],
        *,
        tx: Transaction | None = None,
    ) -> bool:
        """Replace the flow's run and stages with the projection of its whole log; False when the
        records already reflect a newer version (the flow was appended to meanwhile)."""
        return await self._write_projection(project_flow(instance, definition, events), True, tx)

    async def rebuild_flows(
        self,
        flows: Sequence[tuple[FlowInstance, FlowDefinition, Sequence[FlowEvent]]],
        *,
        tx: Transaction | None = None,
    ) -> list[bool]:
        """``rebuild_flow`` of each ``(instance, definition, whole log)``, in order; a backend may
        write them all at once (PostgreSQL: one statement)."""
        return [await self.rebuild_flow(i, d, e, tx=tx) for i, d, e in flows]

    async def _write_projection(
        self, projection: FlowProjection, replace: bool, tx: Transaction | None
    ) -> bool:
        raise NotImplementedError
