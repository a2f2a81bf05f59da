"""Artifacts: content-addressed step outputs."""

from __future__ import annotations

import json.encoder
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, JsonValue

from chem_persistence_async.domain.canonical import canonical_json, normalize_json, sha256_hex


def artifact_hash(kind: str, payload: Any) -> str:
    """sha256 hex of the canonical JSON of ``{"kind": kind, "payload": payload}``."""
    return artifact_hash_of(kind_json(kind), canonical_json(payload))


def kind_json(kind: str) -> bytes:
    """``canonical_json(kind)``; a plain ASCII kind without the walk (the encoder's own escaping)."""
    if type(kind) is str and kind.isascii() and "\x00" not in kind:
        return _encode_string(kind).encode()
    return canonical_json(kind)


_encode_string: Callable[[str], str] = json.encoder.encode_basestring


def artifact_hash_of(kind_json: bytes, payload_json: bytes) -> str:
    """``artifact_hash`` from the canonical JSON of the kind and of the payload: the canonical JSON
    of ``{"kind": k, "payload": p}`` is these pieces in this (sorted) order. Built this way, the
    payload may nest as deep as any JSON value (``MAX_JSON_DEPTH``): the object around it is no
    level of its own, and a payload already encoded is not normalised again."""
    return sha256_hex(b'{"kind":' + kind_json + b',"payload":' + payload_json + b"}")


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
