"""Canonical JSON and content hashes, identical on every backend, process and machine.

The canonical form is what PostgreSQL's JSONB gives back, decided before anything is hashed or
stored, so a value read back from either backend hashes as the value written (SPEC 6). What JSONB
does to each class of value, established against PostgreSQL 15 by ``tests/contracts/test_jsonb_parity.py``:

* objects: keys reordered and duplicates dropped (a ``dict`` has none): keys are sorted here, with
  compact separators and UTF-8 output;
* strings (keys and values alike): kept exactly, except that ``\\u0000`` and lone surrogates are
  refused, so they are refused here too (``UnstorableValueError``);
* numbers become ``numeric``, which keeps the decimal digits of the JSON text and drops the sign of
  a zero: ``-0.0`` becomes ``0.0``; a float of magnitude >= 1e16, which Python writes with an
  exponent (``1e+16``), comes back as the integer that decimal text names (``1e+23`` ->
  ``100000000000000000000000``, not the float's binary value); any smaller float comes back as the
  same float (its text gains or loses an exponent, never a digit); NaN and infinities are refused;
* integers are kept exactly, up to ``MAX_INT_DIGITS`` digits (what Python's and pydantic's JSON
  parsers read back; Python's own ``sys.get_int_max_str_digits()`` when lower): longer ones are refused;
* nesting: PostgreSQL takes thousands of levels, but pydantic reads an event back only up to 201;
  values deeper than ``MAX_JSON_DEPTH`` are refused (``JsonNestingError``, never ``RecursionError``).
"""

from __future__ import annotations

import hashlib
import json
import json.encoder
import math
import sys
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from chem_persistence_async.errors import JsonNestingError, UnstorableValueError

JsonValue = Any
"""Any value ``json`` can encode: dict, list, str, int, float, bool or None."""

MAX_JSON_DEPTH = 128
"""The deepest nesting of objects and arrays a free-form JSON value may have (an artifact's payload
or metadata, a signal's data, an error's details): ``[]`` is one level, ``[[]]`` two. Events are
read back by pydantic, whose JSON parser stops after 201 levels; 128 leaves room for the event around
the value (two levels at most)."""

MAX_INT_DIGITS = 4300
"""The most decimal digits an integer may have: pydantic's JSON parser reads no longer ones back
(whatever ``sys.set_int_max_str_digits`` says), and 4300 is Python's default limit too.
PostgreSQL's ``numeric`` would take 131,072."""

_BIG_FLOAT = 1e16
_BIG_FLOAT_LOW = -_BIG_FLOAT
_FAST_INT = 1 << 63
_FAST_INT_LOW = -_FAST_INT
"""Integers strictly inside +-2**63 are short enough without counting their digits. The negative
bounds are constants of their own: ``-_FAST_INT`` in a test would build a new int every time."""


class _Unusual(Exception):
    """Raised by the fast walk for anything it does not handle itself: the full walk decides."""


def normalize_json(value: JsonValue, _path: str = "$") -> JsonValue:
    """Return ``value`` as PostgreSQL will give it back, or raise ``UnstorableValueError`` (whose
    message starts with the offending value's path, ``_path`` being the path of ``value`` itself)."""
    try:
        return _fast_normalize(value, 0)
    except _Unusual:
        return _normalize(value, _path, 0)


def _fast_normalize(value: JsonValue, depth: int) -> JsonValue:
    # Exact built-in types only, no paths built: the common case at a fraction of the cost. Every
    # error and every other type (subclasses, other mappings) goes to ``_normalize``, which gives
    # the same result and the error message with its path. Scalars inside a container are checked
    # in its loop, not by a call each.
    t = type(value)
    if t is dict:
        depth += 1
        if depth > MAX_JSON_DEPTH:
            raise _Unusual
        out: dict[str, JsonValue] = {}
        for key, item in value.items():
            if type(key) is not str or "\x00" in key or not (key.isascii() or _utf8_ok(key)):
                raise _Unusual
            t = type(item)
            if t is str:
                if "\x00" in item or not (item.isascii() or _utf8_ok(item)):
                    raise _Unusual
            elif t is int:
                if not _FAST_INT_LOW < item < _FAST_INT:
                    raise _Unusual
            elif t is float:
                if not _BIG_FLOAT_LOW < item < _BIG_FLOAT:  # NaN and infinities too
                    raise _Unusual
                item = item or 0.0  # -0.0 -> 0.0
            elif not (t is bool or item is None):
                item = _fast_normalize(item, depth)
            out[key] = item
        return out
    if t is list or t is tuple:
        depth += 1
        if depth > MAX_JSON_DEPTH:
            raise _Unusual
        items: list[JsonValue] = []
        for item in value:
            t = type(item)
            if t is str:
                if "\x00" in item or not (item.isascii() or _utf8_ok(item)):
                    raise _Unusual
            elif t is int:
                if not _FAST_INT_LOW < item < _FAST_INT:
                    raise _Unusual
            elif t is float:
                if not _BIG_FLOAT_LOW < item < _BIG_FLOAT:
                    raise _Unusual
                item = item or 0.0
            elif not (t is bool or item is None):
                item = _fast_normalize(item, depth)
            items.append(item)
        return items
    if t is str:
        if "\x00" in value or not (value.isascii() or _utf8_ok(value)):
            raise _Unusual
        return value
    if t is int:
        if _FAST_INT_LOW < value < _FAST_INT:
            return value
        raise _Unusual
    if t is bool or value is None:
        return value
    if t is float:
        if _BIG_FLOAT_LOW < value < _BIG_FLOAT:
            return value or 0.0
        raise _Unusual
    raise _Unusual


def _utf8_ok(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _normalize(value: JsonValue, path: str, depth: int) -> JsonValue:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        _check_int(value, path)
        return int(value)
    if isinstance(value, str):
        check_text(value, path)
        return value
    if isinstance(value, float):
        return _normal_float(value, path)
    if isinstance(value, Mapping | list | tuple):
        depth += 1
        if depth > MAX_JSON_DEPTH:
            raise JsonNestingError(
                f"{_short(path)}: JSON nested deeper than {MAX_JSON_DEPTH} levels (MAX_JSON_DEPTH)"
            )
        if isinstance(value, Mapping):
            out: dict[str, JsonValue] = {}
            for key, item in value.items():
                if not isinstance(key, str):
                    raise UnstorableValueError(f"{_short(path)}: object key {key!r:.60} is not a string")
                check_text(key, path, "object key")
                out[key] = _normalize(item, f"{path}.{key}", depth)
            return out
        return [_normalize(item, f"{path}[{i}]", depth) for i, item in enumerate(value)]
    raise UnstorableValueError(f"{_short(path)}: {type(value).__name__} is not a JSON value")


def _normal_float(value: float, path: str) -> float | int:
    if not math.isfinite(value):
        raise UnstorableValueError(f"{_short(path)}: {value!r} cannot be stored as JSON")
    if abs(value) >= _BIG_FLOAT:
        # Python writes it with an exponent (``1e+23``); JSONB keeps that decimal value, an integer.
        return int(Decimal(float.__repr__(value)))
    return float(value) or 0.0  # -0.0 -> 0.0


def _check_int(value: int, path: str) -> None:
    if _FAST_INT_LOW < value < _FAST_INT:
        return
    limit = max_int_digits()
    # A bound from the bit length first: ``str`` of a huge int is slow, or refused outright.
    too_long = value.bit_length() > limit * 3.33 + 4  # 3.33 > log2(10): surely more than `limit` digits
    if not too_long:
        try:
            too_long = len(str(abs(value))) > limit
        except ValueError:  # more digits than Python will print, and its limit is >= ``limit``
            too_long = True
    if too_long:
        raise UnstorableValueError(
            f"{_short(path)}: an integer of more than {limit} digits cannot be stored and read back"
        )


def max_int_digits() -> int:
    """The most digits a stored integer may have here: ``MAX_INT_DIGITS``, or Python's own limit
    (``sys.get_int_max_str_digits()``) when that is lower, since no longer one can be printed."""
    python_limit = sys.get_int_max_str_digits()
    return MAX_INT_DIGITS if python_limit == 0 else min(python_limit, MAX_INT_DIGITS)


def check_text(text: str, path: str, what: str = "string") -> None:
    """Refuse text PostgreSQL cannot hold: a ``\\u0000``, or a lone surrogate (not UTF-8)."""
    if "\x00" in text:
        raise UnstorableValueError(f"{_short(path)}: {what} may not contain \\u0000")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UnstorableValueError(f"{_short(path)}: {what} is not valid UTF-8 ({exc.reason})") from None


def _short(path: str) -> str:
    """A path for a message: a deeply nested one is cut in its middle."""
    return path if len(path) <= 120 else f"{path[:60]}…{path[-50:]}"


def canonical_json(value: JsonValue) -> bytes:
    """Canonical UTF-8 JSON bytes of ``value`` (normalised first)."""
    if _already_normal(value, 0):
        return _dumps_checked(value)
    return _dumps(normalize_json(value))


def encodable(value: JsonValue, _path: str = "$") -> JsonValue:
    """``value`` itself when ``normalize_json`` would not change it (tuples aside: they encode as
    lists, and its integers are measured when ``dumps_normalized`` encodes it), else
    ``normalize_json(value)``: for building a larger document without copying its parts."""
    return value if _already_normal(value, 0) else normalize_json(value, _path)


def already_normal(value: JsonValue) -> bool:
    """Whether ``value`` is already what JSONB gives back, every integer included (a serializer
    other than ``canonical_json`` may then encode it as it is)."""
    return _already_normal(value, 0, _SMALL_INT)


_SMALL_INT = 10**15
"""Integers below this in size need no measuring (a comparison, not a conversion to text)."""


def _already_normal(value: JsonValue, depth: int, int_bound: int | None = None) -> bool:
    """Whether ``normalize_json`` would return ``value`` unchanged (and accept it), checked without
    building a copy: the common case of plain dicts, lists, strings and ints. Scalars inside a
    container are checked in the loop, not by a call each. ``False`` only means "normalise it".
    Integers are not measured here: encode what this accepts with ``_dumps_checked``, which is."""
    t = type(value)
    if t is dict:
        depth += 1
        if depth > MAX_JSON_DEPTH:
            return False
        items: Any = value.values()
        for key in value:
            if type(key) is not str or "\x00" in key or not (key.isascii() or _utf8_ok(key)):
                return False
    elif t is list or t is tuple:
        depth += 1
        if depth > MAX_JSON_DEPTH:
            return False
        items = value
    else:
        items = (value,)
    for item in items:
        t = type(item)
        if t is str:
            if "\x00" in item or not (item.isascii() or _utf8_ok(item)):
                return False
        elif t is int or t is bool or item is None:
            # An int too long is caught by ``_dumps_checked``, at no cost per int; a caller that
            # does not encode with it asks for a bound instead.
            if int_bound is not None and t is int and not -int_bound < item < int_bound:
                return False
        elif t is float:
            # False for NaN, infinities, big floats (they become ints) and -0.0 (it becomes 0.0)
            if not _BIG_FLOAT_LOW < item < _BIG_FLOAT or (not item and math.copysign(1.0, item) < 0):
                return False
        elif t is dict or t is list or t is tuple:
            if not _already_normal(item, depth, int_bound):
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


def _dumps_checked(value: JsonValue) -> bytes:
    """``_dumps`` of a value ``_already_normal`` accepted, refusing an integer too long to read back.

    Nothing is spent per integer: one longer than Python will print makes the encoder raise, and
    one of more than ``MAX_INT_DIGITS`` digits needs that many bytes of output, so only a long
    output under a raised Python limit is walked again (``normalize_json`` then names the integer).
    """
    try:
        out = _dumps(value)
    except ValueError:  # an int longer than Python will print (NaN never gets here)
        normalize_json(value)
        raise  # pragma: no cover - normalize_json raised already
    if len(out) > MAX_INT_DIGITS and not 0 < sys.get_int_max_str_digits() <= MAX_INT_DIGITS:
        normalize_json(value)
    return out


def dumps_normalized(normalized: JsonValue) -> bytes:
    """Canonical bytes of a value in normal form (what ``normalize_json`` or ``encodable`` return)."""
    return _dumps_checked(normalized)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def content_hash(value: JsonValue) -> str:
    """sha256 hex of the canonical JSON of ``value``."""
    return sha256_hex(canonical_json(value))
