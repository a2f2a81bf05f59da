"""The AI-call log on PostgreSQL: a buffer written in the background, kept on failure, flushed on
close, a batch written twice stored once."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from chem_persistence_async import (
    AICallLogger,
    ChemPersistError,
    Database,
    InvalidInputError,
)
from tests.factories import ai_call


async def _rows(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM ai_calls"))


async def test_calls_wait_in_the_buffer_and_leaving_async_with_writes_them(
    db: Database, conn: asyncpg.Connection
) -> None:
    async with AICallLogger(db, batch_size=1000, flush_interval=3600) as log:
        for _ in range(10):
            log.log_call(ai_call())
        assert log.pending == 10
        assert await _rows(conn) == 0  # nothing was sent by log_call itself
    assert log.pending == 0
    assert await _rows(conn) == 10
    assert log.written == 10


async def test_a_full_batch_is_written_in_the_background(db: Database, conn: asyncpg.Connection) -> None:
    log = AICallLogger(db, batch_size=50, flush_interval=3600)
    for _ in range(120):
        log.log_call(ai_call())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while await _rows(conn) < 100:  # full batches wake the writer (its interval is an hour)
        assert loop.time() < deadline, "the background writer never wrote the full batches"
        await asyncio.sleep(0.01)
    await log.close()
    assert await _rows(conn) == 120


async def test_the_interval_writes_a_partial_batch(db: Database, conn: asyncpg.Connection) -> None:
    log = AICallLogger(db, batch_size=1000, flush_interval=0.05)
    log.log_call(ai_call())
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
        log.log_call(ai_call(topic="boom" if i == 5 else f"ok/{i}", input_tokens=i))
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
    log.log_call(ai_call())
    log.log_call(ai_call())
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
