"""Database: how it opens, what it holds, and that closing it lets go of everything."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import asyncpg
import pytest

from chem_persistence_async import (
    ConfigurationError,
    Database,
    DatabaseClosedError,
    DatabaseError,
    PgEventStore,
    StepStarted,
)
from chem_persistence_async.backends.postgres.retry import is_lost_connection, transient_reason
from tests.support.faults import PrivateServer
from tests.support.waiting import until


async def _backends(admin: asyncpg.Connection, application_name: str) -> int:
    return int(
        await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", application_name
        )
    )


async def _all_gone(admin: asyncpg.Connection, application_name: str) -> None:
    """Every server backend of ``application_name`` has ended (bounded): a backend ends after its
    client closed the connection, on the server's own time, so right after ``close`` it may still
    be listed for a moment on a loaded machine."""

    async def gone() -> bool:
        return await _backends(admin, application_name) == 0

    await until(gone, 10, f"the backends of {application_name} to end")


@pytest.fixture
async def admin(db_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(db_url)
    yield connection
    await connection.close()


@pytest.mark.parametrize("style", ["async with", "await + close", "open + close"])
async def test_closing_releases_every_connection(db_url: str, admin: asyncpg.Connection, style: str) -> None:
    name = f"chem-teardown-{uuid.uuid4().hex[:8]}"
    store_ops = 0

    async def use(db: Database) -> None:
        nonlocal store_ops
        store = PgEventStore(db)
        flow = uuid.uuid4()
        for attempt in range(1, 21):
            await store.append_kind(flow, StepStarted(step_index=0, step_id="s", attempt=attempt))
            store_ops += 1
        assert await _backends(admin, name) >= 3  # min_connections are open while in use

    if style == "async with":
        async with Database.connect(db_url, application_name=name, min_connections=3) as db:
            await use(db)
    elif style == "await + close":
        db = await Database.connect(db_url, application_name=name, min_connections=3)
        await use(db)
        await db.close()
    else:
        db = await Database.open(db_url, application_name=name, min_connections=3)
        await use(db)
        await db.close()
    assert store_ops == 20
    assert db.closed
    await _all_gone(admin, name)
    await db.close()  # closing twice is harmless


async def test_a_borrowed_connection_does_not_keep_the_pool_alive(
    db_url: str, admin: asyncpg.Connection
) -> None:
    name = f"chem-borrowed-{uuid.uuid4().hex[:8]}"
    db = await Database.open(db_url, application_name=name, min_connections=1)
    async with db.acquire():
        await db.close(timeout=0.5)
    await _all_gone(admin, name)


async def test_everything_after_close_raises_database_closed(db_url: str) -> None:
    db = await Database.open(db_url, min_connections=1)
    store = PgEventStore(db)
    await db.close()
    with pytest.raises(DatabaseClosedError, match="is closed"):
        await store.list(uuid.uuid4())
    with pytest.raises(DatabaseClosedError, match="is closed"):
        async with db.acquire():
            pass
    with pytest.raises(DatabaseClosedError, match="is closed"):
        await db.migrate()
    assert "closed" in repr(db)


async def test_from_env_reads_database_url(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("DATABASE_MAX_CONNECTIONS", "3")
    async with Database.from_env() as db:
        assert db.settings.connection.max_connections == 3
        assert not db.embedded
        async with db.acquire() as conn:
            assert await conn.fetchval("SELECT current_database()") == urlsplit(db_url).path.lstrip("/")


async def test_bad_settings_fail_before_connecting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_MIN_CONNECTIONS", "many")
    with pytest.raises(ConfigurationError, match="DATABASE_MIN_CONNECTIONS"):
        await Database.open("postgresql://nobody@127.0.0.1:1/none")


async def test_jsonb_codec_is_set_on_every_pool_connection(db: Database) -> None:
    """Codecs are installed once per connection, so every borrowed connection speaks bytes for JSONB."""
    seen = []
    for _ in range(db.settings.connection.max_connections):
        async with db.acquire() as conn:
            seen.append(await conn.fetchval("SELECT '{\"a\": 1}'::jsonb"))
    assert set(seen) == {b'{"a": 1}'}


def test_lost_connection_is_transient_but_bad_input_is_not() -> None:
    assert is_lost_connection(transient_reason(asyncpg.ConnectionDoesNotExistError("gone")))
    assert transient_reason(asyncpg.UniqueViolationError("dup")) is None
    assert transient_reason(ValueError("bad")) is None


async def test_open_with_settings_and_keywords_overrides_only_those(db_url: str) -> None:
    from chem_persistence_async import DatabaseSettings

    settings = DatabaseSettings.load(url="postgresql://nobody@127.0.0.1:1/none", max_connections=3)
    db = await Database.open(db_url, settings=settings, min_connections=1)
    try:
        assert db.settings.connection.url_value == db_url
        assert db.settings.connection.max_connections == 3
        assert db.settings.connection.min_connections == 1
        assert not db.embedded
        assert db.data_dir is None
        assert db.describe() == db.url
        async with db.acquire() as conn:
            assert await conn.fetchval("SELECT 1") == 1
    finally:
        await db.close()


async def test_opening_waits_out_a_server_that_is_restarting(private_server: PrivateServer) -> None:
    """A worker started while its server restarts comes up once the server does."""
    await asyncio.to_thread(private_server.stop)
    opening = asyncio.ensure_future(Database.open(private_server.url, min_connections=1))
    await asyncio.sleep(0.2)  # it is refused at least once before the server is back
    assert not opening.done()
    await asyncio.to_thread(private_server.start)
    db = await asyncio.wait_for(opening, 30)
    try:
        async with db.acquire() as conn:
            assert await conn.fetchval("SELECT 1") == 1
    finally:
        await db.close()


async def test_opening_a_server_that_stays_down_fails_with_a_clear_error(
    private_server: PrivateServer,
) -> None:
    await asyncio.to_thread(private_server.stop)
    try:
        with pytest.raises(DatabaseError, match=r"cannot open .* \(still failing after 5 retries\)"):
            await Database.open(private_server.url, min_connections=1)
    finally:
        await asyncio.to_thread(private_server.start)
