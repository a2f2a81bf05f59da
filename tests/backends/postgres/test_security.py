"""Security: the password never shows (reprs, errors, logs), and the library works as a least-privilege role.

Roles are global to the server: every test makes its own, with unique names, and drops them.
The servers under test trust local connections, so any password is accepted: what matters here is
that the password written in the URL never comes out again.
"""

from __future__ import annotations

import logging
import traceback
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import pytest

from chem_persistence_async import (
    ConfigurationError,
    Database,
    DatabaseError,
    DatabaseSettings,
    FlowEngine,
    PgEventStore,
    PgFlowRepository,
    demo_definition,
)
from tests.support import servers as support
from tests.support.servers import url_with_database

LEAST_PRIVILEGE_GRANTS = """
GRANT CONNECT ON DATABASE {database} TO {role};
GRANT USAGE ON SCHEMA public TO {role};
GRANT SELECT, INSERT ON event_log, workflow_step_artifacts, step_execution_errors TO {role};
GRANT USAGE ON SEQUENCE event_log_seq_seq, step_execution_errors_id_seq TO {role};
GRANT SELECT ON _yoyo_migration TO {role};
"""
"""What an owner role (the one that ran the migrations) grants the application's role.

Reading ``_yoyo_migration`` lets the role check, when it opens a ``Database``, that no migration is
pending. No UPDATE, DELETE, TRUNCATE or DDL: the log and its tables are append-only for the app.
"""


def with_credentials(url: str, user: str, password: str | None = None) -> str:
    """``url`` with another user (and password), keeping host, port, database and query."""
    parts = urlsplit(url)
    hostport = parts.netloc.rsplit("@", 1)[-1]
    auth = quote(user, safe="") + ("" if password is None else ":" + quote(password, safe=""))
    return urlunsplit(parts._replace(netloc=f"{auth}@{hostport}"))


def with_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    hostport = parts.netloc.rsplit("@", 1)[-1]
    auth = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    if hostport:  # a TCP URL
        host = hostport.rsplit(":", 1)[0] if ":" in hostport else hostport
        return urlunsplit(parts._replace(netloc=f"{auth}{host}:{port}"))
    query = "&".join(q for q in parts.query.split("&") if q and not q.startswith("port="))
    return urlunsplit(parts._replace(query=f"{query}&port={port}" if query else f"port={port}"))


RoleFactory = Callable[..., Awaitable[str]]


@pytest.fixture
async def make_role(pg_server: support.TestServer) -> AsyncIterator[RoleFactory]:
    """Create login roles with unique names; drop them (and their privileges) afterwards."""
    admin = await asyncpg.connect(pg_server.url)
    made: list[str] = []

    async def make(prefix: str, password: str | None = None) -> str:
        name = f"chem_{prefix}_{uuid.uuid4().hex[:10]}"
        if password is None:
            sql = await admin.fetchval("SELECT format('CREATE ROLE %I LOGIN', $1::text)", name)
        else:
            sql = await admin.fetchval(
                "SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', $1::text, $2::text)", name, password
            )
        await admin.execute(sql)
        made.append(name)
        return name

    try:
        yield make
    finally:
        for name in reversed(made):
            # Privileges live in the databases they were granted in: revoke them there first.
            for (database,) in await admin.fetch(
                "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate"
            ):
                try:
                    conn = await asyncpg.connect(url_with_database(pg_server.url, database))
                except (OSError, asyncpg.PostgresError):
                    continue
                try:
                    await conn.execute(f'DROP OWNED BY "{name}"')
                except _DATABASE_GONE:
                    pass  # (another test's database, dropped by its worker while this ran)
                finally:
                    conn.terminate()
            await admin.execute(f'DROP ROLE IF EXISTS "{name}"')
        await admin.close()


_DATABASE_GONE = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError)
"""What revoking in a database another xdist worker drops meanwhile (``WITH (FORCE)``) can raise:
a server error, or the client's own once its connection is cut mid-statement."""


async def grant_least_privilege(owner_conn: asyncpg.Connection, database: str, role: str) -> None:
    await owner_conn.execute(LEAST_PRIVILEGE_GRANTS.format(database=f'"{database}"', role=f'"{role}"'))


def _everything_said(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)) + repr(exc) + str(exc)


# --- the password never shows --------------------------------------------------------------------


async def test_password_never_in_reprs_errors_or_logs(
    db_url: str, conn: asyncpg.Connection, make_role: RoleFactory, caplog: pytest.LogCaptureFixture
) -> None:
    token = uuid.uuid4().hex[:12]
    password = f"S3cr3t/{token}@pw:x"  # characters that need quoting in a URL
    secrets = (password, quote(password, safe=""), token)
    role = await make_role("pw", password)
    database = urlsplit(db_url).path.lstrip("/")
    await grant_least_privilege(conn, database, role)
    url = with_credentials(db_url, role, password)
    caplog.set_level(logging.DEBUG)

    said: list[str] = []
    db = await Database.open(url, min_connections=1, max_connections=2, retry_delays_ms=(1, 2, 3))
    try:
        store = PgEventStore(db)
        said += [repr(db), str(db), db.url, repr(store), repr(db.settings), str(db.settings)]
        said += [
            str(db.settings.model_dump()),
            db.settings.model_dump_json(),
            repr(db.settings.connection.url),
        ]
        assert ":***@" in db.url

        # A retried failure: the backend is killed in the middle of the first attempt.
        attempts: list[int] = []

        async def killed_once(c: asyncpg.Connection) -> int:
            attempts.append(1)
            if len(attempts) == 1:
                await c.execute("SELECT pg_terminate_backend(pg_backend_pid())")
            return int(await c.fetchval("SELECT 1"))

        assert await db.run(killed_once, operation="killed_once") == 1
        assert db.metrics.snapshot()["retries_total"] >= 1

        # A failure that outlasts every retry: what reaches the caller.
        async def always_killed(c: asyncpg.Connection) -> None:
            await c.execute("SELECT pg_terminate_backend(pg_backend_pid())")

        with pytest.raises(Exception) as exhausted:
            await db.run(always_killed, operation="always_killed")
        said.append(_everything_said(exhausted.value))
    finally:
        await db.close()
    with pytest.raises(DatabaseError) as closed:
        await PgEventStore(db).list(uuid.uuid4())
    said.append(_everything_said(closed.value))

    # Opening against a wrong port and a wrong database.
    for bad_url in (with_port(url, 1), url_with_database(url, f"missing_{uuid.uuid4().hex[:8]}")):
        with pytest.raises(DatabaseError, match="cannot open") as failed:
            await Database.open(bad_url, connect_timeout=5)
        said.append(_everything_said(failed.value))

    # Bad settings next to the password.
    for overrides in (
        {"min_connections": 5, "max_connections": 2},
        {"max_connections": 0},
        {"retry_delays_ms": "-1"},
        {"command_timeout": -3},
    ):
        with pytest.raises(ConfigurationError) as bad:
            DatabaseSettings.load(url=url, **overrides)
        said.append(_everything_said(bad.value))
        with pytest.raises(ConfigurationError) as bad_open:
            await Database.open(url, **overrides)
        said.append(_everything_said(bad_open.value))
    with pytest.raises(ConfigurationError) as bad_scheme:
        DatabaseSettings.load(url=url.replace("postgresql://", "mysql://", 1))
    said.append(_everything_said(bad_scheme.value))

    said.append(caplog.text)
    said += [repr(vars(record)) for record in caplog.records]
    assert any("retrying after transient failure" in r.getMessage() for r in caplog.records)
    for text in said:
        for secret in secrets:
            assert secret not in text, f"the password leaked into: {text[:300]}"


async def test_password_given_as_a_query_parameter_is_redacted(db_url: str, make_role: RoleFactory) -> None:
    token = uuid.uuid4().hex[:12]
    password = f"qp-{token}"
    role = await make_role("qp", password)
    parts = urlsplit(with_credentials(db_url, role))
    url = urlunsplit(parts._replace(query="&".join(q for q in (parts.query, f"password={password}") if q)))
    settings = DatabaseSettings.load(url=url)
    for text in (repr(settings), str(settings), settings.connection.redacted_url or ""):
        assert token not in text
    with pytest.raises(DatabaseError) as failed:
        await Database.open(with_port(url, 1), connect_timeout=5)
    assert token not in _everything_said(failed.value)
    assert "password=***" in str(failed.value)


# --- least privilege -----------------------------------------------------------------------------


@pytest.fixture
async def owned_database(
    pg_server: support.TestServer, make_role: RoleFactory
) -> AsyncIterator[tuple[str, str]]:
    """A database owned by a fresh owner role: ``(database name, owner role)``; dropped afterwards."""
    owner = await make_role("owner")
    database = f"chem_lp_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg_server.url)
    try:
        await admin.execute(f'CREATE DATABASE "{database}" OWNER "{owner}"')
        yield database, owner
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        await admin.close()


async def test_least_privilege_role_runs_the_demo_flow(
    pg_server: support.TestServer, owned_database: tuple[str, str], make_role: RoleFactory
) -> None:
    database, owner = owned_database
    base = url_with_database(pg_server.url, database)
    owner_url = with_credentials(base, owner)

    # The owner runs the migrations and grants the app role what it needs, and nothing more.
    async with Database.connect(owner_url, min_connections=0) as owner_db:
        assert await owner_db.migrate() == []  # opening applied them all
    app = await make_role("app")
    owner_conn = await asyncpg.connect(owner_url)
    try:
        await grant_least_privilege(owner_conn, database, app)
    finally:
        await owner_conn.close()

    app_url = with_credentials(base, app)
    async with Database.connect(app_url, auto_migrate=True, min_connections=1) as db:  # pending check only
        store = PgEventStore(db)
        engine = FlowEngine(store, PgFlowRepository(), demo_definition())
        flow_id = await engine.run_to_end()
        assert await engine.event_variants(flow_id) == ["I", "S", "F", "C"]
        assert (await engine.load(flow_id)).completed
        assert await db.migrate() == []

    raw = await asyncpg.connect(app_url)
    try:
        for table in ("event_log", "workflow_step_artifacts", "step_execution_errors"):
            await raw.fetchval(f"SELECT count(*) FROM {table}")  # reading is allowed
            for statement in (
                f"UPDATE {table} SET flow_id = flow_id"
                if table != "workflow_step_artifacts"
                else f"UPDATE {table} SET kind = kind",
                f"DELETE FROM {table}",
                f"TRUNCATE {table}",
                f"ALTER TABLE {table} ADD COLUMN x int",
                f"DROP TABLE {table}",
            ):
                with pytest.raises(asyncpg.PostgresError) as denied:
                    await raw.execute(statement)
                assert denied.value.sqlstate == "42501", statement  # insufficient_privilege
                assert isinstance(denied.value, asyncpg.InsufficientPrivilegeError)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await raw.execute("CREATE TABLE app_made (id int)")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await raw.execute("DELETE FROM _yoyo_migration")
    finally:
        await raw.close()

    # Nothing the app role tried changed what the flow wrote.
    owner_conn = await asyncpg.connect(owner_url)
    try:
        assert await owner_conn.fetchval("SELECT count(*) FROM event_log WHERE flow_id = $1", flow_id) == 10
    finally:
        await owner_conn.close()
