"""What the definition registry knows of a flow definition: its name, hash and steps (no code)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from chem_persistence_async.domain.flow import FlowDefinition


@dataclass(frozen=True, slots=True)
class DefinitionRecord:
    name: str
    hash: str
    steps: list[dict[str, Any]]
    """Each step's ``id``, ``type`` and ``params``."""
    created_at: datetime

    @property
    def ref(self) -> str:
        """``name@hash``, as flow jobs name it."""
        return f"{self.name}@{self.hash}"


def definition_ref(definition: FlowDefinition) -> str:
    """``name@hash``: how flow jobs name the definition they need."""
    return f"{definition.name}@{definition.hash}"
