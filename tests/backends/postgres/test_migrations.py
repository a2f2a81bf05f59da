"""Migrations: they build exactly the documented schema, once, even with many processes at once."""

from __future__ import annotations

import asyncio
import multiprocessing
import shutil
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from chem_persistence_async import Database, MigrationError, migrate
from chem_persistence_async.backends.postgres.introspection import describe_schema
from chem_persistence_async.backends.postgres.migrations import (
    MIGRATION_LOCK_KEY,
    known_migration_ids,
    load_migrations,
    migrations_path,
    pending_migration_ids,
)

ROOT = Path(__file__).resolve().parents[3]
SNAPSHOT = ROOT / "docs" / "schema.sql"


async def test_schema_snapshot_equals_the_migrated_database(conn: asyncpg.Connection) -> None:
    assert await describe_schema(conn) == SNAPSHOT.read_text()


async def test_migrations_are_numbered_and_all_applied(conn: asyncpg.Connection) -> None:
    ids = known_migration_ids()
    assert ids == sorted(ids)
    assert [i[:4] for i in ids] == [f"{n:04d}" for n in range(1, len(ids) + 1)]
    assert await pending_migration_ids(conn) == []


async def test_opening_again_applies_nothing(db_url: str, conn: asyncpg.Connection) -> None:
    before = await conn.fetchval("SELECT count(*) FROM _yoyo_log")
    async with Database.connect(db_url) as db:
        assert await db.migrate() == []
    assert await conn.fetchval("SELECT count(*) FROM _yoyo_log") == before


def _open_in_process(
    url: str, barrier: multiprocessing.synchronize.Barrier, results: multiprocessing.Queue
) -> None:
    async def main() -> None:
        barrier.wait(timeout=60)
        async with (
            Database.connect(url, min_connections=1, max_connections=2) as db,
            db.acquire() as conn,
        ):
            results.put(await conn.fetchval("SELECT count(*) FROM event_log"))

    try:
        asyncio.run(main())
    except Exception as exc:  # reported to the parent, which fails the test
        results.put(repr(exc))


async def test_concurrent_first_open_from_several_processes_migrates_once(
    empty_db_url: str,
) -> None:
    processes = 4
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(processes)
    results = ctx.Queue()
    workers = [
        ctx.Process(target=_open_in_process, args=(empty_db_url, barrier, results)) for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    outcomes = [await asyncio.to_thread(results.get, True, 120) for _ in workers]
    for worker in workers:
        await asyncio.to_thread(worker.join, 30)
    assert outcomes == [0] * processes, outcomes
    conn = await asyncpg.connect(empty_db_url)
    try:
        applied = await conn.fetch(
            "SELECT migration_id, count(*) FROM _yoyo_log WHERE operation = 'apply' GROUP BY migration_id"
        )
        assert {r[0]: r[1] for r in applied} == {mid: 1 for mid in known_migration_ids()}
        assert await describe_schema(conn) == SNAPSHOT.read_text()
    finally:
        await conn.close()


async def _eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.02)


async def _advisory_locks(conn: asyncpg.Connection, url: str, *, granted: bool | None = None) -> int:
    return int(
        await conn.fetchval(
            """
            SELECT count(*) FROM pg_locks
            WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = $1)
              AND ($2::bool IS NULL OR granted = $2)
            """,
            urlsplit(url).path.lstrip("/"),
            granted,
        )
    )


async def test_processes_queued_behind_the_lock_see_what_the_holder_committed(empty_db_url: str) -> None:
    """Two migrators wait behind a third holder of the lock, each having already checked (and cached)
    that ``_yoyo_migration`` does not exist: the first to get the lock migrates, the second finds
    everything applied. A re-check through this session's stale catalog cache would apply it all again."""
    holder, first, second, watcher = [await asyncpg.connect(empty_db_url) for _ in range(4)]
    try:
        holding = holder.transaction()
        await holding.start()
        await holder.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)

        runs = []
        for n, conn in enumerate((first, second), start=1):
            assert await pending_migration_ids(conn) == known_migration_ids()
            runs.append(asyncio.create_task(migrate(conn)))

            async def queued(n: int = n) -> bool:
                return await _advisory_locks(watcher, empty_db_url, granted=False) == n

            await _eventually(queued, f"{n} migrator(s) queued for the lock")
        await holding.commit()
        assert await asyncio.wait_for(asyncio.gather(*runs), 30) == [known_migration_ids(), []]
        assert await pending_migration_ids(second) == []
        assert await _advisory_locks(watcher, empty_db_url) == 0
    finally:
        for conn in (holder, first, second, watcher):
            await conn.close()


async def test_the_migrations_connection_honours_the_settings(empty_db_url: str) -> None:
    """Its application name, and its command timeout, which also bounds the wait for the lock."""
    name = f"chem-mig-{uuid.uuid4().hex[:8]}"
    holder, watcher = [await asyncpg.connect(empty_db_url) for _ in range(2)]
    try:
        holding = holder.transaction()
        await holding.start()
        await holder.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
        started = time.monotonic()
        opening = asyncio.create_task(
            Database.open(empty_db_url, application_name=name, command_timeout=1.5, min_connections=0)
        )

        async def waits_on_the_lock() -> bool:
            found = await watcher.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND wait_event = 'advisory'",
                f"{name}:migrate",
            )
            return bool(found == 1)

        await _eventually(waits_on_the_lock, "the migrations' connection to wait on the lock")
        with pytest.raises(MigrationError, match="timed out"):
            await asyncio.wait_for(opening, 30)
        assert time.monotonic() - started < 20
        await holding.rollback()
        assert await _advisory_locks(watcher, empty_db_url) == 0
        assert await watcher.fetchval("SELECT to_regclass('_yoyo_migration')") is None  # nothing applied
    finally:
        await holder.close()
        await watcher.close()
    async with Database.connect(empty_db_url, min_connections=0) as db:
        assert await db.migrate() == []  # opening applied everything


def _copy_migrations(target: Path) -> Path:
    target.mkdir()
    for path in migrations_path().glob("*.sql"):
        shutil.copy(path, target / path.name)
    return target


async def test_a_failing_migration_applies_nothing_at_all(empty_db_url: str, tmp_path: Path) -> None:
    directory = _copy_migrations(tmp_path / "migrations")
    (directory / "0004_broken.sql").write_text("-- depends: 0003_step_execution_errors\nSELECT 1 / 0;\n")
    conn = await asyncpg.connect(empty_db_url)
    try:
        with pytest.raises(MigrationError, match=r"0004_broken failed, nothing was applied.*DivisionByZero"):
            await migrate(conn, directory=directory)
        assert not conn.is_in_transaction()
        for table in ("event_log", "_yoyo_migration", "_yoyo_log"):
            assert await conn.fetchval("SELECT to_regclass($1)", table) is None, table
        assert await _advisory_locks(conn, empty_db_url) == 0
        assert await migrate(conn) == known_migration_ids()  # the good ones still apply, once
        assert await pending_migration_ids(conn) == []
    finally:
        await conn.close()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("-- transactional: false\nCREATE INDEX CONCURRENTLY i ON event_log (ts);\n", "transactional: false"),
        ("-- depends: 0009_later\nSELECT 1;\n", "depends on 0009_later"),
    ],
)
def test_a_migration_that_cannot_run_under_the_lock_is_refused(
    tmp_path: Path, text: str, message: str
) -> None:
    directory = _copy_migrations(tmp_path / "migrations")
    (directory / "0004_extra.sql").write_text(text)
    with pytest.raises(MigrationError, match=message):
        load_migrations(directory)


def test_yoyo_sees_the_migrated_database_as_up_to_date(db_url: str) -> None:
    """The bookkeeping is yoyo's own: its command line would find nothing to apply or upgrade."""
    from yoyo import get_backend, read_migrations
    from yoyo.internalmigrations import get_current_version, schema_versions

    backend = get_backend(urlsplit(db_url)._replace(scheme="postgresql+psycopg").geturl())
    try:
        assert get_current_version(backend) == max(schema_versions)
        assert list(backend.to_apply(read_migrations(str(migrations_path())))) == []
    finally:
        backend.connection.close()


def test_migrations_ship_inside_the_wheel(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("chem_persistence_async-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "site")
    for mid in known_migration_ids():
        assert f"chem_persistence_async/_migrations/{mid}.sql" in names
    assert "chem_persistence_async/py.typed" in names
    found = subprocess.run(
        [
            sys.executable,
            "-c",
            "from chem_persistence_async.backends.postgres.migrations import migrations_path as p; print(p())",
        ],
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"},
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert Path(found) == tmp_path / "site" / "chem_persistence_async" / "_migrations"


if __name__ == "__main__":  # regenerate docs/schema.sql from a migrated database
    import os

    async def _write() -> None:
        async with Database.connect(os.environ.get("DATABASE_URL")) as db, db.acquire() as c:
            SNAPSHOT.write_text(await describe_schema(c))

    asyncio.run(_write())
