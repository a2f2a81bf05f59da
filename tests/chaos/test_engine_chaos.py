"""Concurrent engines (issue 10): several processes run ``run_to_end`` over the same flows, killed
with SIGKILL at random and restarted, until every flow completed.

Each process (``tests.chaos.engine_runner``) runs every flow, in an order of its own, a few at a
time, with a short attempt lease: a killed process's attempts in progress are lost, and whoever
comes next closes them (a runtime ``StepFailed`` ``attempt lost`` and a retry) once their lease ran
out. Afterwards, read from the database: every flow completed with the in-memory fingerprint; every
``StepStarted`` has exactly one outcome before its step's next ``StepStarted`` (none superseded, no
lost attempt left open); each failure has one error row and each row one failure; no process ever
printed a traceback (an ``ErrorRecordMismatchError`` from a load that read events and error rows
apart, a conflict ``run_to_end`` did not resolve) or exited by itself with an error.

Bounds (``tests.chaos.checks``): per step, at most the transient failures a flaky step with p = 0.3
may see in a row, plus the lost attempts the kills can explain (a kill loses at most one attempt
per task of the process), each set so that a correct library fails a run at most once in 10,000;
about 17 attempts for the quick run. Before attempt leases, a step of such a test ran 397 times.

With no kills at all (two processes racing on the same flows), no attempt is ever lost or
superseded: each step's attempts are exactly 1 + its transient failures.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from pathlib import Path

import asyncpg
import pytest

from chem_persistence_async import Database, FlowEngine, FlowRepository, PgEventStore
from tests.chaos.checks import Tally, assert_within, bounds, check_flows, describe
from tests.chaos.engine_runner import READY
from tests.chaos.flows import chaos_definition
from tests.support.chaos import ProcessGang, assert_clean_stderr, subprocess_env, unfinished, wait_for

P = 0.3
SLEEP = 0.2
"""Seconds each step takes: long enough that kills land in the middle of the work."""
MAX_RETRIES = 30
"""Far beyond the bounds below: no flow may fail for good."""
TASKS = 2
LOST_CLOSED = "was lost (no outcome by its lease); closing it"
"""The engine's warning when it closes a lost attempt: expected under kills."""


async def _run(
    db: Database,
    conn: asyncpg.Connection,
    db_url: str,
    tmp_path: Path,
    *,
    flows: int,
    processes: int,
    kills: int,
    lease: float,
    sleep: float = SLEEP,
    kill_every: tuple[float, float] = (0.2, 0.8),
    deadline: float = 120,
) -> tuple[Tally, ProcessGang, float]:
    definition = chaos_definition(P, sleep)
    engine = FlowEngine(PgEventStore(db), FlowRepository(), definition)
    started = {await engine.start(inputs={"start": n}): n for n in range(flows)}
    flows_file = tmp_path / "flows.json"
    flows_file.write_text(json.dumps([str(f) for f in started]))
    seed = random.randrange(2**32)
    rng = random.Random(seed)

    def argv(_index: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "tests.chaos.engine_runner",
            f"--url={db_url}",
            f"--flows={flows_file}",
            f"--p={P}",
            f"--sleep={sleep}",
            f"--lease={lease}",
            f"--max-retries={MAX_RETRIES}",
            f"--tasks={TASKS}",
        ]

    gang = ProcessGang(argv, processes, env=subprocess_env(), log_dir=tmp_path)
    began = time.monotonic()
    gang.start_all()
    try:
        # A process exits 0 only once every flow is done: until then, kill one now and then.
        while gang.finished() == 0 and gang.kills < kills:
            await asyncio.sleep(rng.uniform(*kill_every))
            gang.check_no_failure()
            if gang.finished() == 0:
                gang.kill_and_restart(rng, ready=READY)

        def all_exited() -> bool:
            gang.check_no_failure()
            return gang.finished() == processes

        await wait_for(
            all_exited,
            deadline,
            f"every process to run every flow to its end (seed {seed})",
            every=0.1,
            explain=lambda: unfinished(conn),
        )
    finally:
        gang.kill_all()
    elapsed = time.monotonic() - began
    assert_clean_stderr(gang, allowed=[LOST_CLOSED] if kills else [])
    tally = await check_flows(conn, engine, started, total_added=14)
    limit = bounds(tally, p=P, kills=gang.kills, per_kill=TASKS)
    assert_within(tally, limit, kills=gang.kills, per_kill=TASKS, seed=seed)
    print(f"(bounds: {limit})")
    return tally, gang, elapsed


def _report(name: str, tally: Tally, gang: ProcessGang, elapsed: float) -> None:
    print(
        f"\n[{name}] {elapsed:.1f}s, {gang.starts} process starts, {gang.kills} SIGKILLs; {describe(tally)}"
    )


async def _engine_chaos(
    db: Database,
    conn: asyncpg.Connection,
    db_url: str,
    tmp_path: Path,
    *,
    flows: int,
    kills: int,
    kill_every: tuple[float, float],
    name: str,
) -> None:
    tally, gang, elapsed = await _run(
        db, conn, db_url, tmp_path, flows=flows, processes=4, kills=kills, lease=2.0, kill_every=kill_every
    )
    _report(name, tally, gang, elapsed)
    assert gang.kills >= 3, "the flows were done before the test killed anything: make it longer"
    assert tally.lost >= 1, "no kill ever hit an attempt in progress: the test proved nothing"


async def test_engines_killed_at_random_complete_every_flow_with_one_outcome_per_attempt(
    db: Database, conn: asyncpg.Connection, db_url: str, tmp_path: Path
) -> None:
    await _engine_chaos(
        db, conn, db_url, tmp_path, flows=40, kills=8, kill_every=(0.2, 0.8), name="engine chaos"
    )


@pytest.mark.slow
async def test_engines_killed_at_random_many_times_over_many_flows(
    db: Database, conn: asyncpg.Connection, db_url: str, tmp_path: Path
) -> None:
    await _engine_chaos(
        db, conn, db_url, tmp_path, flows=80, kills=20, kill_every=(0.1, 0.5), name="engine chaos, long"
    )


async def test_two_engines_racing_on_the_same_flows_never_supersede_an_attempt(
    db: Database, conn: asyncpg.Connection, db_url: str, tmp_path: Path
) -> None:
    """No kill at all: two processes on the same flows never start an attempt while another's is in
    progress, so nothing is lost and each step's attempts are exactly 1 + its transient failures."""
    tally, gang, elapsed = await _run(
        db, conn, db_url, tmp_path, flows=40, processes=2, kills=0, lease=30.0, sleep=0.05, deadline=90
    )
    _report("two engines racing", tally, gang, elapsed)
    assert gang.starts == 2
    assert tally.lost == tally.interrupted == tally.other_failures == 0, describe(tally)
    assert tally.attempts == 3 * tally.flows + tally.transient
