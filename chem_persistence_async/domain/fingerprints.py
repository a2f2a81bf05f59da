"""Fingerprints: hashes of what a flow produced, never of when or where.

Timestamps, ``seq``, flow and event ids, ``not_before`` and stack traces never enter them, so two
runs of one definition on the same inputs share every fingerprint, on every backend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from chem_persistence_async.domain.canonical import content_hash


def step_fingerprint(previous: str, step_id: str, outputs: Sequence[str]) -> str:
    """Chain the previous step's fingerprint (the definition hash for the first) with this step."""
    return content_hash({"previous": previous, "step_id": step_id, "outputs": list(outputs)})


def failure_fingerprint(previous: str, step_id: str, attempt: int, error_class: str) -> str:
    """A failed attempt's fingerprint: which attempt failed and how, not the message or trace."""
    return content_hash(
        {"previous": previous, "step_id": step_id, "attempt": attempt, "error_class": error_class}
    )


def flow_fingerprint(
    definition_hash: str, step_fingerprints: Sequence[str], inputs: Mapping[str, Any] | None = None
) -> str:
    """The whole run's fingerprint. Non-empty ``inputs`` enter it (the same definition on the same
    inputs gives the same fingerprint); empty ones leave it as it was before flows had inputs."""
    document: dict[str, Any] = {"definition_hash": definition_hash, "steps": list(step_fingerprints)}
    if inputs:
        document["inputs"] = dict(inputs)
    return content_hash(document)
