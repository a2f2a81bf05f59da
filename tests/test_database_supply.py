"""The test databases' supply (``tests.support.databases``): a database handed to a test after
another used it is one a fresh clone of the template cannot be told from, under a name never used
before; one it cannot vouch for is dropped."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import asyncpg
import pytest

from chem_persistence_async import Database
from chem_persistence_async.domain.events import StepStarted
from tests.support.databases import FINGERPRINT, MAX_REUSES, REUSE_ROWS, DatabaseSupply
from tests.support.servers import url_with_database

if TYPE_CHECKING:
    from tests.support.servers import TestServer

pytestmark = pytest.mark.usefixtures("template_url")


@pytest.fixture
async def supply(pg_server: TestServer, database_supply: DatabaseSupply) -> AsyncIterator[DatabaseSupply]:
    own = DatabaseSupply(pg_server, database_supply.template)
    yield own
    await own.close()


async def _exists(server: TestServer, name: str) -> bool:
    admin = await asyncpg.connect(server.url)
    try:
        return bool(
            await admin.fetchval("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name)
        )
    finally:
        await admin.close()


async def _state(url: str) -> tuple[str, list[tuple[str, int]], list[tuple[str, int, bool]]]:
    """The catalog's fingerprint, every table's row count, every sequence's position."""
    conn = await asyncpg.connect(url)
    try:
        tables = await conn.fetch("SELECT format('%I', tablename) FROM pg_tables WHERE schemaname = 'public'")
        counts = [(t[0], await conn.fetchval(f"SELECT count(*) FROM {t[0]}")) for t in tables]
        sequences = [
            (name, value, called)
            for (name,) in await conn.fetch(
                "SELECT format('%I', sequencename) FROM pg_sequences WHERE schemaname = 'public'"
            )
            for value, called in [await conn.fetchrow(f"SELECT last_value, is_called FROM {name}")]
        ]
        return await conn.fetchval(FINGERPRINT), sorted(counts), sorted(sequences)
    finally:
        await conn.close()


async def test_a_used_database_comes_back_as_a_fresh_clone_under_a_new_name(
    pg_server: TestServer, supply: DatabaseSupply
) -> None:
    first = await supply.take()
    fresh = await _state(url_with_database(pg_server.url, first))
    async with Database.connect(url_with_database(pg_server.url, first)) as db:
        store = db.event_store()
        for _ in range(3):
            await store.append_many(
                uuid.uuid4(), [StepStarted(step_id="a", step_index=0, attempt=1)], expected_version=0
            )
        records = db.workflow_records()
        await records.create_run(workflow_id="w", workflow_name="n", workflow_type="t", input={})
    lingering = await asyncpg.connect(url_with_database(pg_server.url, first))  # left behind by a test
    used = await _state(url_with_database(pg_server.url, first))
    assert used != fresh  # the test really wrote rows and moved a sequence

    await supply.give_back(first)
    second = await supply.take()

    assert second != first
    assert not await _exists(pg_server, first)
    assert lingering.is_closed() or not await _usable(lingering)
    assert await _state(url_with_database(pg_server.url, second)) == fresh
    conn = await asyncpg.connect(url_with_database(pg_server.url, second))
    try:  # nothing left for autovacuum to pick up under the next test
        assert (
            await conn.fetchval(
                "SELECT coalesce(sum(n_mod_since_analyze + n_dead_tup), 0) FROM pg_stat_user_tables"
            )
            == 0
        )
    finally:
        await conn.close()
    await supply.give_back(second)


async def test_a_database_serves_at_most_max_reuses_tests(
    pg_server: TestServer, supply: DatabaseSupply
) -> None:
    names = []
    for _ in range(MAX_REUSES):
        name = await supply.take()
        names.append(name)
        await supply.give_back(name)
    assert len(set(names)) == MAX_REUSES  # a new name each time
    assert not supply.spare  # dropped after the last
    assert not await _exists(pg_server, names[-1])


async def _usable(conn: asyncpg.Connection) -> bool:
    try:
        await conn.fetchval("SELECT 1")
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
        return False
    return True


@pytest.mark.parametrize(
    "change",
    [
        "ALTER TABLE workflow_runs ADD COLUMN extra int",
        "CREATE INDEX extra_idx ON event_log (ts)",
        "ALTER TABLE work_queue SET (autovacuum_enabled = false)",
        "ALTER TABLE workflow_runs DISABLE TRIGGER workflow_runs_updated_at",
        "CREATE FUNCTION extra() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "ANALYZE event_log",
        "VACUUM workflow_runs",
    ],
)
async def test_a_database_changed_beyond_its_rows_is_dropped(
    pg_server: TestServer, supply: DatabaseSupply, change: str
) -> None:
    name = await supply.take()
    conn = await asyncpg.connect(url_with_database(pg_server.url, name))
    try:
        await conn.execute(change)
    finally:
        await conn.close()

    await supply.give_back(name)

    assert not await _exists(pg_server, name)
    assert not supply.spare  # the next test gets a new clone


async def test_a_database_that_held_many_rows_is_dropped(
    pg_server: TestServer, supply: DatabaseSupply
) -> None:
    name = await supply.take()
    conn = await asyncpg.connect(url_with_database(pg_server.url, name))
    try:
        await conn.execute(
            "INSERT INTO workflow_runs (id, workflow_id, workflow_name, workflow_type, status, input) "
            "SELECT gen_random_uuid(), 'w', 'n', 't', 'PENDING', '{}' FROM generate_series(1, $1::int)",
            REUSE_ROWS + 1,
        )
    finally:
        await conn.close()

    await supply.give_back(name)

    assert not await _exists(pg_server, name)
    assert not supply.spare
