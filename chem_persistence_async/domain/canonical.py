"""Canonical JSON and content hashes, identical on every backend, process and machine.

The canonical form is what PostgreSQL's JSONB would give back, decided before anything is hashed or
stored, so a value read back from either backend equals the value written:

* keys sorted, compact separators, UTF-8, no NaN or infinities;
* ``\\u0000`` and lone surrogates are rejected (JSONB cannot store them);
* floats of magnitude >= 1e16 are integral and JSONB prints them without a decimal point, so they
  become ``int`` here too.
"""

from __future__ import annotations

import hashlib
import json
import json.encoder
import math
from collections.abc import Mapping
from typing import Any

from chem_persistence_async.errors import UnstorableValueError

JsonValue = Any
"""Any value ``json`` can encode: dict, list, str, int, float, bool or None."""

_BIG_FLOAT = 1e16


class _Unusual(Exception):
    """Raised by the fast walk for anything it does not handle itself: the full walk decides."""


def normalize_json(value: JsonValue, _path: str = "$") -> JsonValue:
    """Return ``value`` as PostgreSQL will give it back, or raise ``UnstorableValueError``."""
    try:
        return _fast_normalize(value)
    except _Unusual:
        return _normalize(value, _path)


def _fast_normalize(value: JsonValue) -> JsonValue:
    # Exact built-in types only, no paths built: the common case at a fraction of the cost. Every
    # error and every other type (subclasses, other mappings) goes to ``_normalize``, which gives
    # the same result and the error message with its path.
    t = type(value)
    if t is str:
        if "\x00" in value or not (value.isascii() or _utf8_ok(value)):
            raise _Unusual
        return value
    if t is int or t is bool or value is None:
        return value
    if t is float:
        if not math.isfinite(value):
            raise _Unusual
        return int(value) if abs(value) >= _BIG_FLOAT else value
    if t is dict:
        out: dict[str, JsonValue] = {}
        for key, item in value.items():
            if type(key) is not str or "\x00" in key or not (key.isascii() or _utf8_ok(key)):
                raise _Unusual
            out[key] = _fast_normalize(item)
        return out
    if t is list or t is tuple:
        return [_fast_normalize(item) for item in value]
    raise _Unusual


def _utf8_ok(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _normalize(value: JsonValue, _path: str = "$") -> JsonValue:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, str):
        _check_string(value, _path)
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UnstorableValueError(f"{_path}: {value!r} cannot be stored as JSON")
        if abs(value) >= _BIG_FLOAT:
            return int(value)
        return value
    if isinstance(value, Mapping):
        out: dict[str, JsonValue] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise UnstorableValueError(f"{_path}: object key {key!r} is not a string")
            _check_string(key, _path)
            out[key] = _normalize(item, f"{_path}.{key}")
        return out
    if isinstance(value, list | tuple):
        return [_normalize(item, f"{_path}[{i}]") for i, item in enumerate(value)]
    raise UnstorableValueError(f"{_path}: {type(value).__name__} is not a JSON value")


def _check_string(text: str, path: str) -> None:
    if "\x00" in text:
        raise UnstorableValueError(f"{path}: strings may not contain \\u0000")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UnstorableValueError(f"{path}: string is not valid UTF-8 ({exc.reason})") from None


def canonical_json(value: JsonValue) -> bytes:
    """Canonical UTF-8 JSON bytes of ``value`` (normalised first)."""
    return _dumps(value if _already_normal(value) else normalize_json(value))


def _already_normal(value: JsonValue) -> bool:
    """Whether ``normalize_json`` would return ``value`` unchanged (and accept it), checked without
    building a copy: the common case of plain dicts, lists, strings and ints. Scalars inside a
    container are checked in the loop, not by a call each. ``False`` only means "normalise it"."""
    t = type(value)
    if t is dict:
        items: Any = value.values()
        for key in value:
            if type(key) is not str or "\x00" in key or not (key.isascii() or _utf8_ok(key)):
                return False
    elif t is list or t is tuple:
        items = value
    else:
        items = (value,)
    for item in items:
        t = type(item)
        if t is str:
            if "\x00" in item or not (item.isascii() or _utf8_ok(item)):
                return False
        elif t is int or t is bool or item is None:
            continue
        elif t is float:
            if not math.isfinite(item) or abs(item) >= _BIG_FLOAT:
                return False
        elif t is dict or t is list or t is tuple:
            if not _already_normal(item):
                return False
        else:
            return False
    return True


_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
"""Built once: ``json.dumps`` with options builds a new encoder on every call."""


_C_MAKE_ENCODER: Any = getattr(json.encoder, "c_make_encoder", None)
_C_ENCODE: Any = (
    None
    if _C_MAKE_ENCODER is None
    else _C_MAKE_ENCODER(
        None,  # no circular check: the normalising walk already went through the value
        _ENCODER.default,
        json.encoder.encode_basestring,
        None,
        ":",
        ",",
        True,  # sort_keys
        False,  # skipkeys
        False,  # allow_nan
    )
)
"""``_ENCODER``'s own C encoder, built once: ``JSONEncoder.encode`` builds it again on every call,
which costs as much as the encoding of a small value."""


def _dumps(normalized: JsonValue) -> bytes:
    if _C_ENCODE is None:  # pragma: no cover - CPython always has the C encoder
        return _ENCODER.encode(normalized).encode("utf-8")
    return "".join(_C_ENCODE(normalized, 0)).encode("utf-8")


def dumps_normalized(normalized: JsonValue) -> bytes:
    """Canonical bytes of a value already in normal form (what ``normalize_json`` returns)."""
    return _dumps(normalized)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def content_hash(value: JsonValue) -> str:
    """sha256 hex of the canonical JSON of ``value``."""
    return sha256_hex(canonical_json(value))
