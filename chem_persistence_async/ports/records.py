"""Workflow records (SPEC 9.1): what an operator reads about runs and stages.

``FlowRecorder`` is the engine's side of it: after every append of a flow's events, in the SAME
unit of work, the engine hands the recorder the flow as it now is, so the records (a projection
of the event log) can never disagree with it for good.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from chem_persistence_async.domain.events import FlowEvent
from chem_persistence_async.domain.flow import FlowDefinition, FlowInstance
from chem_persistence_async.ports.unit_of_work import Transaction


class FlowRecorder(Protocol):
    async def record_flow(
        self,
        instance: FlowInstance,
        definition: FlowDefinition,
        events: Sequence[FlowEvent],
        *,
        tx: Transaction,
    ) -> None:
        """Bring the flow's run and stage records up to ``instance`` (the state right after
        ``events`` were appended in ``tx``)."""
        ...
