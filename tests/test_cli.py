"""chem-persist, run as a user runs it: a separate process, through the installed entry point."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import psutil
import pytest

from chem_persistence_async import Database, FlowEngine, PgEventStore, PgFlowRepository, RetryPolicy
from tests.engine.flows import flaky_definition

ROOT = Path(__file__).resolve().parents[1]


def chem_persist(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    executable = shutil.which("chem-persist", path=str(Path(sys.executable).parent))
    assert executable, "the chem-persist entry point is not installed"
    return subprocess.run(
        [executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env or dict(os.environ),
    )


def test_migrate_applies_then_reports_up_to_date(empty_db_url: str) -> None:
    first = chem_persist("--url", empty_db_url, "migrate")
    assert first.returncode == 0, first.stderr
    assert "applied 0001_event_log, 0002_workflow_step_artifacts, 0003_step_execution_errors" in first.stdout
    second = chem_persist("--url", empty_db_url, "migrate")
    assert second.returncode == 0, second.stderr
    assert "schema up to date" in second.stdout


async def test_demo_prints_id_variants_and_fingerprint(db_url: str) -> None:
    result = chem_persist("--url", db_url, "demo")
    assert result.returncode == 0, result.stderr
    flow_id = re.search(r"flow_id:\s+(\S+)", result.stdout)
    fingerprint = re.search(r"fingerprint:\s+([0-9a-f]{64})\b", result.stdout)
    assert flow_id
    assert fingerprint
    assert re.search(r"variants:\s+I,S,F,C\s*$", result.stdout, re.M)
    async with Database.connect(db_url) as db:
        store = PgEventStore(db)
        events = await store.list(flow_id.group(1))
        assert [e.code for e in events] == ["I"] + ["S", "F"] * 4 + ["C"]
        assert events[-1].kind.flow_fingerprint == fingerprint.group(1)


async def test_timeline_prints_every_failed_attempt(db_url: str) -> None:
    async with Database.connect(db_url) as db:
        engine = FlowEngine(
            PgEventStore(db),
            PgFlowRepository(),
            flaky_definition(2),
            retry_policy=RetryPolicy(initial_delay=0.0),
        )
        flow_id = await engine.run_to_end()
    result = chem_persist("--url", db_url, "timeline", str(flow_id))
    assert result.returncode == 0, result.stderr
    lines = [line.split() for line in result.stdout.splitlines()]
    attempts = [
        (cols[1], cols[2], cols[3], cols[4]) for cols in lines if len(cols) > 4 and cols[1] == "flaky"
    ]
    assert attempts == [("flaky", "1", "transient", "0/3"), ("flaky", "2", "transient", "1/3")]
    assert "2 failed attempt(s)" in result.stdout
    assert re.search(r"^flaky\s+transient\s+2\s*$", result.stdout, re.M)


async def test_replay_prints_the_events_and_state(db_url: str) -> None:
    demo = chem_persist("--url", db_url, "demo")
    flow_id = re.search(r"flow_id:\s+(\S+)", demo.stdout).group(1)  # type: ignore[union-attr]
    result = chem_persist("--url", db_url, "replay", flow_id, "--demo")
    assert result.returncode == 0, result.stderr
    codes = re.findall(r"^\s*\d+\s+\d+\s+\S+\s+([A-Z])\s", result.stdout, re.M)
    assert codes == ["I"] + ["S", "F"] * 4 + ["C"]
    assert '"completed": true' in result.stdout


def test_bad_flow_id_gives_a_clear_error(db_url: str) -> None:
    result = chem_persist("--url", db_url, "timeline", "not-a-uuid")
    assert result.returncode == 2
    assert "InvalidFlowIdError" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_flow_replay_says_so(db_url: str) -> None:
    result = chem_persist("--url", db_url, "replay", str(uuid.uuid4()))
    assert result.returncode == 1
    assert "no events" in result.stderr


@pytest.mark.slow
def test_demo_on_the_embedded_server_leaves_no_server_behind(tmp_path: Path) -> None:
    """With no DATABASE_URL the demo starts an embedded PostgreSQL and stops it when it exits."""
    pgdata = tmp_path / "pgdata"
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["CHEM_PERSIST_DATA_DIR"] = str(pgdata)
    result = chem_persist("demo", env=env, timeout=180)
    assert result.returncode == 0, result.stderr
    assert re.search(r"variants:\s+I,S,F,C", result.stdout)
    assert (pgdata / "PG_VERSION").read_text().strip() == "18"
    running = [
        p.pid
        for p in psutil.process_iter(["name", "cmdline"])
        if p.info["name"] == "postgres" and str(pgdata) in " ".join(p.info["cmdline"] or ())
    ]
    assert running == []
    again = chem_persist("demo", env=env, timeout=180)
    assert again.returncode == 0, again.stderr
    assert re.search(r"fingerprint:\s+(\S+)", again.stdout).group(1) == re.search(  # type: ignore[union-attr]
        r"fingerprint:\s+(\S+)", result.stdout
    ).group(1)  # type: ignore[union-attr]
