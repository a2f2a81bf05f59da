"""Connections kept between calls (``Database`` parks a clean one instead of releasing it)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import psycopg
import pytest

from chem_persistence_async import Database
from chem_persistence_async.backends.postgres.sql.query import query
from tests.support.waiting import until


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


async def test_a_fetch_cancelled_on_a_parked_connection_gives_it_back(db_url: str) -> None:
    """``Database.fetch`` runs on a parked connection without ``run``'s frames: a caller cancelled
    mid-statement still hands the connection back (the only one here, so a leak would starve the
    next call), and the statement it ran is cancelled on the server."""
    async with Database.connect(db_url, min_connections=0, max_connections=1, acquire_timeout=5) as db:
        pid = (await db.fetch(query("SELECT pg_backend_pid()"), {}))[0][0]  # parked now
        sleeping = asyncio.create_task(db.fetch(query("SELECT pg_sleep(30)"), {}))
        check = await asyncpg.connect(db_url)
        try:

            async def running() -> bool:
                return bool(
                    await check.fetchval(
                        "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND state = 'active'"
                        " AND query LIKE '%pg_sleep(30)%'",
                        pid,
                    )
                )

            await until(running, 10, "the statement to show as running")
            sleeping.cancel()
            with pytest.raises(asyncio.CancelledError):
                await sleeping
            assert (await db.fetch(query("SELECT 7"), {}))[0][0] == 7
            assert not await check.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(30)%' AND state = 'active'"
                " AND pid <> pg_backend_pid() AND datname = current_database()"
            )
        finally:
            await check.close()


async def test_a_fetch_whose_parked_connection_was_killed_is_retried(db_url: str) -> None:
    """The same path's failure: the parked connection's backend is terminated behind the event
    loop's back (a blocking client, so the driver cannot notice first), the statement fails on it
    and goes on through ``run``'s retries on a fresh connection."""
    async with Database.connect(db_url, min_connections=0, max_connections=2) as db:
        pid = (await db.fetch(query("SELECT pg_backend_pid()"), {}))[0][0]
        with psycopg.connect(db_url, autocommit=True) as blocking:
            assert blocking.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,)).fetchone() == (True,)
        assert (await db.fetch(query("SELECT 8"), {}))[0][0] == 8
        metrics = db.metrics.snapshot()
        assert metrics["calls"] == 2
        assert metrics["retries_total"] == 1
