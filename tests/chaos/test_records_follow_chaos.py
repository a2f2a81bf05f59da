"""Records kept by a subscription (SPEC 8.5, 9.1): ``chem-persist records follow`` processes, run as a
user runs them, killed with SIGKILL at random (most often inside a batch's transaction) and
restarted while engines keep appending flows.

Two followers share one subscription name, so one holds the checkpoint while the other waits on
it, and a kill hands the log to the survivor. Afterwards, read from the database:

* the subscription's checkpoint is at the end of the log (nothing was skipped, and a batch a kill
  cut short was read again);
* every flow has exactly one run, completed at its flow's last version, and every run and stage equals its
  rebuild from the log (``rebuild_records`` changes nothing);
* no follower printed anything but its start line, and each stops gracefully (0) at the end.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from pathlib import Path
from typing import Any

from chem_persistence_async import (
    Database,
    FlowEngine,
    FlowRepository,
    RetryPolicy,
    Subscriptions,
    WorkflowRecords,
)
from tests.chaos.test_worker_chaos import check_records, chem_persist
from tests.support.chaos import (
    ProcessGang,
    assert_only_expected_stderr,
    stop_gracefully,
    subprocess_env,
    wait_for,
)
from tests.worker.flows import CHAOS

NAME = "chaos-records"
FOLLOWERS = 2
READY = "SIGTERM or Ctrl-C stops it"
EXPECTED_STDERR = (rf"^following .* as '{NAME}' from \S+; {READY}$",)


def follower_argv(url: str, index: int) -> list[str]:
    """A follower whose connections carry its index as their application name, so that the server
    tells which one is inside a batch (``env`` execs: the pid is the follower's)."""
    return [
        "env",
        f"DATABASE_APPLICATION_NAME=records-follow-{index}",
        chem_persist(),
        "--url",
        url,
        "records",
        "follow",
        "tests.worker.flows:CHAOS",
        f"--name={NAME}",
        "--poll=0.02",
        "--batch=25",
    ]


async def _in_batch(db: Database, gang: ProcessGang) -> set[int]:
    """The pids of the followers inside a batch now: a transaction open and not waiting for the
    checkpoint's lock (the other follower of the name waits there while one works), on a pool
    connection (a follower starting up also has its ``records-follow-N:migrate`` one)."""

    async def fetch(conn: Any) -> list[str]:
        rows = await conn.fetch(
            "SELECT application_name FROM pg_stat_activity"
            " WHERE application_name ~ '^records-follow-[0-9]+$' AND xact_start IS NOT NULL"
            " AND wait_event_type IS DISTINCT FROM 'Lock'"
        )
        return [r[0] for r in rows]

    indexes = {int(name.rsplit("-", 1)[1]) for name in await db.run(fetch)}
    return {m.process.pid for m in gang.members if m.index in indexes and m.process is not None}


async def _caught_up(db: Database) -> bool:
    position = await Subscriptions(db).position(NAME)
    return position is not None and not await db.event_store().read_all(position, limit=1)


async def test_followers_killed_at_random_keep_every_record_exact(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    engine = FlowEngine(
        db.event_store(), FlowRepository(), CHAOS, retry_policy=RetryPolicy(max_retries=30, initial_delay=0.0)
    )
    flows: list[uuid.UUID] = []
    appending = asyncio.Event()
    appending.set()

    async def keep_running_flows(start: int) -> None:
        n = start
        while appending.is_set():
            flows.append(await engine.run_to_end(inputs={"start": n}))
            n += 100_000

    seed = random.randrange(2**32)
    rng = random.Random(seed)
    env = subprocess_env(CHEM_TEST_FLAKY_P=str(CHAOS.steps[1].params["p"]), DATABASE_MAX_CONNECTIONS="2")
    gang = ProcessGang(lambda i: follower_argv(db_url, i), FOLLOWERS, env=env, log_dir=tmp_path)
    runners = [asyncio.create_task(keep_running_flows(i)) for i in range(3)]
    hits = 0
    gang.start_all()
    try:
        while gang.kills < 8:
            await asyncio.sleep(rng.uniform(0.1, 0.4))
            gang.check_no_failure()
            busy = await _in_batch(db, gang)
            pids = {m.index: m.process.pid for m in gang.members if m.process is not None}
            victim = gang.kill_and_restart(rng, ready=READY, busy=busy)
            hits += victim is not None and pids[victim.index] in busy
        appending.clear()
        await asyncio.gather(*runners)

        async def caught_up() -> bool:
            gang.check_no_failure()
            return await _caught_up(db)

        await wait_for(caught_up, 60, f"the followers to reach the end of the log (seed {seed})")
        await stop_gracefully(gang, READY, "follower")
    finally:
        appending.clear()
        await asyncio.gather(*runners, return_exceptions=True)
        gang.kill_all()
    assert_only_expected_stderr(gang, EXPECTED_STDERR)
    print(
        f"\n[records follow chaos] {len(flows)} flows, {gang.kills} SIGKILLs, {hits} inside a batch (seed {seed})"
    )
    assert hits >= 1, f"no kill landed inside a batch: the test proved nothing (seed {seed})"
    runs = await WorkflowRecords(db).list_runs(limit=len(flows) + 10)
    assert {run.id for run in runs} == set(flows), "a flow has no run, or a run has no flow"
    await check_records(db, flows)  # each completed at its last version, each row its rebuild
