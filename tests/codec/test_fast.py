"""The guarded fast paths of ``codec.fast``: objects built column by column equal those ``__init__``
builds, and a builder refuses a class whose slots are not the ones it was given."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from chem_persistence_async.codec.decode import decode_error_json
from chem_persistence_async.codec.fast import column_builder, object_builder
from chem_persistence_async.domain.failures import ErrorClass, StepExecutionError


@dataclass(frozen=True, slots=True)
class _Pair:
    a: int
    b: str = "x"


@pytest.mark.parametrize("count", [0, 1, 7, 8, 9, 100])
def test_built_by_columns_or_by_init_alike(count: int) -> None:
    build = column_builder(_Pair, ("a", "b"))
    made = build(count, range(count), map(str, range(count)))
    assert made == [_Pair(i, str(i)) for i in range(count)]
    assert all(type(p) is _Pair for p in made)


def test_one_object_built_by_its_slots_equals_init() -> None:
    build = object_builder(_Pair, ("a", "b"))
    made = build(1, "one")
    assert made == _Pair(1, "one")
    assert type(made) is _Pair
    with pytest.raises(TypeError):
        build(1)  # every slot is given: none is left unset


@dataclass(frozen=True, slots=True)
class _Clash:
    _made: int


def test_an_object_builder_refuses_a_slot_named_as_its_locals() -> None:
    with pytest.raises(RuntimeError, match="named as the builder's own locals"):
        object_builder(_Clash, ("_made",))


@pytest.mark.parametrize("builder", [column_builder, object_builder])
def test_a_builder_refuses_other_slots(builder: Callable[..., object]) -> None:
    with pytest.raises(RuntimeError, match="slots changed"):
        builder(_Pair, ("b", "a"))
    with pytest.raises(RuntimeError, match="slots changed"):
        builder(_Pair, ("a",))


@pytest.mark.parametrize("count", [0, 3, 20])
def test_error_rows_decoded_as_stored(count: int) -> None:
    flow_id = uuid.uuid4()
    ts = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    rows = [
        ["s", i + 1, "transient", f"boom {i}", {"n": i} if i % 2 else None, i, 3, ts.isoformat(), 10 + i]
        for i in range(count)
    ]
    assert decode_error_json(flow_id, json.dumps(rows).encode()) == [
        StepExecutionError(flow_id, "s", i + 1, ErrorClass.TRANSIENT, f"boom {i}", row[4], i, 3, ts, 10 + i)
        for i, row in enumerate(rows)
    ]
    if count:
        rows[-1][2] = "no-such-class"
        with pytest.raises(ValueError, match="no-such-class"):
            decode_error_json(flow_id, json.dumps(rows).encode())
