"""Test databases: clones of the migrated template, reset and handed to the next test when they can
be told apart from a fresh clone by nothing a test can see.

Cloning (``CREATE DATABASE ... TEMPLATE``) and dropping cost 35-50 ms idle and several hundred
milliseconds while two test workers and the server share two cores (it writes the whole database
to the WAL and syncs it). Emptying a database a test has used costs a few milliseconds. So after
a test, its database is checked and reset, and reused only if it is as a clone would be:

* nothing but rows changed: the catalog's fingerprint (tables, columns, indexes, constraints,
  triggers, functions, types, storage options, privileges, settings, ``reltuples`` and
  ``relpages``, the migration tables' rows) equals a fresh clone's;
* no table was ever analyzed or vacuumed (statistics and ``reltuples`` steer plans, and plan tests
  read ``pg_stat_user_tables``), and no table held more than ``REUSE_ROWS`` rows (a large delete
  leaves dead tuples behind);
* no other session is left in it (they are terminated first).

Every row is then deleted (append-only triggers and foreign keys off for that one transaction),
every sequence set back to its start, the database's statistics counters reset (so autovacuum
never picks up the deletions and analyzes or vacuums a table under the next test, as it could not
in a fresh clone), and the database renamed, so that no test ever sees a name an earlier one used
(a process an earlier test left behind cannot reach the next test's data). The dead rows the
deletions leave stay until the database is dropped, after at most ``MAX_REUSES`` tests.
Anything else, or any error on the way, and the database is dropped and the next test gets a
fresh clone.
"""

from __future__ import annotations

import uuid

import asyncpg

from tests.support.servers import TestServer, url_with_database

REUSE_ROWS = 5_000
"""A database whose tables held more rows than this in all is dropped rather than emptied."""

MAX_REUSES = 25
"""Tests a database serves before it is dropped (its dead rows add up)."""

_MIGRATION_TABLES = ("_yoyo_migration", "_yoyo_log", "_yoyo_version")
"""yoyo's record of what is applied: part of the schema, never emptied (their row counts are in
the fingerprint)."""

FINGERPRINT = """
SELECT md5(string_agg(item, E'\\n' ORDER BY item)) FROM (
    SELECT 'rel ' || n.nspname || '.' || c.relname || ' ' || c.relkind::text || ' '
           || coalesce(array_to_string(c.reloptions, ','), '') || ' ' || coalesce(c.relacl::text, '')
           || ' ' || c.relowner::regrole::text || ' ' || c.relnatts || ' ' || c.reltuples || ' ' || c.relpages
           || ' ' || c.relrowsecurity::text || ' ' || c.relforcerowsecurity::text AS item
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
    UNION ALL
    SELECT 'col ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
           || ' ' || a.attnotnull::text || ' ' || a.attisdropped::text || ' '
           || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
    FROM pg_attribute a
    JOIN pg_class c ON c.oid = a.attrelid
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE c.relnamespace = 'public'::regnamespace AND a.attnum > 0
    UNION ALL
    SELECT 'idx ' || pg_get_indexdef(i.indexrelid) FROM pg_index i
    JOIN pg_class c ON c.oid = i.indrelid WHERE c.relnamespace = 'public'::regnamespace
    UNION ALL
    SELECT 'con ' || conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid)
    FROM pg_constraint WHERE connamespace = 'public'::regnamespace
    UNION ALL
    SELECT 'trg ' || tgrelid::regclass::text || ' ' || tgname || ' ' || tgenabled::text
    FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid WHERE c.relnamespace = 'public'::regnamespace
    UNION ALL
    SELECT 'fn ' || p.oid::regprocedure::text || ' ' || md5(p.prosrc) || ' ' || coalesce(p.proacl::text, '')
    FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace
    UNION ALL
    SELECT 'policy ' || polrelid::regclass::text || ' ' || polname FROM pg_policy
    UNION ALL
    SELECT 'rule ' || ev_class::regclass::text || ' ' || rulename FROM pg_rewrite r
    JOIN pg_class c ON c.oid = r.ev_class WHERE c.relnamespace = 'public'::regnamespace
    UNION ALL
    SELECT 'publication ' || pubname FROM pg_publication
    UNION ALL
    SELECT 'event trigger ' || evtname FROM pg_event_trigger
    UNION ALL
    SELECT 'type ' || t.typname FROM pg_type t WHERE t.typnamespace = 'public'::regnamespace
    UNION ALL
    SELECT 'schema ' || nspname || ' ' || coalesce(nspacl::text, '') FROM pg_namespace
    WHERE nspname NOT LIKE 'pg_toast%' AND nspname NOT LIKE 'pg_temp%'
    UNION ALL
    SELECT 'ext ' || extname || ' ' || extversion FROM pg_extension
    UNION ALL
    SELECT 'acl ' || defaclrole::regrole::text || ' ' || defaclacl::text FROM pg_default_acl
    UNION ALL
    SELECT 'set ' || coalesce(setrole::regrole::text, '') || ' ' || array_to_string(setconfig, ',')
    FROM pg_db_role_setting WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
    UNION ALL
    SELECT 'db ' || coalesce(datacl::text, '') || ' ' || datallowconn::text || ' ' || datconnlimit
    FROM pg_database WHERE datname = current_database()
    UNION ALL
    SELECT 'migrations ' || (SELECT count(*) FROM _yoyo_migration) || ' ' || (SELECT count(*) FROM _yoyo_log)
           || ' ' || (SELECT count(*) FROM _yoyo_version)
) AS catalog
"""
"""What a test could change in a database other than its rows, as one hash."""

_UNTOUCHED = """
SELECT NOT EXISTS (
    SELECT 1 FROM pg_statistic s JOIN pg_class c ON c.oid = s.starelid
    WHERE c.relnamespace = 'public'::regnamespace
) AND NOT EXISTS (
    SELECT 1 FROM pg_stat_user_tables
    WHERE last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL
       OR last_vacuum IS NOT NULL OR last_autovacuum IS NOT NULL
)
"""
"""No statistics, no vacuum: the planner and ``pg_stat_user_tables`` see a never-analyzed database."""

_TABLES = """
SELECT format('%I', relname) FROM pg_class
WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p') AND NOT (relname = ANY ($1::text[]))
ORDER BY relname
"""

_SEQUENCES = "SELECT format('%I', sequencename), start_value FROM pg_sequences WHERE schemaname = 'public'"


class DatabaseSupply:
    """One test worker's databases: clones of ``template`` on ``server``, reused when reset."""

    def __init__(self, server: TestServer, template: str) -> None:
        self._server = server
        self._template = template
        self._fingerprint: str | None = None
        self._reusable = True
        """False when the template holds rows of its own (a reset could not tell them from a test's)."""
        self._spare: list[str] = []
        self._served: dict[str, int] = {}
        """Per database, the tests it has served."""

    @property
    def template(self) -> str:
        return self._template

    @property
    def spare(self) -> tuple[str, ...]:
        """The databases reset and waiting for a test."""
        return tuple(self._spare)

    async def take(self) -> str:
        """A database as fresh as a clone of the template: a reset one, else a new clone."""
        if self._spare:
            return self._spare.pop()
        name = await create_database(self._server, self._template)
        self._served[name] = 0
        if self._fingerprint is None:  # the template cannot be read while clones are made of it
            connection = await asyncpg.connect(url_with_database(self._server.url, name))
            try:
                self._fingerprint = await connection.fetchval(FINGERPRINT)
                for table in await self._tables(connection):
                    if await connection.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table})"):
                        self._reusable = False
            finally:
                await connection.close()
        return name

    async def give_back(self, name: str) -> None:
        """Reset ``name`` for the next test if it can be, else drop it."""
        served = self._served.pop(name, MAX_REUSES) + 1
        try:
            if self._reusable and served < MAX_REUSES and await self._reset(name):
                renamed = await rename_database(self._server, name)
                await _reset_statistics(self._server, renamed)
                self._served[renamed] = served
                self._spare.append(renamed)
                return
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            pass
        await drop_database(self._server, name)

    async def close(self) -> None:
        while self._spare:
            await drop_database(self._server, self._spare.pop())
        self._served.clear()

    async def _reset(self, name: str) -> bool:
        connection = await asyncpg.connect(url_with_database(self._server.url, name))
        try:
            await connection.execute(
                "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            if await connection.fetchval(FINGERPRINT) != self._fingerprint:
                return False
            if not await connection.fetchval(_UNTOUCHED):
                return False
            tables = await self._tables(connection)
            async with connection.transaction():
                await connection.execute("SET LOCAL session_replication_role = replica")
                held = 0
                for table in tables:
                    status = await connection.execute(f"DELETE FROM {table}")
                    held += int(status.split()[-1])
                if held > REUSE_ROWS:
                    return False  # dropped; the deletes need not commit
                for sequence, start in await connection.fetch(_SEQUENCES):
                    await connection.execute("SELECT setval($1::regclass, $2, false)", sequence, start)
            return True
        finally:
            await connection.close()

    @staticmethod
    async def _tables(connection: asyncpg.Connection) -> list[str]:
        return [row[0] for row in await connection.fetch(_TABLES, list(_MIGRATION_TABLES))]


def _new_name() -> str:
    return f"chem_t_{uuid.uuid4().hex[:12]}"


async def create_database(server: TestServer, template: str | None) -> str:
    name = _new_name()
    clause = f' TEMPLATE "{template}"' if template else ""
    await _as_admin(server, f'CREATE DATABASE "{name}"{clause}')
    return name


async def drop_database(server: TestServer, name: str) -> None:
    await _as_admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def rename_database(server: TestServer, name: str) -> str:
    """``name`` under a new name (refused while anyone is connected to it)."""
    new = _new_name()
    await _as_admin(server, f'ALTER DATABASE "{name}" RENAME TO "{new}"')
    return new


async def _as_admin(server: TestServer, statement: str) -> None:
    """Run ``statement`` on the server's own database (what acts on a database cannot run in it)."""
    admin = await asyncpg.connect(server.url)
    try:
        await admin.execute(statement)
    finally:
        await admin.close()


async def _reset_statistics(server: TestServer, name: str) -> None:
    """Zero ``name``'s statistics counters. Once it is renamed, the session that emptied it has
    left (a rename waits for that) and its counts of the deletions are flushed, so none comes
    after the reset."""
    connection = await asyncpg.connect(url_with_database(server.url, name))
    try:
        await connection.execute("SELECT pg_stat_reset()")
    finally:
        await connection.close()
