"""Artifacts: content-addressed step outputs."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, JsonValue

from chem_persistence_async.domain.canonical import content_hash, normalize_json


def artifact_hash(kind: str, payload: Any) -> str:
    """sha256 hex of the canonical JSON of ``{"kind": kind, "payload": payload}``."""
    return content_hash({"kind": kind, "payload": payload})


class Artifact(BaseModel):
    """A step output. ``hash`` is of kind + payload; ``metadata`` does not enter it.

    Build one with ``Artifact.of(kind, payload)``; an ``Artifact(hash=...)`` built by hand is
    checked by the store, which rejects a hash that does not match the content.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    hash: str
    kind: str
    payload: JsonValue
    metadata: JsonValue = None

    @classmethod
    def of(cls, kind: str, payload: Any, metadata: Any = None) -> Artifact:
        payload = normalize_json(payload)
        metadata = None if metadata is None else normalize_json(metadata)
        return cls(hash=artifact_hash(kind, payload), kind=kind, payload=payload, metadata=metadata)

    def content_matches(self) -> bool:
        return artifact_hash(self.kind, self.payload) == self.hash
