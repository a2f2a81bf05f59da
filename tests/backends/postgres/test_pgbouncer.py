"""Through a real PgBouncer (Debian's package) in transaction mode, with ``statement_cache_size=0``.

In transaction mode PgBouncer may give each transaction of one client connection a different server
connection: nothing may rely on a session (no named prepared statement kept between transactions, no
session-level advisory lock). These tests open fresh databases through it, from one task and from
several processes at once, and check that migrations ran exactly once and left no lock behind.

Skipped when ``pgbouncer`` is not installed (CI installs it). The bouncer reaches the test server
over TCP or over the embedded server's unix socket, so both CI runs use it.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from chem_persistence_async import (
    Database,
    FlowEngine,
    FlowInitialized,
    PgEventStore,
    PgFlowRepository,
    demo_definition,
)
from chem_persistence_async.backends.postgres.introspection import describe_schema
from chem_persistence_async.backends.postgres.migrations import known_migration_ids
from tests.factories import H, started
from tests.support import servers as support
from tests.support.bouncer import APT_PACKAGE, PgBouncer, pgbouncer_binary

ROOT = Path(__file__).resolve().parents[3]
SNAPSHOT = ROOT / "docs" / "schema.sql"
PROCESS_DEADLINE = 90.0
"""Seconds the processes of one test may take in all before they are killed and the test fails."""


def _bouncer(server: support.TestServer, pool_size: int) -> Iterator[PgBouncer]:
    if pgbouncer_binary() is None:
        pytest.skip(f"pgbouncer is not installed (Debian package: apt-get install {APT_PACKAGE})")
    bouncer = PgBouncer(server.url, pool_size=pool_size)
    try:
        bouncer.start()
        yield bouncer
    finally:
        bouncer.cleanup()


@pytest.fixture(scope="module")
def pgbouncer(pg_server: support.TestServer) -> Iterator[PgBouncer]:
    """Two server connections per database: enough for one process to wait on another's lock."""
    yield from _bouncer(pg_server, pool_size=2)


@pytest.fixture(scope="module")
def pgbouncer_one_server(pg_server: support.TestServer) -> Iterator[PgBouncer]:
    """One server connection per database: every client's every transaction runs on the same one."""
    yield from _bouncer(pg_server, pool_size=1)


def database_of(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


async def advisory_locks(conn: asyncpg.Connection, database: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        """
        SELECT l.pid, l.granted, a.state, a.application_name
        FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'advisory'
          AND l.database = (SELECT oid FROM pg_database WHERE datname = $1)
        """,
        database,
    )


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 30.0) -> None:
    """Poll ``check`` until it holds; fail the test if it does not within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.02)


async def assert_migrated_once_and_unlocked(direct_url: str) -> None:
    conn = await asyncpg.connect(direct_url)
    try:
        applied = await conn.fetch(
            "SELECT migration_id, count(*) FROM _yoyo_log WHERE operation = 'apply' GROUP BY migration_id"
        )
        assert {r[0]: r[1] for r in applied} == {mid: 1 for mid in known_migration_ids()}
        assert await conn.fetchval("SELECT count(*) FROM _yoyo_migration") == len(known_migration_ids())
        assert await describe_schema(conn) == SNAPSHOT.read_text()
        locks = await advisory_locks(conn, database_of(direct_url))
        assert locks == [], f"advisory locks left held: {[dict(r) for r in locks]}"
    finally:
        await conn.close()


# --- processes -----------------------------------------------------------------------------------


async def spawn_worker(url: str) -> asyncio.subprocess.Process:
    """Start ``tests.backends.postgres.bouncer_worker`` and wait until it has imported everything (``ready``)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.backends.postgres.bouncer_worker",
        url,
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 60)
    assert line == b"ready\n", line
    return process


def go(process: asyncio.subprocess.Process) -> None:
    assert process.stdin is not None
    process.stdin.write(b"go\n")


async def finish(process: asyncio.subprocess.Process) -> tuple[int, dict[str, object] | None, str]:
    """Wait for a worker; its exit code, its JSON outcome (None if it printed none) and its stderr."""
    out, err = await process.communicate()
    lines = out.decode(errors="replace").strip().splitlines()
    outcome = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else None
    return process.returncode if process.returncode is not None else -1, outcome, err.decode(errors="replace")


@asynccontextmanager
async def killed_afterwards(processes: list[asyncio.subprocess.Process]) -> AsyncIterator[None]:
    """Whatever happens in the block, no worker outlives it (SIGKILL)."""
    try:
        yield
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
                await process.wait()


# --- tests ---------------------------------------------------------------------------------------


async def test_open_through_pgbouncer_migrates_a_fresh_database_and_runs_the_demo(
    pgbouncer_one_server: PgBouncer, empty_db_url: str
) -> None:
    url = pgbouncer_one_server.url(empty_db_url)
    async with Database.connect(url, statement_cache_size=0, min_connections=1, max_connections=4) as db:
        store = PgEventStore(db)
        flow = uuid.uuid4()
        init = FlowInitialized(definition_name="demo", definition_hash=H, step_count=1)
        await store.append_kind(flow, init, expected_version=0)
        await store.append_kind(flow, started(), expected_version=1)
        assert [(e.flow_version, e.kind) for e in await store.list(flow)] == [(1, init), (2, started())]
        engine = FlowEngine(store, PgFlowRepository(), demo_definition())
        flow_id = await engine.run_to_end()
        assert await engine.event_variants(flow_id) == ["I", "S", "F", "C"]

    # Opening again checks for pending migrations, on server connections earlier clients used: a named
    # prepared statement left on one of them by any connection would collide here.
    for _ in range(3):
        async with Database.connect(url, statement_cache_size=0, min_connections=1) as again:
            assert await again.migrate() == []
            engine = FlowEngine(PgEventStore(again), PgFlowRepository(), demo_definition())
            assert (await engine.load(flow_id)).completed

    # Every client above ran every statement on the bouncer's one server connection: the migrations'
    # connection and the pools' included. None of them may have left a named prepared statement there.
    probe = await asyncpg.connect(url, statement_cache_size=0)
    try:
        assert await probe.fetch("SELECT name, statement FROM pg_prepared_statements") == []
    finally:
        await probe.close()
    await assert_migrated_once_and_unlocked(empty_db_url)


async def test_four_processes_opening_a_fresh_database_through_pgbouncer_migrate_once(
    pgbouncer: PgBouncer, empty_db_url: str
) -> None:
    url = pgbouncer.url(empty_db_url)
    processes: list[asyncio.subprocess.Process] = []
    async with killed_afterwards(processes):
        async with asyncio.timeout(PROCESS_DEADLINE):
            processes += await asyncio.gather(*(spawn_worker(url) for _ in range(4)))
            for process in processes:
                go(process)
            try:
                results = await asyncio.gather(*(finish(p) for p in processes))
            except TimeoutError:
                pytest.fail(f"a process opening through PgBouncer hung (killed after {PROCESS_DEADLINE:g}s)")
        for code, outcome, err in results:
            assert code == 0, err[-3000:]
            assert outcome is not None, err[-3000:]
            assert outcome["variants"] == ["I", "S", "F", "C"]
    # (c) and nothing is left behind: no advisory lock held by any (idle) server connection.
    await assert_migrated_once_and_unlocked(empty_db_url)


async def test_a_migrator_killed_holding_the_lock_through_pgbouncer_releases_it_to_the_next(
    pgbouncer: PgBouncer, empty_db_url: str
) -> None:
    """SIGKILL the process that holds the migration lock, in the middle of migrating: the lock goes
    with its transaction, and the process queued behind it migrates everything."""
    url = pgbouncer.url(empty_db_url)
    database = database_of(empty_db_url)
    watcher = await asyncpg.connect(empty_db_url)
    blocker = await asyncpg.connect(empty_db_url)
    processes: list[asyncio.subprocess.Process] = []
    try:
        # An uncommitted table of the same name: the first migration's CREATE TABLE waits for it.
        blocking = blocker.transaction()
        await blocking.start()
        await blocker.execute("CREATE TABLE event_log (x int)")

        async def lock_count(granted: bool) -> int:
            return sum(1 for r in await advisory_locks(watcher, database) if r["granted"] is granted)

        async def holder_is_mid_migration() -> bool:
            waiting = await watcher.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event = 'transactionid'",
                database,
            )
            return waiting == 1 and await lock_count(True) == 1

        async def next_one_waits_for_the_lock() -> bool:
            return await lock_count(False) == 1

        async with killed_afterwards(processes), asyncio.timeout(PROCESS_DEADLINE):
            holder = await spawn_worker(url)
            processes.append(holder)
            go(holder)
            await eventually(holder_is_mid_migration, "the first process to hold the lock mid-migration")
            waiter = await spawn_worker(url)
            processes.append(waiter)
            go(waiter)
            await eventually(next_one_waits_for_the_lock, "the second process to queue for the lock")

            holder.kill()  # SIGKILL, while it holds the lock
            await holder.wait()
            await blocking.rollback()

            code, outcome, err = await finish(waiter)
            assert code == 0, err[-3000:]
            assert outcome is not None, err[-3000:]
            assert outcome["variants"] == ["I", "S", "F", "C"]
    finally:
        await blocker.close()
        await watcher.close()
    await assert_migrated_once_and_unlocked(empty_db_url)
