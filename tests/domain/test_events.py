"""The ``FlowEventKind`` union (SPEC section 2) and its agreement with the schema (section 4)."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import chem_persistence_async as package
from chem_persistence_async.domain.canonical import MAX_JSON_DEPTH
from chem_persistence_async.domain.events import (
    EVENT_TYPES,
    KIND_CLASSES,
    FlowCompleted,
    FlowEvent,
    FlowInitialized,
    PropertyPreferenceAssigned,
    RetryScheduled,
    StepFailed,
    StepFinished,
    StepSignal,
    StepStarted,
    StepSuspended,
    is_event_kind,
    kind_from_json,
    kind_to_json,
    kind_to_payload,
    kinds_from_json,
)
from chem_persistence_async.domain.failures import ErrorClass, StepErrorInfo
from chem_persistence_async.errors import InvalidEventError, JsonNestingError, UnstorableValueError

REPO_ROOT = Path(__file__).resolve().parents[2]
H1 = "a" * 64
H2 = "0123456789abcdef" * 4
H3 = "f" * 64

# One example per variant, built with the SPEC's keyword names: (class, kwargs, event_type, code).
EXAMPLES: list[tuple[type, dict[str, Any], str, str]] = [
    (
        FlowInitialized,
        {"definition_name": "demo", "definition_hash": H1, "step_count": 4},
        "flowinitialized",
        "I",
    ),
    (StepStarted, {"step_index": 0, "step_id": "seed", "attempt": 1}, "stepstarted", "S"),
    (
        StepFinished,
        {"step_index": 1, "step_id": "split", "outputs": (H1, H2), "fingerprint": H3},
        "stepfinished",
        "F",
    ),
    (
        StepFailed,
        {
            "step_index": 2,
            "step_id": "forward",
            "attempt": 2,
            "error": StepErrorInfo(
                error_class=ErrorClass.TRANSIENT,
                message="flaky ünïcode",
                details={"stack_trace": "Traceback…", "input_hash": H1, "params": {"n": 3}},
            ),
            "retry_count": 1,
            "max_retries": 3,
            "fingerprint": H2,
        },
        "stepfailed",
        "X",
    ),
    (
        StepSignal,
        {"step_index": 3, "step_id": "count", "signal": "progress", "data": {"done": 3, "of": [1, 2.5]}},
        "stepsignal",
        "G",
    ),
    (
        PropertyPreferenceAssigned,
        {"property_key": "logP", "policy_id": "p-1", "params_hash": H1, "rationale": "because"},
        "propertypreferenceassigned",
        "P",
    ),
    (
        RetryScheduled,
        {
            "step_index": 2,
            "step_id": "forward",
            "retry_index": 1,
            "reason": "transient",
            "not_before": datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=UTC),
        },
        "retryscheduled",
        "R",
    ),
    (FlowCompleted, {"flow_fingerprint": H3}, "flowcompleted", "C"),
    (
        StepSuspended,
        {
            "step_index": 1,
            "step_id": "wait",
            "attempt": 2,
            "until": datetime(2026, 3, 4, tzinfo=UTC),
            "signal": "go",
        },
        "stepsuspended",
        "W",
    ),
]
IDS = [cls.__name__ for cls, *_ in EXAMPLES]


def _build(cls: type, kwargs: dict[str, Any]) -> Any:
    return cls(**kwargs)


def test_there_are_exactly_nine_variants() -> None:
    """SPEC 2's eight, and StepSuspended (SPEC 8.3)."""
    assert {cls for cls, *_ in EXAMPLES} == set(KIND_CLASSES)
    assert len(KIND_CLASSES) == 9
    assert sorted(code for *_, code in EXAMPLES) == sorted("ISFXGPRCW")


@pytest.mark.parametrize(("cls", "kwargs", "event_type", "code"), EXAMPLES, ids=IDS)
def test_variant_is_constructible_with_spec_keywords(
    cls: type, kwargs: dict[str, Any], event_type: str, code: str
) -> None:
    kind = _build(cls, kwargs)
    for name, value in kwargs.items():
        assert getattr(kind, name) == value
    assert kind.event_type == event_type
    assert kind.event_type == kind.event_type.lower()
    assert kind.code == code
    assert cls.code == code
    assert is_event_kind(kind)


@pytest.mark.parametrize(("cls", "kwargs", "event_type", "code"), EXAMPLES, ids=IDS)
def test_variant_is_importable_from_the_package_root(
    cls: type, kwargs: dict[str, Any], event_type: str, code: str
) -> None:
    assert getattr(package, cls.__name__) is cls


@pytest.mark.parametrize(("cls", "kwargs", "event_type", "code"), EXAMPLES, ids=IDS)
def test_round_trip_through_json(cls: type, kwargs: dict[str, Any], event_type: str, code: str) -> None:
    kind = _build(cls, kwargs)
    payload = kind_to_json(kind)
    assert isinstance(payload, bytes)
    assert json.loads(payload)["event_type"] == event_type
    back = kind_from_json(payload)
    assert type(back) is cls
    assert back == kind
    # str input works too, and re-encoding is byte-identical (canonical).
    assert kind_from_json(payload.decode("utf-8")) == kind
    assert kind_to_json(back) == payload


def test_kind_to_json_is_canonical() -> None:
    kind = FlowInitialized(definition_name="démo", definition_hash=H1, step_count=2)
    payload = kind_to_json(kind)
    decoded = json.loads(payload)
    assert list(decoded) == sorted(decoded)
    assert payload == json.dumps(decoded, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def test_bulk_round_trip_preserves_order_and_values() -> None:
    kinds = [_build(cls, kwargs) for cls, kwargs, *_ in EXAMPLES]
    kinds = kinds + list(reversed(kinds))
    decoded = kinds_from_json([kind_to_json(k) for k in kinds])
    assert decoded == kinds
    assert [type(k) for k in decoded] == [type(k) for k in kinds]


def test_bulk_decode_of_nothing_is_empty() -> None:
    assert kinds_from_json([]) == []


def test_bulk_decode_rejects_a_bad_payload() -> None:
    good = kind_to_json(FlowCompleted(flow_fingerprint=H1))
    with pytest.raises(ValidationError):
        kinds_from_json([good, b'{"event_type":"nosuchevent"}'])


def test_not_before_keeps_its_instant_through_json() -> None:
    plus_two = timezone(timedelta(hours=2))
    kind = RetryScheduled(
        step_index=0,
        step_id="s",
        retry_index=1,
        reason="r",
        not_before=datetime(2024, 1, 1, 14, tzinfo=plus_two),
    )
    back = kind_from_json(kind_to_json(kind))
    assert isinstance(back, RetryScheduled)
    assert back.not_before == datetime(2024, 1, 1, 12, tzinfo=UTC)
    assert back.not_before is not None
    assert back.not_before.utcoffset() is not None


def test_optional_fields_have_defaults() -> None:
    assert StepFinished(step_index=0, step_id="s", fingerprint=H1).outputs == ()
    assert StepSignal(step_index=0, step_id="s", signal="x").data is None
    assert PropertyPreferenceAssigned(property_key="k", policy_id="p", params_hash="h").rationale is None
    assert RetryScheduled(step_index=0, step_id="s", retry_index=1, reason="r").not_before is None


def test_kinds_are_frozen() -> None:
    kind = StepStarted(step_index=0, step_id="s", attempt=1)
    with pytest.raises(ValidationError):
        kind.attempt = 2  # type: ignore[misc]


def test_flow_event_exposes_code_and_event_type() -> None:
    kind = StepStarted(step_index=0, step_id="s", attempt=1)
    event = FlowEvent(
        seq=10, flow_id=uuid.uuid4(), flow_version=2, ts=datetime.now(UTC), kind=kind, event_id=uuid.uuid4()
    )
    assert event.code == "S"
    assert event.event_type == "stepstarted"
    with pytest.raises(AttributeError):
        event.seq = 11  # type: ignore[misc]


# --- invalid values ------------------------------------------------------------------------------------

_ERR = StepErrorInfo(error_class=ErrorClass.RUNTIME, message="m")


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (StepStarted, {"step_index": -1, "step_id": "s", "attempt": 1}),
        (StepStarted, {"step_index": 0, "step_id": "s", "attempt": 0}),
        (StepStarted, {"step_index": 0, "step_id": "", "attempt": 1}),
        (StepStarted, {"step_index": 0, "step_id": "s", "attempt": 1, "extra": 1}),
        (StepFinished, {"step_index": -1, "step_id": "s", "fingerprint": H1}),
        (StepFinished, {"step_index": 0, "step_id": "s", "fingerprint": "abc"}),
        (StepFinished, {"step_index": 0, "step_id": "s", "fingerprint": H1.upper()}),
        (StepFinished, {"step_index": 0, "step_id": "s", "fingerprint": H1, "outputs": ("g" * 64,)}),
        (FlowInitialized, {"definition_name": "d", "definition_hash": "z" * 64, "step_count": 1}),
        (FlowInitialized, {"definition_name": "d", "definition_hash": H1, "step_count": -1}),
        (FlowInitialized, {"definition_name": "d", "definition_hash": H1, "step_count": 1, "x": 0}),
        (
            StepFailed,
            {
                "step_index": 0,
                "step_id": "s",
                "attempt": 0,
                "error": _ERR,
                "retry_count": 0,
                "max_retries": 3,
                "fingerprint": H1,
            },
        ),
        (
            StepFailed,
            {
                "step_index": 0,
                "step_id": "s",
                "attempt": 1,
                "error": {"error_class": "nosuchclass", "message": "m"},
                "retry_count": 0,
                "max_retries": 3,
                "fingerprint": H1,
            },
        ),
        (
            RetryScheduled,
            {
                "step_index": 0,
                "step_id": "s",
                "retry_index": 1,
                "reason": "r",
                "not_before": datetime(2024, 1, 1),
            },
        ),
        (RetryScheduled, {"step_index": 0, "step_id": "s", "retry_index": 0, "reason": "r"}),
        (FlowCompleted, {"flow_fingerprint": H1[:-1]}),
        (FlowCompleted, {"flow_fingerprint": H1, "seq": 1}),
        (FlowCompleted, {"flow_fingerprint": H1, "event_type": "stepstarted"}),
    ],
    ids=lambda value: value.__name__ if isinstance(value, type) else None,
)
def test_invalid_values_raise_validation_error(cls: type, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        cls(**kwargs)


def test_naive_not_before_is_rejected_from_json_too() -> None:
    payload = json.dumps(
        {
            "event_type": "retryscheduled",
            "step_index": 0,
            "step_id": "s",
            "retry_index": 1,
            "reason": "r",
            "not_before": "2024-01-01T00:00:00",
        }
    )
    with pytest.raises(ValidationError):
        kind_from_json(payload)


@pytest.mark.parametrize(
    "payload",
    [
        b'{"event_type":"StepStarted","step_index":0,"step_id":"s","attempt":1}',
        b'{"event_type":"nosuchevent"}',
        b'{"step_index":0,"step_id":"s","attempt":1}',
        b'{"event_type":"stepstarted","step_index":0,"step_id":"s","attempt":1,"extra":true}',
        b'{"event_type":"stepstarted","step_index":-3,"step_id":"s","attempt":1}',
        b"[]",
        b"not json",
    ],
)
def test_kind_from_json_rejects_bad_payloads(payload: bytes) -> None:
    with pytest.raises(ValidationError):
        kind_from_json(payload)


def test_is_event_kind_rejects_other_things() -> None:
    assert not is_event_kind({"event_type": "flowcompleted", "flow_fingerprint": H1})
    assert not is_event_kind(_ERR)
    assert not is_event_kind(None)


# --- model and schema agree ----------------------------------------------------------------------------


def _schema_event_types() -> set[str]:
    """The event types the migrated schema's CHECK admits (``docs/schema.sql``: every migration
    applied, and itself checked against a migrated database by tests/backends/postgres/test_migrations.py)."""
    snapshot = (REPO_ROOT / "docs" / "schema.sql").read_text(encoding="utf-8")
    check = re.search(r"CONSTRAINT event_log_event_type_check CHECK (.*)", snapshot)
    assert check is not None, "the event_type CHECK constraint was not found"
    return set(re.findall(r"'([a-z]+)'::text", check.group(1)))


def test_event_types_match_the_schema_check() -> None:
    schema = _schema_event_types()
    assert len(schema) == 9
    assert schema == set(EVENT_TYPES)
    assert {event_type for _, _, event_type, _ in EXAMPLES} == schema


def test_schema_check_requires_lower_case() -> None:
    sql = (REPO_ROOT / "migrations" / "0001_event_log.sql").read_text(encoding="utf-8")
    assert re.search(r"event_type\s*=\s*lower\(event_type\)", sql)
    assert all(t == t.lower() for t in EVENT_TYPES)


# --- integers fit PostgreSQL's INT; free-form JSON follows the rule of every JSON value ------------

INT_FIELDS = [
    (cls, kwargs, name)
    for cls, kwargs, *_ in EXAMPLES
    for name, field in cls.model_fields.items()
    if field.annotation is int
]


def test_every_integer_field_is_listed() -> None:
    assert sorted(f"{cls.__name__}.{name}" for cls, _, name in INT_FIELDS) == [
        "FlowInitialized.step_count",
        "RetryScheduled.retry_index",
        "RetryScheduled.step_index",
        "StepFailed.attempt",
        "StepFailed.max_retries",
        "StepFailed.retry_count",
        "StepFailed.step_index",
        "StepFinished.step_index",
        "StepSignal.step_index",
        "StepStarted.attempt",
        "StepStarted.step_index",
        "StepSuspended.attempt",
        "StepSuspended.step_index",
    ]


@pytest.mark.parametrize(
    ("cls", "kwargs", "name"), INT_FIELDS, ids=lambda v: v if isinstance(v, str) else None
)
def test_integer_fields_are_bounded_by_postgres_int(cls: type, kwargs: dict[str, Any], name: str) -> None:
    top = cls(**{**kwargs, name: 2**31 - 1})
    assert kind_from_json(kind_to_json(top)) == top
    for beyond in (2**31, 2**63, 10**30):
        with pytest.raises(ValidationError, match="less than or equal to 2147483647"):
            cls(**{**kwargs, name: beyond})
    with pytest.raises(ValidationError):  # and from JSON: a row holding one no longer decodes
        kind_from_json(json.dumps({**json.loads(kind_to_json(top)), name: 2**31}))


def _signal(data: Any) -> StepSignal:
    return StepSignal(step_index=0, step_id="s", signal="x", data=data)


def _failed(details: dict[str, Any]) -> StepFailed:
    error = StepErrorInfo(error_class=ErrorClass.RUNTIME, message="m", details=details)
    return StepFailed(
        step_index=0, step_id="s", attempt=1, error=error, retry_count=0, max_retries=3, fingerprint=H1
    )


@pytest.mark.parametrize("bad", ["\ud800", "a\x00"], ids=["surrogate", "nul"])
@pytest.mark.parametrize("where", ["signal key", "signal value", "details key", "details nested key"])
def test_free_form_keys_and_values_follow_one_rule(bad: str, where: str) -> None:
    kind = {
        "signal key": lambda: _signal({bad: 1}),
        "signal value": lambda: _signal({"k": [bad]}),
        "details key": lambda: _failed({bad: 1}),
        "details nested key": lambda: _failed({"params": {bad: 1}}),
    }[where]()
    with pytest.raises(UnstorableValueError, match=r"^\$\.(data|error\.details)"):
        kind_to_json(kind)
    with pytest.raises(UnstorableValueError):
        kind_to_payload(kind)


def test_free_form_json_is_normalised_as_jsonb_would() -> None:
    kind = _signal({"z": -0.0, "a": [1e23, 1e-7]})
    assert kind_to_json(kind) == (
        b'{"data":{"a":[100000000000000000000000,1e-07],"z":0.0},"event_type":"stepsignal",'
        b'"send_id":null,"signal":"x","step_id":"s","step_index":0}'
    )
    assert kind_from_json(kind_to_payload(kind)).data == {"a": [10**23, 1e-7], "z": 0.0}
    assert kind_from_json(kind_to_payload(_signal(-0.0))).data == 0.0
    with pytest.raises(UnstorableValueError, match=r"^\$\.data\.n: an integer of more than 4300 digits"):
        kind_to_payload(_signal({"n": 10**4300}))
    with pytest.raises(UnstorableValueError, match=r"^\$\.data: an integer"):
        kind_to_payload(_signal(-(10**4300)))


def test_nesting_limit_counts_from_the_free_form_value_and_reads_back() -> None:
    deepest: Any = []
    for _ in range(MAX_JSON_DEPTH - 1):
        deepest = [deepest]
    for kind in (_signal(deepest), _failed({"x": deepest[0]})):
        assert kind_from_json(kind_to_payload(kind)) == kind
        assert kind_from_json(kind_to_json(kind)) == kind
    for kind in (_signal([deepest]), _failed({"x": deepest})):
        with pytest.raises(JsonNestingError, match=r"^\$\.(data|error\.details\.x)\[0\]"):
            kind_to_payload(kind)


def test_a_kind_built_without_validation_that_cannot_serialise_is_an_invalid_event() -> None:
    kind = StepSignal.model_construct(step_index=object(), step_id="s", signal="x", data=1)
    with pytest.raises(InvalidEventError, match="StepSignal cannot be serialised"):
        kind_to_json(kind)
    unstorable = StepSignal.model_construct(step_index=0, step_id="s", signal="x", data={"v": object()})
    with pytest.raises(UnstorableValueError, match=r"^\$\.data\.v: object is not a JSON value"):
        kind_to_payload(unstorable)


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(_JSON)
def test_the_fast_payload_of_free_form_json_reads_back_as_the_canonical_one(data: Any) -> None:
    """``kind_to_payload`` may serialise free-form JSON that is already normal without sorting or
    re-encoding it; what it stores must read back exactly as the canonical form does."""
    try:
        canonical = kind_to_json(_signal(data))
    except UnstorableValueError:
        with pytest.raises(UnstorableValueError):
            kind_to_payload(_signal(data))
        return
    assert kind_from_json(kind_to_payload(_signal(data))) == kind_from_json(canonical)
