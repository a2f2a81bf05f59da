"""Connections kept between calls (``Database`` parks a clean one instead of releasing it)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from chem_persistence_async import Database


async def test_waiters_are_served_while_connections_are_parked(db_url: str) -> None:
    """More tasks than connections: a finished call hands its connection to a waiter, never parks
    it while someone waits (else the waiter would time out)."""
    async with Database.connect(db_url, min_connections=0, max_connections=2, acquire_timeout=5) as db:

        async def one(conn: asyncpg.Connection) -> Any:
            return await conn.fetchval("SELECT pg_sleep(0.01)::text")

        await asyncio.gather(*(db.run(one) for _ in range(40)))
        await asyncio.gather(*(db.run(one) for _ in range(40)))


async def test_a_connection_left_in_a_transaction_is_not_handed_out_again_as_is(db: Database) -> None:
    async with db.acquire() as conn:
        await conn.execute("BEGIN")

    async def in_transaction(conn: asyncpg.Connection) -> bool:
        return conn.is_in_transaction()

    assert not await db.run(in_transaction)


async def test_parked_connections_are_reused_and_closed_with_the_database(db_url: str) -> None:
    db = await Database.open(db_url, min_connections=1, max_connections=4)

    async def pid(conn: asyncpg.Connection) -> int:
        return int(await conn.fetchval("SELECT pg_backend_pid()"))

    first = await db.run(pid)
    assert await db.run(pid) == first
    await db.close()
    check = await asyncpg.connect(db_url)
    try:
        for _ in range(200):  # the backend exits once it sees the client gone
            alive = await check.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", first)
            if not alive:
                break
            await asyncio.sleep(0.01)
    finally:
        await check.close()
    assert alive == 0
