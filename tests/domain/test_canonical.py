"""Canonical JSON and content hashes (SPEC sections 2 and 6): pure, no database."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chem_persistence_async.domain.canonical import (
    canonical_json,
    content_hash,
    normalize_json,
    sha256_hex,
)
from chem_persistence_async.errors import InvalidInputError, UnstorableValueError

REPO_ROOT = Path(__file__).resolve().parents[2]

# A value exercising nesting, unicode, floats, big floats, ints, bools and None.
SAMPLE = {
    "z": [3, 2.5, {"b": None, "a": True}],
    "a": "ünïcødé ✓ 𝄞",
    "m": {"y": 1e16, "x": -2.0e20, "w": 0.1},
    "n": 12345678901234567890,
}


# --- the canonical form ----------------------------------------------------------------------------


def test_keys_are_sorted_at_every_level() -> None:
    assert canonical_json({"b": 1, "a": {"d": 2, "c": 3}}) == b'{"a":{"c":3,"d":2},"b":1}'


def test_separators_are_compact() -> None:
    out = canonical_json({"a": [1, 2, {"b": "c d"}]})
    assert out == b'{"a":[1,2,{"b":"c d"}]}'
    assert b", " not in out
    assert b": " not in out


def test_output_is_utf8_not_ascii_escaped() -> None:
    out = canonical_json({"k": "é✓𝄞"})
    assert isinstance(out, bytes)
    assert out == '{"k":"é✓𝄞"}'.encode()
    assert b"\\u" not in out


def test_known_answer_hash() -> None:
    expected = hashlib.sha256(b'{"a":1,"b":[true,null,"x"]}').hexdigest()
    assert content_hash({"b": [True, None, "x"], "a": 1}) == expected
    assert sha256_hex(b"abc") == hashlib.sha256(b"abc").hexdigest()


def test_insertion_order_does_not_matter() -> None:
    one = {"a": 1, "b": {"x": 1, "y": 2}}
    two = {"b": {"y": 2, "x": 1}, "a": 1}
    assert canonical_json(one) == canonical_json(two)
    assert content_hash(one) == content_hash(two)


def test_tuples_and_lists_are_the_same_json() -> None:
    assert canonical_json({"a": (1, 2)}) == canonical_json({"a": [1, 2]})


def test_canonical_json_is_stable_and_round_trips() -> None:
    first = canonical_json(SAMPLE)
    assert canonical_json(SAMPLE) == first
    # Decoding and re-encoding the canonical form gives the same bytes (a fixed point).
    assert canonical_json(json.loads(first)) == first


def test_different_values_hash_differently() -> None:
    assert content_hash({"a": 1}) != content_hash({"a": 2})
    assert content_hash({"a": 1}) != content_hash({"a": "1"})
    assert content_hash([1, 2]) != content_hash([2, 1])


def test_hash_is_64_lowercase_hex() -> None:
    digest = content_hash(SAMPLE)
    assert len(digest) == 64
    assert set(digest) <= set("0123456789abcdef")


# --- normalisation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1e16, 10**16),
        (-1e16, -(10**16)),
        (1.5e17, 15 * 10**16),
        (2.0e20, 2 * 10**20),
    ],
)
def test_big_floats_become_ints(value: float, expected: int) -> None:
    out = normalize_json(value)
    assert type(out) is int
    assert out == expected
    assert canonical_json(value) == str(expected).encode()


@pytest.mark.parametrize("value", [9.999e15, 0.1, -1.5, 1e-7, 0.0])
def test_small_floats_stay_floats(value: float) -> None:
    out = normalize_json(value)
    assert type(out) is float
    assert out == value


def test_big_floats_are_normalised_inside_containers() -> None:
    out = normalize_json({"a": [1e16, {"b": 3e16}]})
    assert out == {"a": [10**16, {"b": 3 * 10**16}]}
    assert type(out["a"][0]) is int
    assert type(out["a"][1]["b"]) is int
    # The float and the int it becomes hash the same: the hash is of the normalised form.
    assert content_hash({"v": 1e16}) == content_hash({"v": 10**16})


def test_scalars_pass_through_unchanged() -> None:
    for value in (None, True, False, 0, -7, 10**30, "", "text"):
        out = normalize_json(value)
        assert out == value
        assert type(out) is type(value)


def test_normalize_returns_plain_dicts_and_lists() -> None:
    out = normalize_json({"a": (1, (2, 3))})
    assert out == {"a": [1, [2, 3]]}
    assert isinstance(out["a"], list)
    assert isinstance(out["a"][1], list)


@pytest.mark.parametrize(
    ("value", "path"),
    [
        (float("nan"), "$"),
        ({"a": float("inf")}, "$.a"),
        ({"a": [1, float("-inf")]}, "$.a[1]"),
        ({"a": {"b": "x\x00y"}}, "$.a.b"),
        ({"a": ["ok", "\ud800"]}, "$.a[1]"),
        ({"lone": "\udfff tail"}, "$.lone"),
    ],
)
def test_unstorable_values_raise_naming_the_path(value: object, path: str) -> None:
    with pytest.raises(UnstorableValueError) as info:
        normalize_json(value)
    assert str(info.value).startswith(f"{path}:")
    # It is also the package's input error and a ValueError.
    assert isinstance(info.value, InvalidInputError)
    assert isinstance(info.value, ValueError)


def test_nul_and_surrogate_in_keys_are_rejected() -> None:
    with pytest.raises(UnstorableValueError, match=r"^\$\.outer:"):
        normalize_json({"outer": {"bad\x00key": 1}})
    with pytest.raises(UnstorableValueError, match=r"^\$:"):
        normalize_json({"\ud83d": 1})


@pytest.mark.parametrize("key", [1, 1.5, None, True, ("a",)])
def test_non_string_keys_are_rejected(key: object) -> None:
    with pytest.raises(UnstorableValueError, match=r"^\$\.x: object key .* is not a string"):
        normalize_json({"x": {key: "v"}})


@pytest.mark.parametrize("value", [{1, 2}, b"bytes", object()])
def test_non_json_types_are_rejected(value: object) -> None:
    with pytest.raises(UnstorableValueError, match=r"^\$\.v\[0\]: .* is not a JSON value"):
        normalize_json({"v": [value]})


def test_canonical_json_and_content_hash_reject_unstorable_values() -> None:
    with pytest.raises(UnstorableValueError):
        canonical_json({"a": float("nan")})
    with pytest.raises(UnstorableValueError):
        content_hash({"a": "\x00"})


def test_normalize_does_not_mutate_its_input() -> None:
    value = {"b": [1e16, (1, 2)], "a": {"c": 2.5}}
    snapshot = repr(value)
    normalize_json(value)
    canonical_json(value)
    assert repr(value) == snapshot


# --- across processes --------------------------------------------------------------------------------

_CHILD = """
import json, sys
from chem_persistence_async.domain.canonical import canonical_json, content_hash
value = json.loads(sys.stdin.read())
# Rebuild the dicts in reverse insertion order so the child's dicts really differ from the parent's.
def rev(v):
    if isinstance(v, dict):
        return {k: rev(v[k]) for k in reversed(list(v))}
    if isinstance(v, list):
        return [rev(i) for i in v]
    return v
value = rev(value)
value["m"]["y"] = 1e16  # a float in the child, an int after normalisation
print(json.dumps({"hash": content_hash(value), "canonical": canonical_json(value).decode("utf-8")}))
"""


@pytest.mark.parametrize("hash_seed", ["0", "12345"])
def test_content_hash_is_the_same_in_another_process(hash_seed: str) -> None:
    env = dict(os.environ, PYTHONHASHSEED=hash_seed, PYTHONIOENCODING="utf-8")
    result = subprocess.run(
        [sys.executable, "-c", _CHILD],
        input=json.dumps(SAMPLE),
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=REPO_ROOT,
        env=env,
        check=True,
        timeout=120,
    )
    child = json.loads(result.stdout)
    assert child["canonical"].encode("utf-8") == canonical_json(SAMPLE)
    assert child["hash"] == content_hash(SAMPLE)
