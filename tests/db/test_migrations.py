"""Migrations: they build exactly the documented schema, once, even with many processes at once."""

from __future__ import annotations

import asyncio
import multiprocessing
import subprocess
import sys
import zipfile
from pathlib import Path

import asyncpg

from chem_persistence_async import Database
from chem_persistence_async.backends.postgres.introspection import describe_schema
from chem_persistence_async.backends.postgres.migrations import known_migration_ids, pending_migration_ids

ROOT = Path(__file__).resolve().parents[2]
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
