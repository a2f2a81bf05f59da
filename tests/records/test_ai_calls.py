"""The AI-call log (SPEC 9.2) on both backends (``ai_log`` fixture), then what only PostgreSQL has:
a buffer written in the background, kept on failure, flushed on close."""

from __future__ import annotations

import asyncio
import inspect
import math
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from chem_persistence_async import (
    AICall,
    AICallLogger,
    AIHelperStats,
    ChemPersistError,
    Database,
    InvalidInputError,
    LoggerClosedError,
    ModelStats,
    PayloadTooLargeError,
    UnstorableValueError,
    ValueOutOfRangeError,
)


def _call(topic: str = "orders/extract", model: str = "small", **overrides: Any) -> AICall:
    fields: dict[str, Any] = {
        "topic": topic,
        "call_type": "completion",
        "model_key": model,
        "model_id": f"{model}-2025",
        "prompt": "What is 2+2?",
        "response": "4",
        "input_tokens": 12,
        "output_tokens": 3,
        "cost": 0.1,
        "metadata": {"request": 1},
    }
    return AICall(**(fields | overrides))


async def test_log_call_is_plain_and_stats_are_exact_per_model(ai_log: Any) -> None:
    assert not inspect.iscoroutinefunction(ai_log.log_call)
    assert ai_log.log_call(_call()) is None
    ai_log.log_call(_call(model="large", cost=Decimal("0.30"), input_tokens=100, output_tokens=50))
    ai_log.log_call(_call(topic="orders/summarise", cost=0.2, metadata=None))
    ai_log.log_call(_call(topic="billing/extract", cost=5))
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
        ai_log.log_call(_call(topic=topic))
    assert (await ai_log.get_stats("a_b")).total_calls == 1
    assert (await ai_log.get_stats("a%")).total_calls == 2
    assert (await ai_log.get_stats("a")).total_calls == 4
    assert (await ai_log.get_stats("a\\")).total_calls == 0


async def test_costs_add_up_exactly(ai_log: Any) -> None:
    for _ in range(1000):
        ai_log.log_call(_call(cost=0.1))
    ai_log.log_call(_call(cost=1e-9))
    stats = await ai_log.get_stats("orders")
    assert stats.total_cost == Decimal("100.000000001")  # a float sum would not be
    assert sum([0.1] * 1000) != 100.0


async def test_batch_results_are_recorded_once(ai_log: Any) -> None:
    assert await ai_log.is_recorded("batch-1") is False
    results = [_call(topic="batch/x", cost=1), _call(topic="batch/y", model="large", cost=2)]
    assert await ai_log.log_batch_results("batch-1", results) is True
    assert await ai_log.is_recorded("batch-1") is True
    assert await ai_log.log_batch_results("batch-1", results) is False
    assert await ai_log.log_batch_results("batch-1", [_call(topic="batch/z")]) is False
    stats = await ai_log.get_stats("batch/")
    assert (stats.total_calls, stats.total_cost) == (2, Decimal(3))
    assert await ai_log.log_batch_results("empty", []) is True
    assert await ai_log.is_recorded("empty") is True


async def test_concurrent_callers_record_a_batch_once(ai_log: Any) -> None:
    results = [_call(topic="race/a", cost=1)] * 3
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
    ai_log.log_call(_call(topic="good"))
    for overrides, error in BAD_CALLS:
        with pytest.raises(error):
            ai_log.log_call(_call(**({"topic": "bad"} | overrides)))
        with pytest.raises(error):
            await ai_log.log_batch_results("b", [_call(topic="bad"), _call(**({"topic": "bad"} | overrides))])
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
    ai_log.log_call(_call())
    async with ai_log:
        pass
    assert ai_log.closed
    with pytest.raises(LoggerClosedError):
        ai_log.log_call(_call())
    assert (await ai_log.get_stats("")).total_calls == 1


async def test_10000_calls_from_16_tasks_are_all_counted_after_close(ai_log: Any) -> None:
    models = ["small", "medium", "large"]

    async def caller(task: int) -> None:
        for i in range(625):
            ai_log.log_call(
                _call(
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


# --- PostgreSQL only: the buffer -----------------------------------------------------------------


async def _rows(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM ai_calls"))


async def test_calls_wait_in_the_buffer_and_leaving_async_with_writes_them(
    db: Database, conn: asyncpg.Connection
) -> None:
    async with AICallLogger(db, batch_size=1000, flush_interval=3600) as log:
        for _ in range(10):
            log.log_call(_call())
        assert log.pending == 10
        assert await _rows(conn) == 0  # nothing was sent by log_call itself
    assert log.pending == 0
    assert await _rows(conn) == 10
    assert log.written == 10


async def test_a_full_batch_is_written_in_the_background(db: Database, conn: asyncpg.Connection) -> None:
    log = AICallLogger(db, batch_size=50, flush_interval=3600)
    for _ in range(120):
        log.log_call(_call())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while await _rows(conn) < 100:  # full batches wake the writer (its interval is an hour)
        assert loop.time() < deadline, "the background writer never wrote the full batches"
        await asyncio.sleep(0.01)
    await log.close()
    assert await _rows(conn) == 120


async def test_the_interval_writes_a_partial_batch(db: Database, conn: asyncpg.Connection) -> None:
    log = AICallLogger(db, batch_size=1000, flush_interval=0.05)
    log.log_call(_call())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while await _rows(conn) < 1:
        assert loop.time() < deadline, "the interval never wrote the call"
        await asyncio.sleep(0.01)
    assert log.pending == 0
    await log.close()


async def test_a_failing_write_keeps_the_calls_in_order_and_writes_them_later(
    db: Database, conn: asyncpg.Connection
) -> None:
    await conn.execute("ALTER TABLE ai_calls ADD CONSTRAINT refuse_boom CHECK (topic <> 'boom')")
    log = AICallLogger(db, batch_size=4, flush_interval=3600)
    for i in range(10):
        log.log_call(_call(topic="boom" if i == 5 else f"ok/{i}", input_tokens=i))
    with pytest.raises(ChemPersistError):
        await log.flush()
    assert log.pending == 6  # the first batch of 4 went; the one holding "boom" and after stay
    await conn.execute("ALTER TABLE ai_calls DROP CONSTRAINT refuse_boom")
    await log.close()
    rows = await conn.fetch("SELECT topic, input_tokens FROM ai_calls ORDER BY input_tokens")
    assert [r["input_tokens"] for r in rows] == list(range(10))
    assert rows[5]["topic"] == "boom"


async def test_a_batch_written_twice_is_stored_once(db: Database, conn: asyncpg.Connection) -> None:
    """What a retry after a lost acknowledgement does: the calls' ids are made when logged."""
    log = AICallLogger(db)
    log.log_call(_call())
    log.log_call(_call())
    batch = list(log._buffer)
    await log.flush()
    await log._write(batch)
    assert await _rows(conn) == 2
    await log.close()


async def test_settings_are_checked(db: Database) -> None:
    with pytest.raises(InvalidInputError):
        AICallLogger(db, batch_size=0)
    with pytest.raises(InvalidInputError):
        AICallLogger(db, flush_interval=0)
