"""What PostgreSQL's JSONB changes, value class by value class, and proof that the library's canonical
JSON already is what JSONB gives back (SPEC 6), on the real database and through both stores.

Facts established here against PostgreSQL (``'…'::jsonb::text``):

============================  ===========================================  ================================
value class                   JSONB                                        the library
============================  ===========================================  ================================
int, any sign, <= 4300 dig.   kept exactly (``numeric``)                   kept
int > 4300 digits             kept up to 131072 digits, but pydantic and   refused: UnstorableValueError
                              Python read no more than 4300 back
-0 (int)                      ``0``                                        Python has no -0 int
-0.0                          ``0.0`` (numeric drops the sign of zero)     normalised to 0.0
float < 1e16 in magnitude     decimal text of its repr, exponent expanded  kept: the same float reads back
                              (``1e-07`` -> ``0.0000001``, ``5e-324`` ->
                              324 decimals): the same float reads back
float >= 1e16 in magnitude    repr has an exponent: becomes the integer    normalised to that integer
                              its decimal text names (``1e+23`` ->         (not ``int(f)``, the binary
                              ``100000000000000000000000``)                value)
NaN, Infinity                 not JSON                                     refused: UnstorableValueError
true, false, null             kept                                         kept
strings (incl. non-BMP,       kept exactly; ``\\uXXXX`` escapes decoded,    kept
escapes, controls, U+FFFF)    no Unicode normalisation
``\\u0000`` (value or key)     refused ("unsupported Unicode escape")       refused: UnstorableValueError
lone surrogate (value, key)   refused ("Unicode low surrogate must         refused: UnstorableValueError
                              follow a high surrogate")
object keys                   reordered (shorter first, then bytewise)     sorted (code point order)
duplicate keys                the last one wins                            a dict has none
nesting                       thousands of levels (stack depth limit       refused beyond MAX_JSON_DEPTH
                              at ~100,000); pydantic reads 201 back        (128): JsonNestingError
============================  ===========================================  ================================
"""

from __future__ import annotations

import json
import math
import struct
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from pydantic import JsonValue, TypeAdapter

from chem_persistence_async import (
    Artifact,
    Database,
    ErrorClass,
    InMemoryEventStore,
    JsonNestingError,
    PgEventStore,
    StepErrorInfo,
    StepFailed,
    StepFinished,
    StepSignal,
    UnstorableValueError,
    artifact_hash,
    canonical_json,
    content_hash,
)
from chem_persistence_async.domain.canonical import MAX_INT_DIGITS, MAX_JSON_DEPTH, normalize_json
from tests import support

FP = "f" * 64
_JITER: TypeAdapter[JsonValue] = TypeAdapter(JsonValue)


@pytest.fixture(scope="module")
async def server(pg_server: support.TestServer) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection to the test server, for questions to JSONB that touch no table."""
    connection = await asyncpg.connect(pg_server.url)
    yield connection
    await connection.close()


def typed(value: Any) -> Any:
    """``value`` with every scalar tagged by its type (and floats by their bits, so ``-0.0`` differs
    from ``0.0``): Python's ``==`` says ``1 == 1.0 == True`` and ``-0.0 == 0.0``, JSON does not."""
    if isinstance(value, bool) or value is None:
        return ("const", value)
    if isinstance(value, int):
        return ("int", value)
    if isinstance(value, float):
        return ("float", struct.pack(">d", value))
    if isinstance(value, str):
        return ("str", value)
    if isinstance(value, dict):
        return ("dict", sorted((key, typed(item)) for key, item in value.items()))
    assert isinstance(value, list | tuple), type(value)
    return ("list", [typed(item) for item in value])


def deep(levels: int) -> Any:
    value: Any = []
    for i in range(levels - 1):
        value = [value] if i % 2 else {"k": value}
    return value


# --- 1. what JSONB does to JSON text ---------------------------------------------------------------

JSONB_FACTS = [
    # numbers
    ("0", "0"),
    ("-0", "0"),
    ("-0.0", "0.0"),
    ("-0.000", "0.000"),
    ("-0e0", "0"),
    ("12345678901234567890123", "12345678901234567890123"),
    ("-12345678901234567890", "-12345678901234567890"),
    ("100000.0", "100000.0"),
    ("1.10", "1.10"),
    ("1e-07", "0.0000001"),
    ("1.5e-05", "0.000015"),
    ("5e-324", "0." + "0" * 323 + "5"),
    ("1e+16", "10000000000000000"),
    ("1.5e+16", "15000000000000000"),
    ("1e+23", "100000000000000000000000"),
    ("1E2", "100"),
    ("1.7976931348623157e+308", "17976931348623157" + "0" * 292),
    # constants
    ("true", "true"),
    ("false", "false"),
    ("null", "null"),
    # strings
    ('"\\u00e9\\ud834\\udd1e\\/"', '"é𝄞/"'),
    ('"e\\u0301"', '"e\u0301"'),
    ('"\\uffff\\ufffe\U0010ffff"', '"\uffff\ufffe\U0010ffff"'),
    ('"a\\u001fb\\n\\"\\\\"', '"a\\u001fb\\n\\"\\\\"'),
    # keys: JSONB's own order, and the last duplicate wins
    ('{"b":1,"a":2,"aa":3,"é":4}', '{"a": 2, "b": 1, "aa": 3, "é": 4}'),
    ('{"a":1,"a":2}', '{"a": 2}'),
    ('{"a":{"x":1,"x":[2]}}', '{"a": {"x": [2]}}'),
]


@pytest.mark.parametrize(("text", "stored"), JSONB_FACTS)
async def test_what_jsonb_does_to_json_text(server: asyncpg.Connection, text: str, stored: str) -> None:
    assert await server.fetchval("SELECT $1::text::jsonb::text", text) == stored


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('"\\u0000"', asyncpg.UntranslatableCharacterError),
        ('{"\\u0000": 1}', asyncpg.UntranslatableCharacterError),
        ('"\\ud800"', asyncpg.InvalidTextRepresentationError),
        ('"\\udc00"', asyncpg.InvalidTextRepresentationError),
        ('{"\\ud83d": 1}', asyncpg.InvalidTextRepresentationError),
        ("NaN", asyncpg.InvalidTextRepresentationError),
        ("Infinity", asyncpg.InvalidTextRepresentationError),
        ("1e131072", asyncpg.NumericValueOutOfRangeError),
    ],
)
async def test_what_jsonb_refuses(server: asyncpg.Connection, text: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        await server.fetchval("SELECT $1::text::jsonb", text)


async def test_jsonb_nests_far_deeper_than_the_library_allows(server: asyncpg.Connection) -> None:
    depth = 20 * MAX_JSON_DEPTH
    assert await server.fetchval("SELECT jsonb_typeof($1::text::jsonb)", "[" * depth + "]" * depth) == "array"
    # What limits the library is reading back: pydantic's JSON parser reads 201 levels, no more.
    assert _JITER.validate_json("[" * 201 + "]" * 201) is not None
    with pytest.raises(ValueError, match="recursion limit"):
        _JITER.validate_json("[" * 202 + "]" * 202)


# --- 2. value classes the library stores: canonical JSON is a fixed point of JSONB ------------------

STORABLE: dict[str, list[Any]] = {
    "int small": [0, 1, -1, 42, 2**31 - 1, -(2**31)],
    "int huge": [2**63, -(2**63) - 1, 10**30, int("9" * MAX_INT_DIGITS), -int("9" * MAX_INT_DIGITS)],
    "negative zero": [-0.0, [-0.0, 0.0], {"z": -0.0, "n": [{"m": -0.0}]}],
    "float plain": [0.1, -1.5, 1 / 3, 100000.0, 123.456, 9999999999999998.0, -9.999e15],
    "float tiny": [1e-7, 1e-5, 1.5e-10, 5e-324, -5e-324, 2.2250738585072014e-308, -1e-300],
    "float big": [1e16, -1e16, 1.5e16, 1e23, -1.2345e22, 1.2345678901234567e20, 1.7976931348623157e308],
    "float exponent forms": [1e15, 1e-4, 1e300, 2.5e-8, 6.02214076e23, 1.602176634e-19],
    "bool and null": [True, False, None, [True, 1, 1.0, None]],
    "strings": [
        "",
        "ünïcødé ✓",
        "𝄞😀\U0010ffff",
        '"\\/\b\f\n\r\t',
        "\x01\x1f\x7f\u2028\u2029",
        "\ufffe\uffff",
        "e\u0301 vs \u00e9",
    ],
    "keys": [
        {"b": 1, "a": 2, "aa": 3, "": 4, "é": 5, "𝄞": 6, '\n"\\': 7},
        {"Z": 1, "a": 2, "\u00e9": 3, "e\u0301": 4},
        {"x": {"b": [{"d": 1, "c": 2}], "a": None}},
    ],
    "nesting": [deep(MAX_JSON_DEPTH), deep(MAX_JSON_DEPTH // 2), [[], {}, [[{}]]]],
}
STORABLE_VALUES = [(cls, v) for cls, values in STORABLE.items() for v in values]


async def _jsonb(conn: asyncpg.Connection, text: str | bytes) -> str:
    data = text.decode() if isinstance(text, bytes) else text
    return str(await conn.fetchval("SELECT $1::text::jsonb::text", data))


@pytest.mark.parametrize("cls", list(STORABLE))
async def test_canonical_json_is_a_fixed_point_of_jsonb(server: asyncpg.Connection, cls: str) -> None:
    for value in STORABLE[cls]:
        canonical = canonical_json(value)
        back = await _jsonb(server, canonical)
        assert canonical_json(json.loads(back)) == canonical
        assert canonical_json(_JITER.validate_json(back)) == canonical
        assert typed(json.loads(back)) == typed(normalize_json(value))
        # Normalising before or after a trip through JSONB gives the same bytes: JSONB given the
        # value's plain ``json.dumps`` (``-0.0``, ``1e+23``...) reads back as the canonical form.
        raw_back = await _jsonb(server, json.dumps(value))
        assert canonical_json(json.loads(raw_back)) == canonical
        assert content_hash(json.loads(raw_back)) == content_hash(value)


def _carriers(value: Any) -> tuple[StepSignal, Artifact, StepFinished, StepFailed]:
    """The value in each place free-form JSON is stored: a signal's data, an artifact's payload and
    metadata (its hash computed by the library from the raw value), an error's details (the value
    itself when it is an object, else under ``"v"``)."""
    art = Artifact(hash=artifact_hash("v", value), kind="v", payload=value, metadata=value)
    signal = StepSignal(step_index=0, step_id="s", signal="x", data=value)
    finished = StepFinished(step_index=0, step_id="s", outputs=(art.hash,), fingerprint=FP)
    details = value if isinstance(value, dict) else {"v": value}
    error = StepErrorInfo(error_class=ErrorClass.RUNTIME, message="m", details=details)
    failed = StepFailed(
        step_index=0, step_id="s", attempt=1, error=error, retry_count=0, max_retries=3, fingerprint=FP
    )
    return signal, art, finished, failed


async def _read_back(store: Any, flow: uuid.UUID, art_hash: str, whole: bool) -> dict[str, Any]:
    events = await store.list(flow)
    streamed = [e async for e in store.stream(flow, batch_size=2)]
    artifact = (await store.get_artifacts([art_hash]))[art_hash]
    (error,) = await store.list_errors(flow)
    assert [e.kind for e in streamed] == [e.kind for e in events]
    return {
        "signal": events[0].kind.data,
        "details": events[2].kind.error.details if whole else events[2].kind.error.details["v"],
        "error row": error.details if whole else error.details["v"],
        "payload": artifact.payload,
        "metadata": artifact.metadata,
        "hash matches": artifact.content_matches(),
        "hash": artifact_hash(artifact.kind, artifact.payload),
    }


@pytest.mark.parametrize("cls", list(STORABLE))
async def test_each_value_class_reads_back_equal_from_both_stores(db: Database, cls: str) -> None:
    memory, postgres = InMemoryEventStore(), PgEventStore(db)
    for value in STORABLE[cls]:
        expected = typed(normalize_json(value))
        signal, art, finished, failed = _carriers(value)
        results = []
        for store in (memory, postgres):
            flow = uuid.uuid4()
            written = await store.append_many(flow, [signal, finished, failed], artifacts=[art])
            back = await _read_back(store, flow, art.hash, isinstance(value, dict))
            for place in ("signal", "details", "error row", "payload", "metadata"):
                assert typed(back[place]) == expected, (cls, value, place, type(store).__name__)
            assert back["hash matches"]
            assert back["hash"] == art.hash
            # What append returned is what reading gives back (normalised), not the caller's object.
            assert [e.kind for e in written] == [e.kind for e in await store.list(flow)]
            assert typed(written[0].kind.data) == expected
            results.append(back)
        assert {k: typed(v) for k, v in results[0].items()} == {k: typed(v) for k, v in results[1].items()}


# --- 3. value classes the library refuses, the same way on both stores, writing nothing ------------

UNSTORABLE: list[tuple[str, Any, type[Exception], str]] = [
    ("nul in a value", {"k": "a\x00b"}, UnstorableValueError, r"may not contain \\u0000"),
    ("nul in a key", {"a\x00": 1}, UnstorableValueError, r"may not contain \\u0000"),
    ("lone surrogate in a value", ["ok", "\ud800"], UnstorableValueError, "not valid UTF-8"),
    ("lone surrogate in a key", {"\udfff": 1}, UnstorableValueError, "not valid UTF-8"),
    ("lone surrogate in a nested key", {"a": [{"\ud83d": 1}]}, UnstorableValueError, "not valid UTF-8"),
    ("nan", {"v": math.nan}, UnstorableValueError, "cannot be stored"),
    ("infinity", [math.inf], UnstorableValueError, "cannot be stored"),
    ("-infinity", -math.inf, UnstorableValueError, "cannot be stored"),
    ("int too long", {"n": 10**MAX_INT_DIGITS}, UnstorableValueError, "more than 4300 digits"),
    ("negative int too long", [-(10**MAX_INT_DIGITS)], UnstorableValueError, "more than 4300 digits"),
    ("nested too deep", deep(MAX_JSON_DEPTH + 1), JsonNestingError, "nested deeper than 128"),
]


async def _counts(conn: asyncpg.Connection) -> tuple[int, int, int]:
    row = await conn.fetchrow(
        "SELECT (SELECT count(*) FROM event_log), (SELECT count(*) FROM workflow_step_artifacts),"
        " (SELECT count(*) FROM step_execution_errors)"
    )
    return (row[0], row[1], row[2])


@pytest.mark.parametrize(
    ("name", "value", "error", "message"), UNSTORABLE, ids=[name for name, *_ in UNSTORABLE]
)
async def test_unstorable_value_classes_are_refused_alike_and_write_nothing(
    db: Database, conn: asyncpg.Connection, name: str, value: Any, error: type[Exception], message: str
) -> None:
    placeholder = "0" * 64  # artifact_hash() itself refuses the value
    art = Artifact(hash=placeholder, kind="v", payload=value)
    meta = Artifact(hash=artifact_hash("v", 1), kind="v", payload=1, metadata=value)
    details = value if isinstance(value, dict) else {"v": value}
    error_info = StepErrorInfo(error_class=ErrorClass.RUNTIME, message="m", details=details)
    attempts = [
        ([StepSignal(step_index=0, step_id="s", signal="x", data=value)], []),
        ([StepFinished(step_index=0, step_id="s", outputs=(placeholder,), fingerprint=FP)], [art]),
        ([StepFinished(step_index=0, step_id="s", outputs=(meta.hash,), fingerprint=FP)], [meta]),
        (
            [
                StepFailed(
                    step_index=0,
                    step_id="s",
                    attempt=1,
                    error=error_info,
                    retry_count=0,
                    max_retries=3,
                    fingerprint=FP,
                )
            ],
            [],
        ),
    ]
    memory, postgres = InMemoryEventStore(), PgEventStore(db)
    flow = uuid.uuid4()
    for kinds, artifacts in attempts:
        for store in (memory, postgres):
            with pytest.raises(error, match=message) as info:
                await store.append_many(flow, kinds, artifacts=artifacts)
            assert type(info.value) is error
            with pytest.raises(error, match=message):
                await store.append_kind(flow, kinds[0], artifacts=artifacts)
    for store in (memory, postgres):
        assert await store.list(flow) == []
        assert await store.get_artifacts([placeholder, meta.hash]) == {}
        assert await store.list_errors(flow) == []
    assert memory._seq == 0
    assert await _counts(conn) == (0, 0, 0)
    with pytest.raises(error, match=message):
        Artifact.of("v", value)
