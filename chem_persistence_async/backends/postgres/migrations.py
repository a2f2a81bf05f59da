"""Schema migrations: numbered yoyo SQL files, applied once even when many processes start at once.

A PostgreSQL advisory lock serialises the processes: the first applies what is pending, the others
wait for it and then find nothing left to do. The check for pending migrations reads
``_yoyo_migration`` with the caller's connection, so a least-privilege role that cannot run DDL can
still open a database that an owner has migrated.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import anyio.to_thread
import asyncpg

from chem_persistence_async.errors import MigrationError
from chem_persistence_async.settings import scrub

MIGRATION_LOCK_KEY = 0x6368656D5F6D6967  # "chem_mig"


def migrations_path() -> Path:
    """The packaged migrations (in a wheel) or the repository's ``migrations/`` (in a checkout)."""
    packaged = resources.files("chem_persistence_async") / "_migrations"
    if packaged.is_dir():
        return Path(str(packaged))
    source = Path(__file__).resolve().parents[3] / "migrations"
    if source.is_dir():
        return source
    raise MigrationError("the migrations directory is missing from this installation")


def known_migration_ids() -> list[str]:
    return sorted(
        path.stem for path in migrations_path().glob("*.sql") if not path.stem.endswith(".rollback")
    )


async def applied_migration_ids(conn: asyncpg.Connection) -> set[str]:
    if await conn.fetchval("SELECT to_regclass('_yoyo_migration')") is None:
        return set()
    return {row[0] for row in await conn.fetch("SELECT migration_id FROM _yoyo_migration")}


async def pending_migration_ids(conn: asyncpg.Connection) -> list[str]:
    applied = await applied_migration_ids(conn)
    return [mid for mid in known_migration_ids() if mid not in applied]


async def migrate(conn: asyncpg.Connection, url: str) -> list[str]:
    """Apply pending migrations to the database ``conn`` is connected to; return the ids applied."""
    if not await pending_migration_ids(conn):
        return []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        pending = await pending_migration_ids(conn)
        if pending:
            await anyio.to_thread.run_sync(_apply_with_yoyo, url)
        return pending
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)


def _yoyo_url(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme="postgresql+psycopg"))


def _apply_with_yoyo(url: str) -> None:
    from yoyo import get_backend, read_migrations

    try:
        backend = get_backend(_yoyo_url(url))
    except Exception as exc:
        raise MigrationError(f"cannot connect to migrate: {scrub(str(exc), url)}") from None
    try:
        migrations = read_migrations(str(migrations_path()))
        backend.apply_migrations(backend.to_apply(migrations))
    except Exception as exc:
        raise MigrationError(f"migration failed: {scrub(str(exc), url)}") from None
    finally:
        backend.connection.close()
