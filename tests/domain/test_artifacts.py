"""Artifacts (SPEC section 2): content-addressed by kind + payload, metadata outside the hash."""

from __future__ import annotations

import hashlib
import json

import pytest
from pydantic import ValidationError

from chem_persistence_async.domain.artifacts import Artifact, artifact_hash, encoded_payload
from chem_persistence_async.domain.canonical import canonical_json
from chem_persistence_async.errors import UnstorableValueError


def _expected(kind: str, payload: object) -> str:
    text = json.dumps(
        {"kind": kind, "payload": payload}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_hash_is_sha256_of_canonical_kind_and_payload() -> None:
    payload = {"smiles": "CCO", "atoms": [6, 6, 8], "name": "éthanol"}
    artifact = Artifact.of("molecule", payload)
    assert artifact.hash == _expected("molecule", payload)
    assert (
        artifact.hash == hashlib.sha256(canonical_json({"kind": "molecule", "payload": payload})).hexdigest()
    )
    assert artifact.hash == artifact_hash("molecule", payload)
    assert len(artifact.hash) == 64
    assert artifact.kind == "molecule"
    assert artifact.payload == payload
    assert artifact.metadata is None
    assert artifact.content_matches()


def test_known_answer() -> None:
    expected = hashlib.sha256(b'{"kind":"k","payload":[1,"a"]}').hexdigest()
    assert Artifact.of("k", [1, "a"]).hash == expected


def test_key_order_of_payload_does_not_matter() -> None:
    assert Artifact.of("k", {"a": 1, "b": 2}).hash == Artifact.of("k", {"b": 2, "a": 1}).hash


def test_kind_and_payload_both_enter_the_hash() -> None:
    base = Artifact.of("k", {"a": 1})
    assert Artifact.of("other", {"a": 1}).hash != base.hash
    assert Artifact.of("k", {"a": 2}).hash != base.hash


def test_metadata_does_not_enter_the_hash() -> None:
    plain = Artifact.of("k", {"a": 1})
    with_meta = Artifact.of("k", {"a": 1}, metadata={"produced_by": "w1", "at": "2024-01-01"})
    other_meta = Artifact.of("k", {"a": 1}, metadata={"produced_by": "w2"})
    assert plain.hash == with_meta.hash == other_meta.hash
    assert with_meta.metadata == {"produced_by": "w1", "at": "2024-01-01"}
    assert with_meta.content_matches()


def test_payload_is_normalised_before_hashing() -> None:
    artifact = Artifact.of("k", {"big": 1e16, "t": (1, 2)})
    assert artifact.payload == {"big": 10**16, "t": [1, 2]}
    assert type(artifact.payload["big"]) is int
    assert artifact.hash == Artifact.of("k", {"big": 10**16, "t": [1, 2]}).hash
    assert artifact.content_matches()


@pytest.mark.parametrize("payload", [{"a": float("nan")}, {"a": "x\x00"}, {1: "a"}])
def test_unstorable_payloads_are_rejected(payload: object) -> None:
    with pytest.raises(UnstorableValueError):
        Artifact.of("k", payload)


def test_unstorable_metadata_is_rejected() -> None:
    with pytest.raises(UnstorableValueError):
        Artifact.of("k", {"a": 1}, metadata={"m": float("inf")})


def test_tampered_artifact_does_not_match_its_content() -> None:
    good = Artifact.of("k", {"a": 1})
    assert not good.model_copy(update={"payload": {"a": 2}}).content_matches()
    assert not good.model_copy(update={"kind": "other"}).content_matches()
    assert not Artifact(hash="0" * 64, kind="k", payload={"a": 1}).content_matches()
    assert Artifact(hash=good.hash, kind="k", payload={"a": 1}).content_matches()
    # Metadata is not content: changing it keeps the match.
    assert good.model_copy(update={"metadata": {"note": "x"}}).content_matches()


def test_artifact_is_frozen_and_strict() -> None:
    artifact = Artifact.of("k", {"a": 1})
    with pytest.raises(ValidationError):
        artifact.payload = {"a": 2}  # type: ignore[misc]
    with pytest.raises(ValidationError):
        Artifact(hash=artifact.hash, kind="k", payload={"a": 1}, extra=True)  # type: ignore[call-arg]


def test_the_canonical_bytes_of_of_are_handed_over_only_for_that_very_artifact() -> None:
    artifact = Artifact.of("k", {"b": [1, 2.5], "a": "é"})
    assert encoded_payload(artifact) == canonical_json(artifact.payload)
    # Copies, hand-built twins and relabelled copies get nothing: the store encodes and checks them.
    assert encoded_payload(artifact.model_copy()) is None
    assert encoded_payload(artifact.model_copy(update={"payload": {"a": 2}})) is None
    assert encoded_payload(Artifact(hash=artifact.hash, kind="k", payload=artifact.payload)) is None
    # A payload object swapped in behind the model's back is not the one the bytes are of.
    object.__setattr__(artifact, "payload", {"a": 2})
    assert encoded_payload(artifact) is None


def test_the_handed_over_bytes_go_with_their_artifact() -> None:
    import gc

    from chem_persistence_async.domain import artifacts as module

    made = [Artifact.of("k", {"i": i}) for i in range(50)]
    keys = [id(artifact) for artifact in made]
    assert all(module._ENCODED[key][0]() is artifact for key, artifact in zip(keys, made, strict=True))
    del made
    gc.collect()
    assert not any(key in module._ENCODED for key in keys)  # (no artifact was made since)
