"""A parked connection whose server side went away (a server restart, ``pg_terminate_backend``, an
idle timeout) is skipped, never handed out or fatal.

Found by the server-restart chaos test: asyncpg takes a pool connection back the moment it sees it
lost (its proxy is detached), even one ``Database`` had parked; the next ``acquire`` or
``transaction`` asked the detached proxy whether it was closed and got asyncpg's ``InterfaceError``
("connection has been released back to the pool"), and ``run`` spent a retry on each such one.
"""

from __future__ import annotations

import asyncio

import asyncpg

from chem_persistence_async import Database


async def _park_and_kill(db: Database, admin: asyncpg.Connection, how_many: int) -> None:
    """Park ``how_many`` connections, then terminate their backends and wait until the client saw
    each one go (asyncpg calls termination listeners when it cleans a lost connection up)."""
    gone = [asyncio.Event() for _ in range(how_many)]
    pids = []
    async with asyncio.timeout(30):
        held = [db.acquire() for _ in range(how_many)]
        conns = [await cm.__aenter__() for cm in held]
        for conn, event in zip(conns, gone, strict=True):
            pids.append(await conn.fetchval("SELECT pg_backend_pid()"))
            conn.add_termination_listener(lambda _c, e=event: e.set())
        for cm in reversed(held):
            await cm.__aexit__(None, None, None)  # clean: each is parked, not released
        assert await admin.fetchval("SELECT bool_and(pg_terminate_backend(p)) FROM unnest($1::int[]) p", pids)
        for event in gone:
            await event.wait()


async def test_acquire_and_transaction_skip_a_parked_connection_that_was_lost(db_url: str) -> None:
    admin = await asyncpg.connect(db_url)
    try:
        async with Database.connect(db_url, min_connections=0, max_connections=4) as db:
            await _park_and_kill(db, admin, 2)
            async with db.acquire() as conn:
                assert await conn.fetchval("SELECT 1") == 1
            await _park_and_kill(db, admin, 2)
            async with db.transaction() as tx:
                del tx
            await _park_and_kill(db, admin, 3)
            before = db.metrics.snapshot()["retries_total"]

            async def one(conn: asyncpg.Connection) -> int:
                return int(await conn.fetchval("SELECT 1"))

            assert await db.run(one) == 1
            assert db.metrics.snapshot()["retries_total"] == before  # no retry spent on a dead one
    finally:
        await admin.close()
