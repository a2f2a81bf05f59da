"""The AI-call log contract (SPEC 9.2), run unchanged on every backend (``ai_log`` fixture)."""

from __future__ import annotations

import asyncio
import inspect
import math
from decimal import Decimal
from typing import Any

import pytest

from chem_persistence_async import (
    AIHelperStats,
    InvalidInputError,
    LoggerClosedError,
    ModelStats,
    PayloadTooLargeError,
    UnstorableValueError,
    ValueOutOfRangeError,
)
from tests.factories import ai_call


async def test_log_call_is_plain_and_stats_are_exact_per_model(ai_log: Any) -> None:
    assert not inspect.iscoroutinefunction(ai_log.log_call)
    assert ai_log.log_call(ai_call()) is None
    ai_log.log_call(ai_call(model="large", cost=Decimal("0.30"), input_tokens=100, output_tokens=50))
    ai_log.log_call(ai_call(topic="orders/summarise", cost=0.2, metadata=None))
    ai_log.log_call(ai_call(topic="billing/extract", cost=5))
    stats = await ai_log.get_stats("orders/")
    assert stats == AIHelperStats(
        total_calls=3,
        total_input_tokens=124,
        total_output_tokens=56,
        total_cost=Decimal("0.6"),
        per_model={
            "large": ModelStats(1, 100, 50, Decimal("0.3")),
            "small": ModelStats(2, 24, 6, Decimal("0.3")),
        },
    )
    everything = await ai_log.get_stats("")
    assert (everything.total_calls, everything.total_cost) == (4, Decimal("5.6"))
    assert await ai_log.get_stats("nothing") == AIHelperStats()


async def test_a_topic_prefix_is_plain_text_not_a_pattern(ai_log: Any) -> None:
    for topic in ["a_b/1", "axb/1", "a%b/1", "a%/2", "A_b/3"]:
        ai_log.log_call(ai_call(topic=topic))
    assert (await ai_log.get_stats("a_b")).total_calls == 1
    assert (await ai_log.get_stats("a%")).total_calls == 2
    assert (await ai_log.get_stats("a")).total_calls == 4
    assert (await ai_log.get_stats("a\\")).total_calls == 0


async def test_costs_add_up_exactly(ai_log: Any) -> None:
    for _ in range(1000):
        ai_log.log_call(ai_call(cost=0.1))
    ai_log.log_call(ai_call(cost=1e-9))
    stats = await ai_log.get_stats("orders")
    assert stats.total_cost == Decimal("100.000000001")  # a float sum would not be
    assert sum([0.1] * 1000) != 100.0


async def test_costs_add_up_exactly_past_28_digits(ai_log: Any) -> None:
    """Python's default decimal context rounds a sum to 28 significant digits; the log's sums are
    exact however many digits they need (the most costly call with the least costly fraction), per
    model and in total, on every backend."""
    costs = [Decimal("1e15"), Decimal("1e-20"), Decimal("0.3333333333333333333333333333333333")]
    for n, cost in enumerate(costs):
        ai_log.log_call(ai_call(model=("large", "small")[n % 2], cost=cost))
    stats = await ai_log.get_stats("orders")
    exact = Decimal("1000000000000000.3333333333333333333433333333333333")
    assert stats.total_cost == exact
    assert stats.per_model["large"].cost == Decimal("1000000000000000.3333333333333333333333333333333333")
    assert stats.per_model["small"].cost == Decimal("1e-20")
    assert sum(costs, Decimal(0)) != exact  # (what the default context gives)


async def test_batch_results_are_recorded_once(ai_log: Any) -> None:
    assert await ai_log.is_recorded("batch-1") is False
    results = [ai_call(topic="batch/x", cost=1), ai_call(topic="batch/y", model="large", cost=2)]
    assert await ai_log.log_batch_results("batch-1", results) is True
    assert await ai_log.is_recorded("batch-1") is True
    assert await ai_log.log_batch_results("batch-1", results) is False
    assert await ai_log.log_batch_results("batch-1", [ai_call(topic="batch/z")]) is False
    stats = await ai_log.get_stats("batch/")
    assert (stats.total_calls, stats.total_cost) == (2, Decimal(3))
    assert await ai_log.log_batch_results("empty", []) is True
    assert await ai_log.is_recorded("empty") is True


async def test_concurrent_callers_record_a_batch_once(ai_log: Any) -> None:
    results = [ai_call(topic="race/a", cost=1)] * 3
    outcomes = await asyncio.gather(*(ai_log.log_batch_results("same", results) for _ in range(8)))
    assert sorted(outcomes) == [False] * 7 + [True]
    assert (await ai_log.get_stats("race/")).total_calls == 3


BAD_CALLS: list[tuple[dict[str, Any], type[Exception]]] = [
    ({"input_tokens": -1}, ValueOutOfRangeError),
    ({"output_tokens": -5}, ValueOutOfRangeError),
    ({"input_tokens": 2**31}, ValueOutOfRangeError),
    ({"input_tokens": True}, InvalidInputError),
    ({"output_tokens": 1.5}, InvalidInputError),
    ({"cost": -0.01}, ValueOutOfRangeError),
    ({"cost": math.nan}, ValueOutOfRangeError),
    ({"cost": math.inf}, ValueOutOfRangeError),
    ({"cost": "0.1"}, InvalidInputError),
    ({"metadata": {"x": math.nan}}, UnstorableValueError),
    ({"metadata": {"x": object()}}, UnstorableValueError),
    ({"prompt": "nul\x00"}, InvalidInputError),
    ({"model_key": ""}, InvalidInputError),
    ({"model_key": "m" * 201}, ValueOutOfRangeError),
    ({"topic": "t" * 501}, ValueOutOfRangeError),
    ({"prompt": "p" * (9 * 1024 * 1024)}, PayloadTooLargeError),
]


async def test_bad_calls_raise_typed_errors_and_nothing_is_written(ai_log: Any) -> None:
    ai_log.log_call(ai_call(topic="good"))
    for overrides, error in BAD_CALLS:
        with pytest.raises(error):
            ai_log.log_call(ai_call(**({"topic": "bad"} | overrides)))
        with pytest.raises(error):
            await ai_log.log_batch_results(
                "b", [ai_call(topic="bad"), ai_call(**({"topic": "bad"} | overrides))]
            )
    assert await ai_log.is_recorded("b") is False
    assert (await ai_log.get_stats("")).total_calls == 1


async def test_what_is_not_a_call_is_refused(ai_log: Any) -> None:
    with pytest.raises(InvalidInputError):
        ai_log.log_call({"topic": "x"})
    with pytest.raises(InvalidInputError):
        await ai_log.log_batch_results("", [])
    with pytest.raises(InvalidInputError):
        await ai_log.log_batch_results("b", "not a list")


async def test_a_closed_logger_refuses_calls(ai_log: Any) -> None:
    ai_log.log_call(ai_call())
    async with ai_log:
        pass
    assert ai_log.closed
    with pytest.raises(LoggerClosedError):
        ai_log.log_call(ai_call())
    assert (await ai_log.get_stats("")).total_calls == 1


async def test_10000_calls_from_16_tasks_are_all_counted_after_close(ai_log: Any) -> None:
    models = ["small", "medium", "large"]

    async def caller(task: int) -> None:
        for i in range(625):
            ai_log.log_call(
                ai_call(
                    topic=f"load/{task % 4}",
                    model=models[(task + i) % 3],
                    input_tokens=i,
                    output_tokens=task,
                    cost=Decimal(f"0.00{(i % 7) + 1}"),
                )
            )
            if i % 25 == 0:
                await asyncio.sleep(0)  # let the other callers (and the background writer) in

    await asyncio.gather(*(caller(t) for t in range(16)))
    await ai_log.close()
    per_model: dict[str, ModelStats] = {}
    for task in range(16):
        for i in range(625):
            m = models[(task + i) % 3]
            s = per_model.get(m, ModelStats())
            per_model[m] = ModelStats(
                s.calls + 1,
                s.input_tokens + i,
                s.output_tokens + task,
                s.cost + Decimal(f"0.00{(i % 7) + 1}"),
            )
    assert await ai_log.get_stats("load/") == AIHelperStats.of(per_model)
    assert (await ai_log.get_stats("load/1")).total_calls == 4 * 625
