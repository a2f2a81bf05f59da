"""Many workers (issue 12, SPEC 8.6): ``chem-persist worker`` processes, run as a user runs them,
killed with SIGKILL at random and restarted until every submitted flow is done.

The flows (``tests.worker.flows:CHAOS``: its middle step fails transiently with p = 0.3) are
submitted with ``engine.submit``; each worker runs several at once with a short job lease, so a
killed worker's jobs come back to the others by the claim itself once their lease ran out, and
their attempts in progress are closed as lost. Afterwards, read from the database:

* every flow completed, with the in-memory run's fingerprint and result;
* each step's outcome was committed once (one ``StepFinished`` per step), every ``StepStarted`` has
  exactly one outcome before its step's next one, and each failure has exactly one error row (and
  each row one failure);
* no job was left behind or lost: ``work_queue`` is empty and ``work_queue_history`` holds exactly
  one job per flow, ``completed`` (none ``dead``, none ``cancelled``, none twice);
* no worker printed anything but its start and stop lines and the warning that closes a lost attempt
  (no traceback, no failed job, no ``ErrorRecordMismatchError``), and each stops gracefully (0)
  at the end.

Bounds per step, as in ``test_engine_chaos``: at most ``MAX_TRANSIENT`` = 8 transient failures
(0.3**9 = 2e-5 per flow) and ``MAX_LOST`` = 4 lost attempts. An attempt is lost only when its
worker is killed while it runs; a flow's steps run on one worker for a few tens of milliseconds
at a time and a kill comes every 0.3-1.2 s (0.1-0.5 s in the slow run) to one of 3-4 workers, so
each time a flow runs it is hit with probability about 0.05 (at most about 0.2), and 5 hits on one
step are out of reach (under 1e-3 per flow even at 0.2). So at most 1 + 8 + 4 = 13 attempts; over
the run, exactly: lost attempts <= kills x concurrency (a killed worker held at most
``concurrency`` jobs, each with at most one attempt in progress).
"""

from __future__ import annotations

import asyncio
import random
import shutil
import signal
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import pytest

from chem_persistence_async import Database, FlowEngine, FlowRepository
from tests.chaos.checks import Tally, check_flows, describe
from tests.support.chaos import (
    ProcessGang,
    assert_only_expected_stderr,
    subprocess_env,
    unfinished,
    wait_for,
)
from tests.worker.flows import CHAOS

MAX_TRANSIENT = 8
MAX_LOST = 4
CONCURRENCY = 4
LEASE = 2.0
GRACEFUL = "SIGTERM or Ctrl-C stops it gracefully"
EXPECTED_STDERR = (
    r"^worker \S+ on .*: flaky3; SIGTERM or Ctrl-C stops it gracefully$",
    r"^worker \S+ stopped: \d+ completed, \d+ suspended, 0 failed, 0 released$",
    r"^flow \S+: step \w+ attempt \d+ was lost \(no outcome by its lease\); closing it$",
)


def chem_persist() -> str:
    executable = shutil.which("chem-persist", path=str(Path(sys.executable).parent))
    assert executable, "the chem-persist entry point is not installed"
    return executable


def worker_argv(url: str, *, poll_interval: float, lease: float = LEASE) -> list[str]:
    return [
        chem_persist(),
        "--url",
        url,
        "worker",
        "tests.worker.flows:CHAOS",
        f"--concurrency={CONCURRENCY}",
        "--max-retries=30",
        "--retry-delay=0.01",
        "--max-retry-delay=0.1",
        f"--lease={lease}",
        f"--poll-interval={poll_interval}",
    ]


def worker_env() -> dict[str, str]:
    return subprocess_env(
        CHEM_TEST_FLAKY_P=str(CHAOS.steps[1].params["p"]),  # the definition (and its hash) we submit
        DATABASE_MIN_CONNECTIONS="1",
        DATABASE_MAX_CONNECTIONS=str(CONCURRENCY),
    )


async def check_queue(conn: asyncpg.Connection, flows: set[uuid.UUID]) -> None:
    """No job left behind (the hot table is empty) or lost (one completed job per flow)."""
    assert await conn.fetchval("SELECT count(*) FROM work_queue") == 0, "jobs left in work_queue"
    history = await conn.fetch("SELECT flow_id, kind, state FROM work_queue_history")
    assert sorted((r["state"], r["kind"]) for r in history) == [("completed", "flow")] * len(flows)
    assert {r["flow_id"] for r in history} == flows


async def _completed(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM event_log WHERE event_type = 'flowcompleted'"))


async def _worker_chaos(
    db: Database,
    conn: asyncpg.Connection,
    db_url: str,
    tmp_path: Path,
    *,
    flows: int,
    workers: int,
    kills: int,
    kill_every: tuple[float, float],
    deadline: float,
) -> tuple[Tally, ProcessGang, float]:
    engine = FlowEngine(db.event_store(), FlowRepository(), CHAOS, queue=db.work_queue())
    submitted = {await engine.submit(inputs={"start": n}): n for n in range(flows)}
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    gang = ProcessGang(
        lambda _i: worker_argv(db_url, poll_interval=0.25), workers, env=worker_env(), log_dir=tmp_path
    )
    began = time.monotonic()
    gang.start_all()
    try:
        while gang.kills < kills and await _completed(conn) < flows:
            await asyncio.sleep(rng.uniform(*kill_every))
            gang.check_no_failure()
            gang.kill_and_restart(rng)

        async def all_done() -> bool:
            gang.check_no_failure()
            return await _completed(conn) == flows

        await wait_for(
            all_done, deadline, f"every flow to complete (seed {seed})", explain=lambda: unfinished(conn)
        )
        elapsed = time.monotonic() - began
        # A graceful stop (nothing is held any more), once each worker handles SIGTERM: one
        # restarted a moment ago may still be importing, and would die of the signal instead.
        await wait_for(lambda: gang.all_say(GRACEFUL), 60, "every worker to be up", every=0.1)
        gang.signal_all(signal.SIGTERM)

        async def stopped() -> str:
            return f"exit statuses: {gang.returncodes()}"

        await wait_for(lambda: gang.finished() == workers, 60, "every worker to stop", explain=stopped)
    finally:
        gang.kill_all()
    assert_only_expected_stderr(gang, EXPECTED_STDERR)
    tally = await check_flows(conn, engine, submitted, total_added=14)
    await check_queue(conn, set(submitted))
    print(
        f"\n[worker chaos] {flows} flows, {workers} workers: {elapsed:.1f}s, {gang.starts} starts, "
        f"{gang.kills} SIGKILLs; {describe(tally, seed=seed)}"
    )
    assert tally.lost <= gang.kills * CONCURRENCY, describe(tally, seed=seed)
    assert tally.most_transient <= MAX_TRANSIENT, describe(tally, seed=seed)
    assert tally.most_lost <= MAX_LOST, describe(tally, seed=seed)
    assert tally.most_attempts <= 1 + MAX_TRANSIENT + MAX_LOST, describe(tally, seed=seed)
    assert tally.interrupted == tally.other_failures == 0, describe(tally, seed=seed)
    return tally, gang, elapsed


async def test_workers_killed_at_random_run_every_flow_once(
    db: Database, conn: asyncpg.Connection, db_url: str, tmp_path: Path
) -> None:
    tally, gang, _ = await _worker_chaos(
        db, conn, db_url, tmp_path, flows=60, workers=3, kills=8, kill_every=(0.3, 1.2), deadline=120
    )
    assert gang.kills >= 3, "every flow was done before the test killed anything: make it longer"
    assert tally.lost >= 1, "no kill ever hit an attempt in progress: the test proved nothing"


@pytest.mark.slow
async def test_a_few_hundred_flows_on_workers_killed_at_random(
    db: Database, conn: asyncpg.Connection, db_url: str, tmp_path: Path
) -> None:
    tally, gang, _ = await _worker_chaos(
        db, conn, db_url, tmp_path, flows=300, workers=4, kills=60, kill_every=(0.1, 0.5), deadline=150
    )
    assert gang.kills >= 10
    assert tally.lost >= 1
