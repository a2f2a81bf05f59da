"""Harnesses: one class per backend, through which the contract suites reach it.

A contract test takes the ports (``store``, ``queue``, ``backend``) and never asks which backend
it runs on; what only some backends can do is a *capability* (``harness.require("sql")``), so a
new backend (SQLite) joins every suite by adding one harness class here.

Capabilities:
* ``sql``: rows can be read or written behind the library's back (a raw connection);
* ``database``: a ``Database`` that can be closed and reopened;
* ``notify``: wake-ups cross processes (LISTEN/NOTIFY);
* ``shared``: the stores ``event_store()`` builds share one database (in memory each is its own).
"""

from __future__ import annotations

from typing import Any, ClassVar

import asyncpg
import pytest

from chem_persistence_async import (
    AICallLogger,
    Database,
    InMemoryAICallLogger,
    InMemoryBackend,
    InMemoryEventStore,
    InMemoryWorkflowRecords,
    PgEventStore,
    WorkflowRecords,
)
from chem_persistence_async.ports.ai_calls import AICallLoggerPort
from chem_persistence_async.ports.backend import Backend
from chem_persistence_async.ports.event_store import AsyncEventStore
from chem_persistence_async.ports.records import WorkflowRecordsPort
from chem_persistence_async.ports.work_queue import WorkQueuePort

Counts = tuple[int, int, int]
"""``(events, artifacts, error rows)``."""


class Harness:
    name: ClassVar[str]
    capabilities: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    @classmethod
    def build(cls, request: pytest.FixtureRequest) -> Harness:
        raise NotImplementedError

    def backend(self) -> Backend:
        return self._backend

    @property
    def store(self) -> AsyncEventStore:
        """The backend's event store (the one its workers use)."""
        return self._backend.event_store()

    def event_store(self, **options: Any) -> AsyncEventStore:
        """Another event store on the same backend, with options (``max_payload_bytes``, ...)."""
        raise NotImplementedError

    def work_queue(self) -> WorkQueuePort:
        return self._backend.work_queue()

    def records(self, **options: Any) -> WorkflowRecordsPort:
        """Workflow records of this backend: its shared ones, or new ones with options
        (``max_payload_bytes``)."""
        return self._backend.workflow_records() if not options else self._new_records(**options)

    def _new_records(self, **options: Any) -> WorkflowRecordsPort:
        raise NotImplementedError

    def ai_log(self, **options: Any) -> AICallLoggerPort:
        """A new AI-call log on this backend (``batch_size``, ``flush_interval`` where it buffers)."""
        raise NotImplementedError

    async def counts(self, store: AsyncEventStore) -> Counts:
        """What ``store``'s backend holds in all: to check that refused input wrote nothing."""
        raise NotImplementedError

    def has(self, capability: str) -> bool:
        return capability in self.capabilities

    def require(self, capability: str) -> None:
        if capability not in self.capabilities:
            pytest.skip(f"needs the {capability!r} capability, which the {self.name} backend has not")


class MemoryHarness(Harness):
    name = "memory"

    @classmethod
    def build(cls, request: pytest.FixtureRequest) -> Harness:
        return cls(InMemoryBackend())

    def event_store(self, **options: Any) -> AsyncEventStore:
        return InMemoryEventStore(**options)

    def _new_records(self, **options: Any) -> WorkflowRecordsPort:
        return InMemoryWorkflowRecords(**options)

    def ai_log(self, **options: Any) -> AICallLoggerPort:
        # No buffer in memory: a call is stored when it is logged, so only the size limit applies.
        return InMemoryAICallLogger(**{k: v for k, v in options.items() if k == "max_call_bytes"})

    async def counts(self, store: AsyncEventStore) -> Counts:
        # The reference store has no "count everything" API: its state is read directly.
        assert isinstance(store, InMemoryEventStore)
        return (store._seq, len(store._artifacts), len(store._errors))


class PostgresHarness(Harness):
    name = "postgres"
    capabilities = frozenset({"sql", "database", "notify", "shared"})

    def __init__(self, db: Database, conn: asyncpg.Connection, url: str) -> None:
        super().__init__(db)
        self.db = db
        self.conn = conn
        """A raw connection to the same database, for reading what was really written."""
        self.url = url

    @classmethod
    def build(cls, request: pytest.FixtureRequest) -> Harness:
        return cls(
            request.getfixturevalue("db"), request.getfixturevalue("conn"), request.getfixturevalue("db_url")
        )

    def event_store(self, **options: Any) -> AsyncEventStore:
        return PgEventStore(self.db, **options)

    def _new_records(self, **options: Any) -> WorkflowRecordsPort:
        return WorkflowRecords(self.db, **options)

    def ai_log(self, **options: Any) -> AICallLoggerPort:
        return AICallLogger(self.db, **options)

    async def counts(self, store: AsyncEventStore) -> Counts:
        row = await self.conn.fetchrow(
            "SELECT (SELECT count(*) FROM event_log), (SELECT count(*) FROM workflow_step_artifacts),"
            " (SELECT count(*) FROM step_execution_errors)"
        )
        assert row is not None
        return (row[0], row[1], row[2])


HARNESSES: list[type[Harness]] = [MemoryHarness, PostgresHarness]
