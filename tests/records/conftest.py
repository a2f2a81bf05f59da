"""Fixtures of the records tests: the records and the AI-call log, once per backend.

The contract suites on PostgreSQL share one migrated database per module and empty the records'
tables before each test (far cheaper than a fresh clone per test; the event log, which refuses
TRUNCATE, is not used by them).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from chem_persistence_async import (
    AICallLogger,
    Database,
    InMemoryAICallLogger,
    InMemoryWorkflowRecords,
    WorkflowRecords,
)
from tests.conftest import TEMPLATE, create_database, drop_database
from tests.support.servers import TestServer, url_with_database

_TABLES = "workflow_runs, workflow_stages, workflow_logs, workflow_artifacts, ai_calls, ai_call_batches"


@pytest.fixture(scope="module")
async def shared_db(pg_server: TestServer, template_url: str) -> AsyncIterator[Database]:
    name = await create_database(pg_server, TEMPLATE)
    database = await Database.open(
        url_with_database(pg_server.url, name), min_connections=1, max_connections=4
    )
    yield database
    await database.close()
    await drop_database(pg_server, name)


@pytest.fixture
def shared_or_none(backend: str, request: pytest.FixtureRequest) -> Database | None:
    return request.getfixturevalue("shared_db") if backend == "postgres" else None


@pytest.fixture
async def records_db(shared_or_none: Database | None) -> Database | None:
    """The module's shared database with empty records tables (postgres), or None (memory)."""
    if shared_or_none is not None:
        async with shared_or_none.acquire() as conn:
            await conn.execute(f"TRUNCATE {_TABLES}")
    return shared_or_none


@pytest.fixture
def records(records_db: Database | None) -> Any:
    """The records contract, run once per backend."""
    return InMemoryWorkflowRecords() if records_db is None else WorkflowRecords(records_db)


@pytest.fixture
def make_records(records_db: Database | None) -> Any:
    """Build records of this test's backend with options (``max_payload_bytes``)."""

    def build(**options: Any) -> Any:
        if records_db is None:
            return InMemoryWorkflowRecords(**options)
        return WorkflowRecords(records_db, **options)

    return build


@pytest.fixture
async def ai_log(records_db: Database | None) -> AsyncIterator[Any]:
    """The AI-call log contract, run once per backend (closed at the end)."""
    logger: Any
    if records_db is None:
        logger = InMemoryAICallLogger()
    else:
        logger = AICallLogger(records_db, batch_size=100, flush_interval=0.05)
    yield logger
    await logger.close()
