"""Worker processes killed with SIGKILL while flows wait for signals and signals are in flight:
every signal is delivered exactly once and every flow completes with the in-memory fingerprint."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from chem_persistence_async import Database, FlowEngine, FlowRepository, InMemoryBackend, QueueDepth
from tests.worker.signal_flows import APPROVAL

ROOT = Path(__file__).resolve().parents[2]


def _spawn_worker(db_url: str, n: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DATABASE_URL": db_url, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "chem_persistence_async.cli",
            "worker",
            "tests.worker.signal_flows:APPROVAL",
            "--concurrency",
            "4",
            "--lease",
            "2",
            "--poll-interval",
            "0.2",
            "--max-retries",
            "50",
            "--retry-delay",
            "0.01",
            "--worker-id",
            f"chaos-{n}",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def _reference(order: int, approval: Any) -> str | None:
    backend = InMemoryBackend()
    engine = FlowEngine(backend.event_store(), FlowRepository(), APPROVAL, queue=backend.work_queue())
    flow = await engine.start(inputs={"order": order})
    await engine.signal(flow, "approve", approval)
    await engine.run_to_end(flow)
    return await engine.flow_fingerprint(flow)


async def _chaos(db_url: str, flows_n: int, workers_n: int, deadline_s: float) -> None:
    rng = random.Random(20261128)
    async with Database.connect(db_url, min_connections=0) as db:
        engine = FlowEngine(db.event_store(), FlowRepository(), APPROVAL, queue=db.work_queue())
        flows = [await engine.submit(inputs={"order": n}) for n in range(flows_n)]
        send_ids = {flow: f"approve-{n}" for n, flow in enumerate(flows)}
        procs = [_spawn_worker(db_url, n) for n in range(workers_n)]
        kills = 0
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline_s
        unsent = list(flows)
        rng.shuffle(unsent)
        try:
            while True:
                # Signals go out a few at a time, while flows start, run and wait.
                for flow in unsent[:3]:
                    await engine.signal(flow, "approve", {"order": flows.index(flow)}, send_id=send_ids[flow])
                    if rng.random() < 0.3:  # and sometimes once more, with the same send id
                        await engine.signal(
                            flow, "approve", {"order": flows.index(flow)}, send_id=send_ids[flow]
                        )
                del unsent[:3]
                if rng.random() < 0.25:  # a worker dies, and another takes its place
                    victim = rng.randrange(len(procs))
                    procs[victim].send_signal(signal.SIGKILL)
                    procs[victim].wait(10)
                    kills += 1
                    procs[victim] = _spawn_worker(db_url, len(procs) + kills)
                states = [await engine.load(f) for f in flows]
                if not unsent and all(s.completed for s in states):
                    break
                assert loop.time() < end, (
                    f"{sum(not s.completed for s in states)} flows left after {kills} kills"
                )
                await asyncio.sleep(0.1)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    _, err = proc.communicate(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    _, err = proc.communicate()
                assert b"Traceback" not in (err or b""), err.decode(errors="replace")[-3000:]
        assert kills > 0
        for n, flow in enumerate(flows):
            instance = await engine.load(flow)
            assert [s.send_id for s in instance.received] == [send_ids[flow]]  # delivered once
            codes = await engine.event_codes(flow)
            assert codes.count("S") == codes.count("F") + codes.count("X") + codes.count("W")
            assert instance.fingerprint == await _reference(n, {"order": n})
        assert await db.work_queue().depth() == QueueDepth()


async def test_signals_survive_workers_killed_with_sigkill(db_url: str) -> None:
    await _chaos(db_url, flows_n=12, workers_n=2, deadline_s=120)


@pytest.mark.slow
async def test_signals_survive_workers_killed_with_sigkill_many_flows(
    db_url: str, conn: asyncpg.Connection
) -> None:
    await _chaos(db_url, flows_n=150, workers_n=4, deadline_s=300)
    assert await conn.fetchval("SELECT count(*) FROM work_queue") == 0
    histories = await conn.fetch(
        "SELECT kind, state, count(*) FROM work_queue_history GROUP BY kind, state ORDER BY kind, state"
    )
    assert {(r[0], r[1]) for r in histories} <= {("flow", "completed"), ("signal", "completed")}
