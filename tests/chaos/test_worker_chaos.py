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
* the runs and stages the workers keep in their appends (their default; the flows are submitted
  with records too) are exact: each run completed at its flow's last version, and every row equals
  its rebuild from the log (``check_records``);
* no job was left behind or lost: ``work_queue`` is empty and ``work_queue_history`` holds exactly
  one job per flow, ``completed`` (none ``dead``, none ``cancelled``, none twice);
* no worker printed anything but its start and stop lines and the warning that closes a lost attempt
  (no traceback, no failed job, no ``ErrorRecordMismatchError``), and each stops gracefully (0)
  at the end.

Bounds per step, as in ``test_engine_chaos`` (``tests.chaos.checks``): the transient failures a
step with p = 0.3 may see in a row, plus the lost attempts the kills can explain (a killed worker
held at most ``concurrency`` jobs, each with at most one attempt in progress; a server restart at
most as many per worker), each set so that a correct library fails a run at most once in 10,000.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import sys
import time
import uuid
from collections.abc import Awaitable
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from chem_persistence_async import Database, FlowEngine, FlowRepository, Status, rebuild_records
from tests.chaos.checks import Tally, assert_within, bounds, check_flows, describe
from tests.support.chaos import (
    ProcessGang,
    assert_clean_stderr,
    assert_only_expected_stderr,
    stop_gracefully,
    subprocess_env,
    unfinished,
    wait_for,
)
from tests.support.faults import PrivateServer
from tests.worker.flows import CHAOS

CONCURRENCY = 4
LEASE = 2.0
RESTART_AFTER_KILLS = 3
GRACEFUL = "SIGTERM or Ctrl-C stops it gracefully"
"""What a worker prints once it runs (and handles SIGTERM). Only such a worker is killed, one
holding jobs rather than an idle one when there is one: kills that hit nothing prove nothing."""
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


async def check_records(db: Database, flows: list[uuid.UUID]) -> None:
    """The workers kept runs and stages (their default) in their appends through every kill: each
    run completed at its flow's last version, and every row equals its rebuild from the log."""
    store, records = db.event_store(), db.workflow_records()

    async def rows() -> list[Any]:
        return [
            (
                replace(await records.get_run(fid), updated_at=None),
                [replace(st, updated_at=None) for st in await records.get_stages_by_run(fid)],
            )
            for fid in flows
        ]

    kept = await rows()
    for fid, (run, _) in zip(flows, kept, strict=True):
        assert (run.status, run.flow_version) == (Status.COMPLETED, await store.flow_version(fid))
    report = await rebuild_records(store, records, definitions=[CHAOS], flow_ids=flows)
    assert report.rebuilt == len(flows)
    assert await rows() == kept


async def _count(db: Database, sql: str) -> int:
    async def fetch(conn: asyncpg.Connection) -> int:
        return int(await conn.fetchval(sql))

    return await db.run(fetch)  # (retried: the server may have just restarted)


async def _completed(db: Database) -> int:
    return await _count(db, "SELECT count(*) FROM event_log WHERE event_type = 'flowcompleted'")


async def _busy(db: Database) -> set[int]:
    """The pids of the workers holding jobs now (a worker id is ``host:pid:suffix``)."""

    async def fetch(conn: asyncpg.Connection) -> list[str]:
        return [
            r[0]
            for r in await conn.fetch("SELECT DISTINCT worker_id FROM work_queue WHERE state = 'claimed'")
        ]

    return {int(worker.split(":")[-2]) for worker in await db.run(fetch) if worker.count(":") >= 2}


async def _explain(db: Database) -> str:
    async with db.acquire() as conn:
        return await unfinished(conn)


async def _restart(server: PrivateServer, db: Database, gang: ProcessGang) -> float:
    """Restart the server under the running workers (none of them starting up: one would find no
    server to open and exit), then wait until each worker listens again; returns how long that took."""
    await wait_for(lambda: gang.all_say(GRACEFUL), 60, "every worker to be up", every=0.1)
    began = time.monotonic()
    await asyncio.to_thread(server.stop, "fast")
    await asyncio.to_thread(server.start)
    listening = "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE '%:listen'"
    await wait_for(
        lambda: _equals(_count(db, listening), len(gang.members)), 60, "every worker's listener to reconnect"
    )
    return time.monotonic() - began


async def _equals(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


async def _worker_chaos(
    db: Database,
    url: str,
    tmp_path: Path,
    *,
    flows: int,
    workers: int,
    kills: int,
    kill_every: tuple[float, float],
    deadline: float,
    server: PrivateServer | None = None,
) -> tuple[Tally, ProcessGang, float]:
    """Submit ``flows``, run them on ``workers`` processes killed ``kills`` times at random; with
    ``server``, restart it after ``RESTART_AFTER_KILLS`` kills."""
    engine = FlowEngine(
        db.event_store(), FlowRepository(), CHAOS, queue=db.work_queue(), records=db.workflow_records()
    )
    submitted = {await engine.submit(inputs={"start": n}): n for n in range(flows)}
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    gang = ProcessGang(
        lambda _i: worker_argv(url, poll_interval=0.25), workers, env=worker_env(), log_dir=tmp_path
    )
    restarted: float | None = None
    began = time.monotonic()
    gang.start_all()
    try:
        while gang.kills < kills and await _completed(db) < flows:
            if server is not None and restarted is None and gang.kills >= RESTART_AFTER_KILLS:
                restarted = await _restart(server, db, gang)
            await asyncio.sleep(rng.uniform(*kill_every))
            gang.check_no_failure()
            gang.kill_and_restart(rng, ready=GRACEFUL, busy=await _busy(db))

        async def all_done() -> bool:
            gang.check_no_failure()
            return await _completed(db) == flows

        await wait_for(
            all_done, deadline, f"every flow to complete (seed {seed})", explain=lambda: _explain(db)
        )
        elapsed = time.monotonic() - began
        await stop_gracefully(gang, GRACEFUL, "worker")  # (nothing is held any more)
    finally:
        gang.kill_all()
    if server is None:
        assert_only_expected_stderr(gang, EXPECTED_STDERR)
    else:  # the restart makes them warn and print tracebacks of failed commits: all but these
        assert_clean_stderr(
            gang, forbidden=("ErrorRecordMismatchError", "ConcurrencyConflict", "can never run")
        )
        assert restarted is not None, "every flow was done before the server restarted"
    async with db.acquire() as conn:
        tally = await check_flows(conn, engine, submitted, total_added=14)
        await check_queue(conn, set(submitted))
    await check_records(db, list(submitted))
    print(
        f"\n[worker chaos] {flows} flows, {workers} workers: {elapsed:.1f}s, {gang.starts} starts, "
        f"{gang.kills} SIGKILLs"
        + ("" if restarted is None else f", a server restart (listening again after {restarted:.1f}s)")
        + f"; {describe(tally, seed=seed)}"
    )
    # Each kill loses at most what the worker held; the restart at most what every worker held.
    kill_events = gang.kills + (0 if server is None else workers)
    limit = bounds(tally, p=float(CHAOS.steps[1].params["p"]), kills=kill_events, per_kill=CONCURRENCY)
    print(f"(bounds: {limit})")
    assert_within(tally, limit, kills=kill_events, per_kill=CONCURRENCY, seed=seed)
    return tally, gang, elapsed


async def test_workers_killed_at_random_run_every_flow_once(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    tally, gang, _ = await _worker_chaos(
        db, db_url, tmp_path, flows=100, workers=3, kills=8, kill_every=(0.1, 0.5), deadline=120
    )
    assert gang.kills >= 3, "every flow was done before the test killed anything: make it longer"
    assert tally.lost >= 1, "no kill ever hit an attempt in progress: the test proved nothing"


@pytest.mark.slow
async def test_a_few_hundred_flows_on_workers_killed_at_random(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    tally, gang, _ = await _worker_chaos(
        db, db_url, tmp_path, flows=300, workers=4, kills=30, kill_every=(0.1, 0.5), deadline=150
    )
    assert gang.kills >= 10
    assert tally.lost >= 1


@pytest.mark.slow
async def test_workers_killed_at_random_across_a_server_restart(
    private_server: PrivateServer, tmp_path: Path
) -> None:
    """The same with a PostgreSQL restart in the middle: each worker's listener reconnects (every
    worker listens again on the restarted server), the commits the restart broke come back, and
    every flow completes once."""
    async with Database.connect(private_server.url, min_connections=1, max_connections=4) as db:
        tally, gang, _ = await _worker_chaos(
            db,
            private_server.url,
            tmp_path,
            flows=200,
            workers=3,
            kills=15,
            kill_every=(0.2, 0.8),
            deadline=120,
            server=private_server,
        )
    assert gang.kills > RESTART_AFTER_KILLS, "no worker was killed after the restart"
    assert tally.lost >= 1
