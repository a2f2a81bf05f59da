"""Canonical JSON and content hashes (SPEC sections 2 and 6): pure, no database."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chem_persistence_async.domain.canonical import (
    MAX_INT_DIGITS,
    MAX_JSON_DEPTH,
    canonical_json,
    content_hash,
    normalize_json,
    sha256_hex,
)
from chem_persistence_async.errors import InvalidInputError, JsonNestingError, UnstorableValueError

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


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # JSONB keeps the decimal digits Python writes (``repr``), not the float's binary value.
        (1e23, 10**23),
        (1.2345678901234567e20, 123456789012345670000),
        (-1.2345e22, -12345000000000000000000),
        (1.7976931348623157e308, 17976931348623157 * 10**292),
    ],
)
def test_big_floats_become_the_integer_of_their_decimal_text(value: float, expected: int) -> None:
    assert int(value) != expected  # the binary value would be another integer
    assert normalize_json(value) == expected
    assert canonical_json([value]) == f"[{expected}]".encode()


@pytest.mark.parametrize(
    "value", [9.999e15, 9999999999999998.0, 0.1, -1.5, 1e-7, 0.0, 100000.0, 5e-324, 2.2250738585072014e-308]
)
def test_small_floats_stay_floats(value: float) -> None:
    out = normalize_json(value)
    assert type(out) is float
    assert out == value


def test_negative_zero_becomes_zero_everywhere() -> None:
    for value in (-0.0, {"a": -0.0}, [-0.0], (-0.0,), {"a": [{"b": -0.0}]}):
        text = json.dumps(normalize_json(value))
        assert "-" not in text
        assert canonical_json(value) == json.dumps(value, separators=(",", ":")).replace("-", "").encode()
    assert math.copysign(1.0, normalize_json(-0.0)) == 1.0
    assert content_hash({"x": -0.0}) == content_hash({"x": 0.0})
    assert content_hash({"x": -0.0}) != content_hash({"x": 0})  # still a float: 0.0, not 0


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


@pytest.mark.parametrize("bad", ["a\x00", "\ud800", "x\udfffy"])
@pytest.mark.parametrize("where", ["key", "value", "nested key", "key in a list"])
def test_keys_and_values_follow_one_rule(bad: str, where: str) -> None:
    value = {
        "key": {bad: 1},
        "value": {"k": bad},
        "nested key": {"a": {"b": {bad: None}}},
        "key in a list": [{"ok": 1}, {bad: [1]}],
    }[where]
    for encode in (normalize_json, canonical_json, content_hash):
        with pytest.raises(UnstorableValueError, match=r"may not contain \\u0000|not valid UTF-8"):
            encode(value)


# --- integers --------------------------------------------------------------------------------------


@pytest.mark.parametrize("sign", [1, -1])
def test_integers_up_to_the_digit_limit_are_kept_exactly(sign: int) -> None:
    longest = sign * int("9" * MAX_INT_DIGITS)
    assert normalize_json({"n": longest}) == {"n": longest}
    assert canonical_json([longest]) == f"[{longest}]".encode()
    assert canonical_json([2**64, -(2**64)]) == f"[{2**64},{-(2**64)}]".encode()


@pytest.mark.parametrize(
    "value",
    [10**MAX_INT_DIGITS, -(10**MAX_INT_DIGITS), 10**20000, -(2**100000)],
    ids=["4301-digits", "minus-4301-digits", "20001-digits", "minus-2**100000"],
)
def test_longer_integers_are_refused_with_a_typed_error(value: int) -> None:
    for encode in (normalize_json, canonical_json, content_hash):
        with pytest.raises(UnstorableValueError, match=r"^\$\.a\[1\]: an integer of more than 4300 digits"):
            encode({"a": [0, value]})


def test_python_s_own_digit_limit_applies_when_lower_and_never_lifts_ours() -> None:
    before = sys.get_int_max_str_digits()
    try:
        sys.set_int_max_str_digits(1000)
        assert canonical_json([10**999]) == b"[1" + b"0" * 999 + b"]"
        with pytest.raises(UnstorableValueError, match="more than 1000 digits"):
            canonical_json([10**1000])
        with pytest.raises(UnstorableValueError, match="more than 1000 digits"):
            normalize_json({"n": -(10**1000)})
        sys.set_int_max_str_digits(0)  # unlimited in Python, but not what can be read back
        with pytest.raises(UnstorableValueError, match="more than 4300 digits"):
            canonical_json(["padding" * 1000, 10**MAX_INT_DIGITS])
        with pytest.raises(UnstorableValueError, match="more than 4300 digits"):
            normalize_json(10**MAX_INT_DIGITS)
        assert len(canonical_json(10 ** (MAX_INT_DIGITS - 1))) == MAX_INT_DIGITS
    finally:
        sys.set_int_max_str_digits(before)


# --- nesting ---------------------------------------------------------------------------------------


def nested(levels: int, container: str = "list") -> object:
    """A value ``levels`` deep: ``[]`` is one level (or ``{}``; ``tuple`` alternates with dicts)."""
    value: object = [] if container != "dict" else {}
    for i in range(levels - 1):
        if container == "list":
            value = [value]
        elif container == "dict":
            value = {"k": value}
        else:
            value = (value,) if i % 2 else {"k": value}
    return value


@pytest.mark.parametrize("container", ["list", "dict", "mixed"])
def test_json_as_deep_as_the_limit_is_accepted(container: str) -> None:
    value = nested(MAX_JSON_DEPTH, container)
    assert json.loads(canonical_json(value)) == json.loads(json.dumps(value))
    assert normalize_json(value) == json.loads(json.dumps(value))


@pytest.mark.parametrize("container", ["list", "dict", "mixed"])
@pytest.mark.parametrize("levels", [MAX_JSON_DEPTH + 1, 5_000, 200_000])
def test_json_deeper_than_the_limit_raises_a_nesting_error(container: str, levels: int) -> None:
    value = nested(levels, container)
    for encode in (normalize_json, canonical_json, content_hash):
        with pytest.raises(
            JsonNestingError, match=f"JSON nested deeper than {MAX_JSON_DEPTH} levels"
        ) as info:
            encode(value)
        assert isinstance(info.value, UnstorableValueError)


def test_a_cycle_is_refused_as_too_deep_not_a_recursion_error() -> None:
    loop: dict[str, object] = {}
    loop["self"] = loop
    items: list[object] = [1]
    items.append(items)
    for value in (loop, items, {"a": [loop]}):
        with pytest.raises(JsonNestingError):
            canonical_json(value)
        with pytest.raises(JsonNestingError):
            normalize_json(value)


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
