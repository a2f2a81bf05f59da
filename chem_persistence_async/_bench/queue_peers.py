"""The queue's peers (the ``peer`` extra, not in CI): PgQueuer and DBOS Transact on the same server.

* **PgQueuer**, in a schema of its own (``pgq_bench_<random>``, dropped at the end) of the benchmark
  database, reached through ``search_path``; its benchmark's shape (``tools/benchmark.py`` in its
  repository): one enqueuer writing batches of 10, five ``PgQueuer`` consumers, each on an asyncpg
  connection of its own, dequeuing batches of 10; an async entrypoint that only counts. Its clock
  stops when the last job's entrypoint ran, as its tool counts (its acknowledgements are buffered
  and written afterwards).
* **DBOS Transact**, in a system database of its own on the same server (``dbos_bench_<random>``,
  dropped at the end): ``dbos_worker`` processes run the three no-op steps as a queued workflow;
  this process enqueues with ``DBOSClient`` and waits until every workflow succeeded.

Without a package the peer's rows are left out and the results say why.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any
from uuid import uuid4

import asyncpg

from chem_persistence_async._bench import processes
from chem_persistence_async._bench.runner import BenchmarkError, Timed

try:
    import pgqueuer as _pgqueuer
except ImportError:  # the 'peer' extra is not installed
    PGQUEUER: Any = None
else:
    PGQUEUER = _pgqueuer

PGQUEUER_SKIPPED = "pgqueuer is not installed (pip install '.[peer]')"
DBOS_SKIPPED = "dbos is not installed (pip install '.[peer]')"
ENTRYPOINT = "asyncfetch"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def dbos_installed() -> bool:
    return _version("dbos") is not None


# --- PgQueuer -------------------------------------------------------------------------------------


@dataclass
class PgQueuerRun:
    """Five consumers started and listening; the sample's clock starts with the enqueuer."""

    conns: list[asyncpg.Connection]
    managers: list[Any]
    tasks: list[asyncio.Task[None]]
    target: int
    done: int = 0
    last: float = 0.0
    finished: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class PgQueuerPeer:
    url: str
    schema: str

    @classmethod
    async def open(cls, url: str) -> PgQueuerPeer:
        """Its schema, and its tables, types, trigger and function installed there by its own
        ``Queries.install``."""
        schema = f"pgq_bench_{uuid4().hex[:8]}"
        admin = await asyncpg.connect(url)
        try:
            await admin.execute(f'CREATE SCHEMA "{schema}"')
        finally:
            await admin.close()
        peer = cls(url, schema)
        try:
            conn = await peer.connect()
            try:
                await PGQUEUER.Queries(PGQUEUER.AsyncpgDriver(conn)).install()
            finally:
                await conn.close()
        except BaseException:
            await peer.close()
            raise
        return peer

    async def connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.url, server_settings={"search_path": self.schema})

    async def close(self) -> None:
        admin = await asyncpg.connect(self.url)
        try:
            await admin.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        finally:
            await admin.close()

    async def start(
        self, target: int, *, consumers: int = 5, batch: int = 10, settle: float = 1.0
    ) -> PgQueuerRun:
        """``consumers`` PgQueuer instances running ``batch``-sized dequeues, given ``settle``
        seconds (untimed) to check their tables and LISTEN."""
        conns = [await self.connect() for _ in range(consumers)]
        run = PgQueuerRun(conns=conns, managers=[], tasks=[], target=target)
        loop = asyncio.get_running_loop()

        async def count(job: Any) -> None:
            run.done += 1
            if run.done == run.target:
                run.last = loop.time()
                run.finished.set()

        for conn in conns:
            manager = PGQUEUER.PgQueuer(PGQUEUER.AsyncpgDriver(conn))
            manager.entrypoint(ENTRYPOINT)(count)
            run.managers.append(manager)
            run.tasks.append(loop.create_task(manager.run(batch_size=batch)))
        await asyncio.sleep(settle)
        for task in run.tasks:
            if task.done():
                await self.stop(run)
                raise BenchmarkError(f"a PgQueuer consumer stopped at once: {task.exception()!r}")
        return run

    async def produce(self, run: PgQueuerRun, *, batch: int = 10) -> Timed:
        """One enqueuer, ``batch`` jobs per ``Queries.enqueue``, until the target; timed until the
        target's last job ran."""
        conn = await self.connect()
        try:
            queries = PGQUEUER.Queries(PGQUEUER.AsyncpgDriver(conn))
            loop = asyncio.get_running_loop()
            entrypoints = [ENTRYPOINT] * batch
            priorities = [0] * batch
            start = loop.time()
            for low in range(0, run.target, batch):
                size = min(batch, run.target - low)
                payloads: list[bytes | None] = [str(low + i).encode() for i in range(size)]
                await queries.enqueue(entrypoints[:size], payloads, priorities[:size])
            await asyncio.wait_for(run.finished.wait(), 600)
            return Timed(run.done, run.last - start)
        finally:
            await conn.close()

    async def stop(self, run: PgQueuerRun) -> None:
        for manager in run.managers:
            manager.shutdown.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*run.tasks, return_exceptions=True), 30)
        for conn in run.conns:
            await conn.close()
        conn = await self.connect()
        try:
            await PGQUEUER.Queries(PGQUEUER.AsyncpgDriver(conn)).clear_queue()
        finally:
            await conn.close()


async def open_pgqueuer(url: str) -> PgQueuerPeer | None:
    return None if PGQUEUER is None else await PgQueuerPeer.open(url)


def pgqueuer_status() -> dict[str, Any]:
    if PGQUEUER is None:
        return {"name": "pgqueuer", "available": False, "skipped": PGQUEUER_SKIPPED}
    return {
        "name": "pgqueuer",
        "available": True,
        "version": _version("pgqueuer"),
        "shape": "1 enqueuer (batches of 10), 5 consumers (PgQueuer.run(batch_size=10)), async entrypoint",
    }


# --- DBOS Transact --------------------------------------------------------------------------------

DBOS_WORKER = "chem_persistence_async._bench.dbos_worker"

PENDING = """
SELECT count(*) FILTER (WHERE status = 'SUCCESS'), count(*) FILTER (WHERE status NOT IN
    ('SUCCESS', 'ENQUEUED', 'PENDING', 'DELAYED'))
FROM dbos.workflow_status WHERE queue_name = $1
"""


@dataclass
class DbosPeer:
    """DBOS's system database on the benchmark server, migrated once."""

    server_url: str
    url: str
    name: str
    client: Any = None

    async def enqueue_and_wait(self, queue: str, count: int) -> Timed:
        """Enqueue ``count`` workflows (``DBOSClient`` in a thread, as a sync user does) and wait
        until all of them succeeded; timed from the first enqueue to the poll that saw the last."""
        conn = await asyncpg.connect(self.url)
        try:
            loop = asyncio.get_running_loop()
            start = time.perf_counter()
            enqueued = loop.run_in_executor(None, self._enqueue, queue, count)
            while True:
                succeeded, failed = await conn.fetchrow(PENDING, queue)
                if failed:
                    raise BenchmarkError(f"DBOS: {failed} workflow(s) of queue {queue} failed")
                if succeeded >= count:
                    break
                if enqueued.done() and enqueued.exception() is not None:
                    raise BenchmarkError(f"DBOS: enqueue failed: {enqueued.exception()!r}")
                await asyncio.sleep(0.005)
            seconds = time.perf_counter() - start
            await enqueued
            return Timed(int(succeeded), seconds)
        finally:
            await conn.close()

    def _enqueue(self, queue: str, count: int) -> None:
        options = {"queue_name": queue, "workflow_name": "noop3"}
        for n in range(count):
            self.client.enqueue(options, n)

    async def start_workers(self, count: int, queue: str, poll: float) -> processes.Processes:
        argv = [sys.executable, "-m", DBOS_WORKER, "work", self.url, queue, str(poll)]
        workers = await processes.spawn([argv] * count, stdout_pipe=True)
        try:
            for proc in workers.procs:
                assert proc.stdout is not None
                line = await asyncio.wait_for(proc.stdout.readline(), 120)
                if line.strip() != b"ready":
                    raise BenchmarkError(f"a DBOS worker did not start:\n{workers.tail()}")
        except BaseException:
            await processes.stop(workers)
            raise
        return workers

    async def close(self) -> None:
        if self.client is not None:
            client, self.client = self.client, None
            await asyncio.to_thread(client.destroy)
        admin = await asyncpg.connect(self.server_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        finally:
            await admin.close()


async def open_dbos(server_url: str, url_for: Any) -> tuple[DbosPeer | None, dict[str, Any]]:
    """DBOS's system database, migrated by one ``dbos_worker migrate``; ``(None, why)`` when DBOS
    is not installed or cannot run here (the reason is the migration's own error)."""
    if not dbos_installed():
        return None, {"name": "dbos", "available": False, "skipped": DBOS_SKIPPED}
    name = f"dbos_bench_{uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    peer = DbosPeer(server_url, url_for(name), name)
    try:
        migrate = await processes.spawn([[sys.executable, "-m", DBOS_WORKER, "migrate", peer.url]])
        code = await asyncio.wait_for(migrate.procs[0].wait(), 300)
        if code != 0:
            why = f"its system database could not be set up (exit {code}):\n{migrate.tail(8)}"
            await processes.stop(migrate)
            await peer.close()
            return None, {"name": "dbos", "available": False, "skipped": why}
        await processes.stop(migrate)

        from dbos import DBOSClient

        peer.client = await asyncio.to_thread(lambda: DBOSClient(system_database_url=peer.url))
    except BaseException:
        await peer.close()
        raise
    status = {
        "name": "dbos",
        "available": True,
        "version": _version("dbos"),
        "system_database": "a database of its own on the same server",
        "shape": (
            "3 no-op @DBOS.step in a @DBOS.workflow, enqueued with DBOSClient, run by dbos_worker processes"
        ),
    }
    return peer, status
