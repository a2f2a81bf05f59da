"""A peer for the benchmarks: the ``eventsourcing`` package's PostgreSQL recorder doing the same work.

Optional (the ``peer`` extra: ``pip install '.[peer]'``): without ``eventsourcing`` the suite runs
without these rows and reports the peer as skipped. Everything that touches ``eventsourcing`` lives
here.

The peer runs against the same server and the same throw-away database as the rest of the suite, in
a schema of its own (``es_bench_<random>``, dropped at the end) where its recorder creates its own
table (``es_bench_events``), composite type and index. ``eventsourcing`` is synchronous: each timed
sample runs in a worker thread and is timed there (``Timed``), so the event loop's hand-off is not
counted. What is timed matches the raw baselines: encoding each event (``json.dumps``, as raw does)
and building the ``StoredEvent`` s, then ``insert_events``; ``select_events`` then ``json.loads`` of
each state; ``repository.get`` (select, decode to domain events, apply them to the aggregate).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any
from uuid import UUID, uuid4

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from chem_persistence_async._bench.runner import BenchmarkError, Timed

try:
    from eventsourcing.application import Application
    from eventsourcing.domain import Aggregate, event
    from eventsourcing.persistence import StoredEvent
    from eventsourcing.utils import Environment
except ImportError:  # the 'peer' extra is not installed
    AVAILABLE = False
else:
    AVAILABLE = True

NAME = "eventsourcing"
APPLICATION_NAME = "es_bench"
TABLE = f"{APPLICATION_NAME}_events"
"""The recorder's table: ``<application name>_events``."""
SKIPPED = "eventsourcing is not installed (pip install '.[peer]')"
SEED_BATCH = 10_000
"""Events per ``Application.save`` while seeding the read aggregate (untimed)."""


def installed_version() -> str | None:
    try:
        return metadata.version(NAME)
    except metadata.PackageNotFoundError:
        return None


def status() -> dict[str, Any]:
    """What the results say about the peer: its version, or why it was skipped."""
    if not AVAILABLE:
        return {"name": NAME, "available": False, "skipped": SKIPPED}
    return {
        "name": NAME,
        "available": True,
        "version": installed_version(),
        "recorder": "eventsourcing.postgres.PostgresApplicationRecorder (psycopg 3)",
        "table": TABLE,
    }


def _state(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode()


if AVAILABLE:

    class BenchFlow(Aggregate):
        """The peer's side of the read flow: step events with the fields of the library's."""

        def __init__(self, name: str) -> None:
            self.name = name
            self.started = 0
            self.finished = 0
            self.last_step = -1

        @event("StepStarted")
        def step_started(self, step_index: int, step_id: str, attempt: int) -> None:
            self.started += 1
            self.last_step = step_index

        @event("StepFinished")
        def step_finished(self, step_index: int, step_id: str, outputs: list[str], fingerprint: str) -> None:
            self.finished += 1
            self.last_step = step_index

    class BenchApplication(Application[UUID]):
        name = APPLICATION_NAME

        def construct_env(self, name: str, env: Any = None) -> Environment:
            # Only the settings given here, not the process environment (no stray POSTGRES_*).
            return Environment(name, dict(env or {}))


@dataclass
class Peer:
    """An ``eventsourcing`` application on the benchmark database, and the timed work it does."""

    app: Any
    """The ``BenchApplication`` (typed ``Any``: ``eventsourcing`` is optional)."""
    conninfo: dict[str, Any]
    schema: str
    read_id: UUID | None = None
    read_events: int = 0

    @classmethod
    async def open(cls, url: str) -> Peer:
        """Create the peer's schema, its application, and (through its recorder) its table."""
        if not AVAILABLE:
            raise RuntimeError(SKIPPED)
        conninfo = conninfo_to_dict(url)
        schema = f"es_bench_{uuid4().hex[:8]}"
        return await asyncio.to_thread(cls._open, conninfo, schema)

    @classmethod
    def _open(cls, conninfo: dict[str, Any], schema: str) -> Peer:
        with psycopg.connect(**conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        env = {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": str(conninfo.get("dbname") or conninfo.get("user") or "postgres"),
            "POSTGRES_HOST": str(conninfo.get("host") or "localhost"),
            "POSTGRES_PORT": str(conninfo.get("port") or 5432),
            "POSTGRES_USER": str(conninfo.get("user") or "postgres"),
            "POSTGRES_PASSWORD": str(conninfo.get("password") or ""),
            "POSTGRES_SCHEMA": schema,
            "POSTGRES_POOL_SIZE": "1",
            "POSTGRES_MAX_OVERFLOW": "0",
        }
        try:
            app = BenchApplication(env=env)
        except BaseException:
            cls._drop_schema(conninfo, schema)
            raise
        return cls(app=app, conninfo=conninfo, schema=schema)

    async def close(self) -> None:
        """Close the application's pool and drop the peer's schema (table, type, function)."""
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        try:
            self.app.close()
        finally:
            self._drop_schema(self.conninfo, self.schema)

    @staticmethod
    def _drop_schema(conninfo: dict[str, Any], schema: str) -> None:
        with psycopg.connect(**conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))

    # --- untimed setup ---------------------------------------------------------------------------

    async def seed_read_aggregate(self, events: int, progress: Callable[[str], None] | None = None) -> None:
        """A ``BenchFlow`` of ``events`` events (created, then ``StepStarted`` / ``StepFinished``
        pairs like the library's read flow), saved in batches of ``SEED_BATCH``; then VACUUM ANALYZE."""
        await asyncio.to_thread(self._seed, events, progress)

    def _seed(self, events: int, progress: Callable[[str], None] | None) -> None:
        flow = BenchFlow(name="bench-read")
        for g in range(2, events + 1):
            i = g // 2 - 1
            step, attempt = i % 10, 1 + i // 10
            if g % 2 == 0:
                flow.step_started(step_index=step, step_id=f"s{step}", attempt=attempt)
            else:
                outputs = [f"{g:064x}"]
                flow.step_finished(
                    step_index=step, step_id=f"s{step}", outputs=outputs, fingerprint=f"{g * 7919:064x}"
                )
            if g % SEED_BATCH == 0:
                self.app.save(flow)
                if progress is not None:
                    progress(f"peer: seeded {g:,} / {events:,} events of aggregate {str(flow.id)[:8]}")
        self.app.save(flow)
        if flow.version != events:
            raise BenchmarkError(f"peer: seeded {flow.version} events, expected {events}")
        with psycopg.connect(**self.conninfo, autocommit=True) as conn:
            conn.execute(
                sql.SQL("VACUUM ANALYZE {}.{}").format(sql.Identifier(self.schema), sql.Identifier(TABLE))
            )
        self.read_id, self.read_events = flow.id, events

    # --- timed work (each in a worker thread, timed there) ----------------------------------------

    async def insert_one_per_call(self, flow_id: UUID, events: Sequence[dict[str, Any]]) -> Timed:
        """``insert_events`` of one stored event per call, one after the other."""
        return await asyncio.to_thread(self._insert_one_per_call, flow_id, events)

    def _insert_one_per_call(self, flow_id: UUID, events: Sequence[dict[str, Any]]) -> Timed:
        recorder = self.app.recorder
        start = time.perf_counter()
        for version, ev in enumerate(events, 1):
            stored = StoredEvent(
                originator_id=flow_id, originator_version=version, topic=_topic(ev), state=_state(ev)
            )
            recorder.insert_events([stored])
        return Timed(len(events), time.perf_counter() - start)

    async def insert_batches(self, flow_id: UUID, batches: Sequence[Sequence[dict[str, Any]]]) -> Timed:
        """``insert_events`` of a whole batch (one transaction) per call."""
        return await asyncio.to_thread(self._insert_batches, flow_id, batches)

    def _insert_batches(self, flow_id: UUID, batches: Sequence[Sequence[dict[str, Any]]]) -> Timed:
        recorder = self.app.recorder
        start = time.perf_counter()
        version = 1
        for batch in batches:
            stored = [
                StoredEvent(
                    originator_id=flow_id, originator_version=version + i, topic=_topic(ev), state=_state(ev)
                )
                for i, ev in enumerate(batch)
            ]
            recorder.insert_events(stored)
            version += len(batch)
        return Timed(version - 1, time.perf_counter() - start)

    async def select_decode(self) -> Timed:
        """``select_events`` of the read aggregate, then ``json.loads`` of each state."""
        return await asyncio.to_thread(self._select_decode)

    def _select_decode(self) -> Timed:
        read_id = self._read_id()
        recorder = self.app.recorder
        start = time.perf_counter()
        states = [json.loads(stored.state) for stored in recorder.select_events(read_id)]
        return Timed(len(states), time.perf_counter() - start)

    async def repository_get(self) -> Timed:
        """``repository.get`` of the read aggregate (no snapshots, no cache: every event replayed)."""
        return await asyncio.to_thread(self._repository_get)

    def _repository_get(self) -> Timed:
        read_id = self._read_id()
        repository = self.app.repository
        start = time.perf_counter()
        flow = repository.get(read_id)
        seconds = time.perf_counter() - start
        if flow.version != self.read_events:
            raise BenchmarkError(
                f"peer: repository.get reached version {flow.version}, expected {self.read_events}"
            )
        return Timed(flow.version, seconds)

    def _read_id(self) -> UUID:
        if self.read_id is None:
            raise BenchmarkError("peer: the read aggregate was not seeded")
        return self.read_id


def _topic(event: dict[str, Any]) -> str:
    return f"bench:{event['event_type']}"


async def open_peer(url: str) -> Peer | None:
    """The peer on the database of ``url``, or ``None`` when ``eventsourcing`` is not installed."""
    if not AVAILABLE:
        return None
    return await Peer.open(url)
