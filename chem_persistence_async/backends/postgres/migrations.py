"""Schema migrations: numbered yoyo SQL files, applied once even when many processes start at once.

Nothing here keeps state in a session, so it works the same through PgBouncer in transaction mode:

- The check for pending migrations reads ``_yoyo_migration`` with the caller's connection and takes
  no lock, so a least-privilege role that cannot run DDL can still open a database an owner migrated.
- When something is pending, everything happens in **one transaction** on that same connection, at
  READ COMMITTED: ``pg_advisory_xact_lock`` first; then the applied ids are read again from the table
  itself (that statement takes its snapshot, and looks the table up, after the lock was granted, so it
  sees whatever the previous holder committed: see ``_applied_under_lock``); then every migration
  still pending, and yoyo's bookkeeping rows for it; then COMMIT, which releases the lock. The first
  process applies everything; the others wait on the lock, then find nothing to do.

Why that is safe: the lock belongs to the transaction, and PgBouncer never splits a transaction
across server connections, so the lock, the DDL and the bookkeeping all run on one server connection
and the lock cannot outlive them. Commit, rollback, an error, a timeout, a lost connection or a killed
process all end the transaction (PgBouncer closes a server connection whose client left in the middle
of one), and the lock goes with it (a server process blocked inside a statement notices that its
client is gone when that statement ends, unless ``client_connection_check_interval`` is set). A
process that migrates needs one server connection and no other, so the processes queued behind the
lock cannot starve it of PgBouncer's pool. A failure applies nothing: the migrations and their
bookkeeping commit together or not at all.

yoyo's files and tables, not yoyo's runner: yoyo applies each migration on a second connection of its
own and records it in another transaction, and its lock is a row in ``yoyo_lock`` that a killed process
leaves behind. The files stay in yoyo's format (read by yoyo's own parser), and yoyo's tables are
written as yoyo writes them, so the ``yoyo`` command line still sees the database as up to date.

Every migration must be transactional (``-- transactional: false`` is refused): it runs inside the
transaction that holds the lock.
"""

from __future__ import annotations

import getpass
import socket
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import asyncpg

from chem_persistence_async.errors import MigrationError

MIGRATION_LOCK_KEY = 0x6368656D5F6D6967  # "chem_mig"
"""The advisory lock's key. Earlier releases took it as a session lock: the two kinds conflict, so
processes of both releases still exclude each other during a rolling upgrade."""

_YOYO_TABLES = """
CREATE TABLE IF NOT EXISTS _yoyo_migration (
    migration_hash VARCHAR(64),
    migration_id VARCHAR(255),
    applied_at_utc TIMESTAMP,
    PRIMARY KEY (migration_hash)
);
CREATE TABLE IF NOT EXISTS _yoyo_log (
    id VARCHAR(36),
    migration_hash VARCHAR(64),
    migration_id VARCHAR(255),
    operation VARCHAR(10),
    username VARCHAR(255),
    hostname VARCHAR(255),
    comment VARCHAR(255),
    created_at_utc TIMESTAMP,
    PRIMARY KEY (id)
);
CREATE TABLE IF NOT EXISTS _yoyo_version (
    version INT NOT NULL PRIMARY KEY,
    installed_at_utc TIMESTAMP
);
CREATE TABLE IF NOT EXISTS yoyo_lock (
    locked INT DEFAULT 1,
    ctime TIMESTAMP,
    pid INT NOT NULL,
    PRIMARY KEY (locked)
);
INSERT INTO _yoyo_version (version, installed_at_utc)
VALUES (2, clock_timestamp() AT TIME ZONE 'UTC')
ON CONFLICT (version) DO NOTHING;
"""
"""yoyo 9's own tables (its internal schema version 2), column for column as yoyo creates them."""

_MARK_APPLIED = """
INSERT INTO _yoyo_migration (migration_hash, migration_id, applied_at_utc)
VALUES ($1, $2, clock_timestamp() AT TIME ZONE 'UTC')
"""
_LOG_APPLIED = """
INSERT INTO _yoyo_log
    (id, migration_hash, migration_id, operation, username, hostname, comment, created_at_utc)
VALUES ($1, $2, $3, 'apply', $4, $5, 'applied by chem-persistence-async',
        clock_timestamp() AT TIME ZONE 'UTC')
"""


@dataclass(frozen=True)
class SqlMigration:
    """One migration file: its id (the file name without ``.sql``), yoyo's hash of it, its statements."""

    id: str
    hash: str
    statements: tuple[str, ...]


def migrations_path() -> Path:
    """The packaged migrations (in a wheel) or the repository's ``migrations/`` (in a checkout)."""
    packaged = resources.files("chem_persistence_async") / "_migrations"
    if packaged.is_dir():
        return Path(str(packaged))
    source = Path(__file__).resolve().parents[3] / "migrations"
    if source.is_dir():
        return source
    raise MigrationError("the migrations directory is missing from this installation")


def known_migration_ids(directory: Path | None = None) -> list[str]:
    source = migrations_path() if directory is None else directory
    return sorted(path.stem for path in source.glob("*.sql") if not path.stem.endswith(".rollback"))


def load_migrations(directory: Path | None = None) -> list[SqlMigration]:
    """Read the migration files in order, with yoyo's parser; refuse what cannot run under the lock."""
    from yoyo.migrations import get_migration_hash, read_sql_migration

    source = migrations_path() if directory is None else directory
    loaded: list[SqlMigration] = []
    for mid in known_migration_ids(source):
        directives, _, statements = read_sql_migration(str(source / f"{mid}.sql"))
        transactional = directives.get("transactional", "true").strip().lower()
        if transactional != "true":
            raise MigrationError(
                f"migration {mid} says 'transactional: {transactional}': every migration runs inside "
                "the transaction that holds the migration lock"
            )
        earlier = {m.id for m in loaded}
        missing = [d for d in directives.get("depends", "").split() if d not in earlier]
        if missing:
            raise MigrationError(f"migration {mid} depends on {', '.join(missing)}: not an earlier migration")
        loaded.append(SqlMigration(mid, str(get_migration_hash(mid)), tuple(statements)))
    return loaded


async def applied_migration_ids(conn: asyncpg.Connection) -> set[str]:
    if await conn.fetchval("SELECT to_regclass('_yoyo_migration')") is None:
        return set()
    return {row[0] for row in await conn.fetch("SELECT migration_id FROM _yoyo_migration")}


async def pending_migration_ids(conn: asyncpg.Connection, directory: Path | None = None) -> list[str]:
    applied = await applied_migration_ids(conn)
    return [mid for mid in known_migration_ids(directory) if mid not in applied]


async def migrate(conn: asyncpg.Connection, *, directory: Path | None = None) -> list[str]:
    """Apply pending migrations to the database ``conn`` is connected to; return the ids applied.

    ``conn`` must not be inside a transaction: the migrations run in one transaction of their own.
    ``directory`` defaults to the packaged migrations. A statement that outlasts the connection's
    ``command_timeout`` (waiting for the lock included) fails the whole run, and nothing is applied.
    """
    if not await pending_migration_ids(conn, directory):
        return []
    if conn.is_in_transaction():
        raise MigrationError("migrate() runs in a transaction of its own: call it outside a transaction")
    migrations = load_migrations(directory)
    try:
        async with conn.transaction(isolation="read_committed"):
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
            applied = await _applied_under_lock(conn)
            pending = [m for m in migrations if m.id not in applied]
            if pending:
                await conn.execute(_YOYO_TABLES)
            for migration in pending:
                await _apply(conn, migration)
        return [m.id for m in pending]
    except TimeoutError:
        raise MigrationError(
            "migrating timed out (waiting for another process's migration, or running one, took "
            "longer than the command timeout, DATABASE_COMMAND_TIMEOUT); nothing was applied"
        ) from None
    except asyncpg.PostgresError as exc:
        raise MigrationError(f"migrating failed, nothing was applied: {type(exc).__name__}: {exc}") from None


async def _applied_under_lock(conn: asyncpg.Connection) -> set[str]:
    """The applied ids as the previous holder of the lock committed them.

    Not ``to_regclass``: it looks the name up without a lock, from this session's catalog cache, which
    was filled before the lock was granted (by the check for pending migrations) and may still say
    ``_yoyo_migration`` does not exist after another process created it. Reading the table looks the
    name up under a lock, which first takes in what other sessions committed. The savepoint keeps a
    missing table from aborting the migration's transaction.
    """
    try:
        async with conn.transaction():
            rows = await conn.fetch("SELECT migration_id FROM _yoyo_migration")
    except asyncpg.UndefinedTableError:
        return set()
    return {row[0] for row in rows}


async def _apply(conn: asyncpg.Connection, migration: SqlMigration) -> None:
    try:
        for statement in migration.statements:
            await conn.execute(statement)  # no arguments: the simple protocol, no prepared statement
    except asyncpg.PostgresError as exc:
        raise MigrationError(
            f"migration {migration.id} failed, nothing was applied: {type(exc).__name__}: {exc}"
        ) from None
    await conn.execute(_MARK_APPLIED, migration.hash, migration.id)
    await conn.execute(_LOG_APPLIED, str(uuid.uuid4()), migration.hash, migration.id, *_who())


def _who() -> tuple[str, str]:
    """The user and host for yoyo's log, as yoyo records them (never fatal: it is only a log)."""
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return user[:255], socket.gethostname()[:255]
