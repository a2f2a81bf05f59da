"""Worker processes for the whole-flow and wake-up benchmarks, started as a user starts them.

``chem-persist worker MODULE:ATTR`` in a subprocess each (``python -m chem_persistence_async.cli``,
the installed entry point's code), stopped with SIGTERM (its graceful stop). A worker is ready once
its LISTEN connection is up, which ``pg_stat_activity`` shows: the suite waits for that before it
starts a clock, so no sample counts a process starting up.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from chem_persistence_async._bench.runner import BenchmarkError

LISTENING = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND backend_type = 'client backend' AND query LIKE 'LISTEN %'
"""
"""Connections of this database whose last statement was a LISTEN (a worker's listener)."""


@dataclass
class Processes:
    """Subprocesses and the files that hold their stderr (read when one fails)."""

    procs: list[asyncio.subprocess.Process] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def tail(self, lines: int = 15) -> str:
        out = []
        for path in self.logs:
            with contextlib.suppress(OSError):
                text = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
                out.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(out)

    def check_alive(self) -> None:
        for proc in self.procs:
            if proc.returncode is not None:
                raise BenchmarkError(f"a worker process exited with {proc.returncode}:\n{self.tail()}")


async def spawn(
    argv_list: Sequence[Sequence[str]], *, stdout_pipe: bool = False, env: dict[str, str] | None = None
) -> Processes:
    """Start one subprocess per argv, stderr to a temporary file each; ``env`` added to ours."""
    started = Processes()
    for argv in argv_list:
        fd, name = tempfile.mkstemp(prefix="chem-bench-worker-", suffix=".log")
        started.logs.append(Path(name))
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE if stdout_pipe else asyncio.subprocess.DEVNULL,
                stderr=fd,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            )
        finally:
            os.close(fd)
        started.procs.append(proc)
    return started


def worker_argv(
    url: str,
    target: str,
    *,
    queue: str,
    concurrency: int,
    poll_interval: float,
    listen: bool = True,
    records: bool = True,
) -> list[str]:
    """``chem-persist --url URL worker TARGET …`` as a user types it."""
    argv = [sys.executable, "-m", "chem_persistence_async.cli", "--url", url, "worker", target]
    argv += ["--queue", queue, "--concurrency", str(concurrency), "--poll-interval", str(poll_interval)]
    argv += ["--grace", "10"]
    if not listen:
        argv.append("--no-listen")
    if not records:
        argv.append("--no-records")
    return argv


MAX_POOL = 10
"""The most connections a benchmark's worker process opens: flows in flight share them (a group
commit takes one for many), and the DBOS peer's workers have as many (``sys_db_pool_size``)."""


async def start_workers(
    conn: asyncpg.Connection,
    url: str,
    target: str,
    count: int,
    *,
    queue: str,
    concurrency: int,
    poll_interval: float,
    records: bool = True,
    timeout: float = 120.0,
) -> Processes:
    """``count`` worker processes, returned once every one of them listens. Each one's pool holds
    ``concurrency + 2`` connections (``DATABASE_MAX_CONNECTIONS``), at most ``MAX_POOL``: four
    processes with the default 16 each, next to the suite's own pools, came close to a shared
    server's ``max_connections``."""
    argv = worker_argv(
        url, target, queue=queue, concurrency=concurrency, poll_interval=poll_interval, records=records
    )
    pool = min(concurrency + 2, MAX_POOL)
    workers = await spawn([argv] * count, env={"DATABASE_MAX_CONNECTIONS": str(pool)})
    try:
        await wait_listening(conn, count, workers, timeout)
    except BaseException:
        await stop(workers)
        raise
    return workers


async def wait_listening(conn: asyncpg.Connection, count: int, workers: Processes, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while await conn.fetchval(LISTENING) < count:
        workers.check_alive()
        if loop.time() > deadline:
            raise BenchmarkError(f"{count} worker process(es) not listening after {timeout:.0f} s")
        await asyncio.sleep(0.05)


async def stop(workers: Processes, timeout: float = 60.0) -> None:
    """SIGTERM (a graceful stop), then SIGKILL whatever is still running after ``timeout``."""
    for proc in workers.procs:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
    for proc in workers.procs:
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    for path in workers.logs:
        with contextlib.suppress(OSError):
            path.unlink()
