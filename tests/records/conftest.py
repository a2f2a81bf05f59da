"""Fixtures of the records tests: the records and the AI-call log, once per backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from chem_persistence_async import (
    AICallLogger,
    InMemoryAICallLogger,
    InMemoryWorkflowRecords,
    WorkflowRecords,
)


@pytest.fixture
def records(backend: str, request: pytest.FixtureRequest) -> Any:
    """The records contract, run once per backend."""
    if backend == "memory":
        return InMemoryWorkflowRecords()
    return WorkflowRecords(request.getfixturevalue("db"))


@pytest.fixture
def make_records(backend: str, request: pytest.FixtureRequest) -> Any:
    """Build records of this test's backend with options (``max_payload_bytes``)."""
    database = request.getfixturevalue("db") if backend == "postgres" else None

    def build(**options: Any) -> Any:
        return (
            InMemoryWorkflowRecords(**options) if database is None else WorkflowRecords(database, **options)
        )

    return build


@pytest.fixture
def database_or_none(backend: str, request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue("db") if backend == "postgres" else None


@pytest.fixture
async def ai_log(database_or_none: Any) -> AsyncIterator[Any]:
    """The AI-call log contract, run once per backend (closed at the end)."""
    logger: Any
    if database_or_none is None:
        logger = InMemoryAICallLogger()
    else:
        logger = AICallLogger(database_or_none, batch_size=100, flush_interval=0.05)
    yield logger
    await logger.close()
