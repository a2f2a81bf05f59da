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
import math
from collections.abc import Mapping
from typing import Any

from chem_persistence_async.domain.errors import UnstorableValueError

JsonValue = Any
"""Any value ``json`` can encode: dict, list, str, int, float, bool or None."""

_BIG_FLOAT = 1e16


def normalize_json(value: JsonValue, _path: str = "$") -> JsonValue:
    """Return ``value`` as PostgreSQL will give it back, or raise ``UnstorableValueError``."""
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
            out[key] = normalize_json(item, f"{_path}.{key}")
        return out
    if isinstance(value, list | tuple):
        return [normalize_json(item, f"{_path}[{i}]") for i, item in enumerate(value)]
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
    return _dumps(normalize_json(value))


def _dumps(normalized: JsonValue) -> bytes:
    return json.dumps(
        normalized, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def content_hash(value: JsonValue) -> str:
    """sha256 hex of the canonical JSON of ``value``."""
    return sha256_hex(canonical_json(value))
