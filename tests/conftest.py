"""Database fixtures: one server per session, one migrated template, a database per test that is
a clone of it or indistinguishable from one.

Cloning a template (``CREATE DATABASE ... TEMPLATE``) is far faster than migrating each time, and
every test gets a database nobody else writes to; a database a test left with nothing but rows
changed is emptied and handed to the next test instead of dropped (``tests.support.databases``).
"""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from chem_persistence_async import Database
from chem_persistence_async.ports.ai_calls import AICallLoggerPort
from chem_persistence_async.ports.backend import Backend
from chem_persistence_async.ports.event_store import AsyncEventStore
from chem_persistence_async.ports.records import WorkflowRecordsPort
from chem_persistence_async.ports.work_queue import WorkQueuePort
from tests.support.databases import DatabaseSupply, create_database, drop_database
from tests.support.harness import HARNESSES, Harness
from tests.support.servers import (
    TestServer,
    describe_backend,
    pick_backend,
    running_postmaster,
    url_with_database,
)

pytest_plugins = ["tests.support.faults"]
"""Fixtures of the support package (``private_server``) for every test module."""

TEMPLATE = f"chem_tmpl_{os.getpid()}"


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestServer]:
    server = TestServer(tmp_path_factory.mktemp("pgserver"))
    yield server
    server.stop()


def pytest_report_header(config: pytest.Config) -> str:
    return f"chem-persistence-async test database: {describe_backend(pick_backend())}"


async def _admin(server: TestServer) -> asyncpg.Connection:
    return await asyncpg.connect(server.url)


@pytest.fixture(scope="session")
async def template_url(pg_server: TestServer) -> AsyncIterator[str]:
    admin = await _admin(pg_server)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{TEMPLATE}"')
        url = url_with_database(pg_server.url, TEMPLATE)
        db = await Database.open(url, min_connections=0)
        await db.close()
        yield url
        await admin.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
async def database_supply(pg_server: TestServer, template_url: str) -> AsyncIterator[DatabaseSupply]:
    supply = DatabaseSupply(pg_server, TEMPLATE)
    yield supply
    await supply.close()


@pytest.fixture
async def db_url(pg_server: TestServer, database_supply: DatabaseSupply) -> AsyncIterator[str]:
    """A migrated database of this test's own, as fresh as a clone of the template."""
    name = await database_supply.take()
    yield url_with_database(pg_server.url, name)
    await database_supply.give_back(name)


@pytest.fixture
async def empty_db_url(pg_server: TestServer) -> AsyncIterator[str]:
    """A fresh database with no schema at all (for migration tests)."""
    name = await create_database(pg_server, None)
    yield url_with_database(pg_server.url, name)
    await drop_database(pg_server, name)


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = await Database.open(db_url, min_connections=1, max_connections=8)
    yield database
    await database.close()


@pytest.fixture
async def conn(db_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A raw asyncpg connection to the test's database (for checking what was really written)."""
    connection = await asyncpg.connect(db_url)
    yield connection
    await connection.close()


@pytest.fixture(params=HARNESSES, ids=[h.name for h in HARNESSES])
def harness(request: pytest.FixtureRequest) -> Harness:
    """One backend, as the contract suites see it: every contract test runs once per harness."""
    harness_class: type[Harness] = request.param
    return harness_class.build(request)


@pytest.fixture
def store(harness: Harness) -> AsyncEventStore:
    """The event store contract, run once per backend."""
    return harness.store


@pytest.fixture
def make_store(harness: Harness) -> Any:
    """Build another store of this backend with options (``store_artifacts``, ``max_payload_bytes``)."""
    return harness.event_store


@pytest.fixture
def queue(harness: Harness) -> WorkQueuePort:
    """The work queue contract, run once per backend."""
    return harness.work_queue()


@pytest.fixture
def records(harness: Harness) -> WorkflowRecordsPort:
    """The workflow records contract, run once per backend."""
    return harness.records()


@pytest.fixture
def make_records(harness: Harness) -> Any:
    """Build other records of this backend with options (``max_payload_bytes``)."""
    return harness.records


@pytest.fixture
async def ai_log(harness: Harness) -> AsyncIterator[AICallLoggerPort]:
    """The AI-call log contract, run once per backend (closed at the end)."""
    logger = harness.ai_log(batch_size=100, flush_interval=0.05)
    yield logger
    await logger.close()


@pytest.fixture
def backend(harness: Harness) -> Backend:
    """The whole backend (what a ``Worker`` takes), once per backend."""
    return harness.backend()


@pytest.fixture
def tmp_data_dir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def embedded_pgdata() -> Iterator[Path]:
    """A data directory for an embedded server of the test's own, outside pytest's temporary root.

    Run as root, pgserver runs the server as another user and opens the directory's parents to it;
    another pytest session starting meanwhile (a subprocess, a colleague's run) resets pytest's
    root to mode 0700 and the server can no longer reach its files. Whatever the test leaves
    running is stopped here.
    """
    base = Path(tempfile.mkdtemp(prefix="chem-embedded-"))
    yield base / "pgdata"
    postmaster = running_postmaster(base / "pgdata")
    if postmaster is not None:
        postmaster.terminate()
        postmaster.wait(30)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def collections() -> Iterator[list[int]]:
    """The generations of the collections that start while the test runs, with a threshold low
    enough that any burst of allocation would set one off."""
    started_gens: list[int] = []

    def note(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started_gens.append(info["generation"])

    threshold = gc.get_threshold()
    gc.set_threshold(10, 2, 2)
    gc.callbacks.append(note)
    try:
        yield started_gens
    finally:
        gc.callbacks.remove(note)
        gc.set_threshold(*threshold)
