"""Artifacts: content-addressed step outputs."""

from __future__ import annotations

import json.encoder
import weakref
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
        """The artifact of ``payload`` (normalised as PostgreSQL gives JSON back), hashed.

        The content is what it is here: the store writes the canonical bytes made now, those the
        hash is of (see ``encoded_payload``), so a payload changed in place afterwards is neither
        stored nor refused. Make a new artifact for new content."""
        payload = normalize_json(payload)
        metadata = None if metadata is None else normalize_json(metadata)
        payload_json = canonical_json(payload)
        hash_ = artifact_hash_of(kind_json(kind), payload_json)
        artifact = cls(hash=hash_, kind=kind, payload=payload, metadata=metadata)
        _remember_encoded(artifact, payload_json)
        return artifact

    def content_matches(self) -> bool:
        return artifact_hash(self.kind, self.payload) == self.hash


# --- the canonical bytes ``Artifact.of`` made, for the store ------------------------------------

_ENCODED: dict[int, tuple[weakref.ref[Artifact], int, str, str, bytes]] = {}
"""Per live artifact made by ``Artifact.of`` (by ``id``): a reference to it, the ``id`` of its
payload, its kind and hash, and the canonical JSON of its payload the hash was made from. Private:
kept beside the model, not in it (pydantic compares and copies private attributes, so a
``model_copy(update={"payload": ...})`` would carry bytes that are not its payload's); an entry
goes when its artifact does. An artifact held therefore holds its content twice, as objects and as
these bytes (the ones a store would otherwise make again at every append of it)."""


def _remember_encoded(artifact: Artifact, payload_json: bytes) -> None:
    key = id(artifact)

    def forget(ref: weakref.ref[Artifact]) -> None:
        entry = _ENCODED.get(key)
        if entry is not None and entry[0] is ref:
            del _ENCODED[key]

    ref = weakref.ref(artifact, forget)
    _ENCODED[key] = (ref, id(artifact.payload), artifact.kind, artifact.hash, payload_json)


def encoded_payload(artifact: Artifact) -> bytes | None:
    """The canonical JSON of ``artifact``'s payload, if ``Artifact.of`` made it and its hash from
    it; else ``None`` (an artifact built by hand, or copied: the store encodes and checks it).

    Why: a store would otherwise encode every artifact again and hash it to refuse a hand-built one
    whose hash is wrong (1.5 ms for 100 KB, more than a raw ``json.dumps`` of it). The bytes are
    only handed over for the very object ``of`` returned, with the same kind, hash and payload
    object; a payload changed in place since is not seen (the artifact is its content at ``of``,
    and that is what is stored, matching its hash)."""
    entry = _ENCODED.get(id(artifact))
    if (
        entry is None
        or entry[0]() is not artifact
        or entry[1] != id(artifact.payload)
        or entry[2] != artifact.kind
        or entry[3] != artifact.hash
    ):
        return None
    return entry[4]
