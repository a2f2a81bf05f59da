"""What suspended flows cost a worker (issue 14): run one ``chem-persist worker`` process, suspend
1,000 then 10,000 flows on it (each waits for a signal), and read the worker's resident memory at
each point once it is idle. A suspended flow should cost the worker nothing: no job, no task, no
timer; what grows is bounded (the artifact cache).

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres python benchmarks/suspended_flows.py [N ...]

The points default to 1,000 and 10,000 suspended flows; give others (ascending) as arguments.

It creates a database of its own and drops it afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import psutil

from chem_persistence_async import Database, FlowEngine, FlowRepository

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.worker.signal_flows import APPROVAL  # noqa: E402


async def _suspended(conn: asyncpg.Connection) -> int:
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM (SELECT flow_id FROM event_log GROUP BY flow_id"
            " HAVING bool_or(event_type = 'stepsuspended')) AS s"
        )
    )


async def _idle_rss(proc: psutil.Process, conn: asyncpg.Connection, target: int) -> float:
    while await _suspended(conn) < target or await conn.fetchval("SELECT count(*) FROM work_queue"):
        await asyncio.sleep(0.5)
    await asyncio.sleep(2)  # let the worker settle (its loop is idle, polling)
    return proc.memory_info().rss / 2**20


async def main() -> None:
    base = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"chem_suspended_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(base)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = urlunsplit(urlsplit(base)._replace(path="/" + name))
    worker: subprocess.Popen[bytes] | None = None
    try:
        async with Database.connect(url) as db:
            engine = FlowEngine(db.event_store(), FlowRepository(), APPROVAL, queue=db.work_queue())
            worker = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "chem_persistence_async.cli",
                    "worker",
                    "tests.worker.signal_flows:APPROVAL",
                    "--concurrency",
                    "16",
                    "--poll-interval",
                    "1",
                ],
                cwd=ROOT,
                env={**os.environ, "DATABASE_URL": url, "PYTHONPATH": str(ROOT)},
                stderr=subprocess.DEVNULL,
            )
            proc = psutil.Process(worker.pid)
            conn = await asyncpg.connect(url)
            figures: dict[str, float] = {}
            started = time.perf_counter()
            targets = [int(a) for a in sys.argv[1:]] or [1_000, 10_000]
            for target in targets:
                done = await _suspended(conn)
                for n in range(done, target):
                    await engine.submit(inputs={"order": n})
                figures[f"rss_mib_at_{target}"] = round(await _idle_rss(proc, conn, target), 1)
            first, last = targets[0], targets[-1]
            figures[f"growth_mib_{first}_to_{last}"] = round(
                figures[f"rss_mib_at_{last}"] - figures[f"rss_mib_at_{first}"], 1
            )
            figures["seconds"] = round(time.perf_counter() - started, 1)
            figures["jobs_in_queue"] = int(await conn.fetchval("SELECT count(*) FROM work_queue"))
            await conn.close()
            print(json.dumps(figures, indent=2))
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            worker.wait(60)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
