"""``chem-persist flows``, ``flow`` and ``records rebuild`` (run in a thread: main() has its own loop)."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import uuid
from dataclasses import asdict
from typing import Any

import pytest

from chem_persistence_async import Database, FlowEngine, FlowRepository, RetryPolicy, Status, WorkflowRecords
from chem_persistence_async.cli import main
from tests.engine.flows import flaky_definition
from tests.support.processes import running, terminate
from tests.support.waiting import until

FAST = RetryPolicy(initial_delay=0.0)


async def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = await asyncio.to_thread(main, list(args))
    out, err = capsys.readouterr()
    return code, out, err


async def _flows(db: Database) -> tuple[list[uuid.UUID], uuid.UUID]:
    records = WorkflowRecords(db)
    ok = FlowEngine(
        db.event_store(), FlowRepository(), flaky_definition(), records=records, retry_policy=FAST
    )
    bad = FlowEngine(
        db.event_store(),
        FlowRepository(),
        flaky_definition(failures=9, kind="permanent"),
        records=records,
        retry_policy=FAST,
    )
    done = [await ok.run_to_end(), await ok.run_to_end()]
    return done, await bad.run_to_end()


async def test_flows_lists_runs_newest_first_with_filters(
    db: Database, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    done, failed = await _flows(db)
    code, out, _ = await _cli(capsys, "flows", "--url", db_url)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["run", "type", "status", "created", "started", "duration"]
    assert [line.split()[0] for line in lines[2:]] == [str(failed), str(done[1]), str(done[0])]
    code, out, _ = await _cli(capsys, "--url", db_url, "flows", "--status", "failed")
    assert [line.split()[:3] for line in out.splitlines()[2:]] == [[str(failed), "flaky", "FAILED"]]
    code, out, _ = await _cli(capsys, "--url", db_url, "flows", "--type", "flaky", "--limit", "1")
    assert len(out.splitlines()) == 3
    code, out, _ = await _cli(capsys, "--url", db_url, "flows", "--type", "nothing")
    assert (code, "no runs of type 'nothing'" in out) == (0, True)
    code, _, err = await _cli(capsys, "--url", db_url, "flows", "--status", "DONE")
    assert code == 2
    assert "UnknownStatusError" in err
    assert "COMPLETED" in err


async def test_flow_shows_a_run_with_its_stages_logs_and_artifacts(
    db: Database, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _, failed = await _flows(db)
    records = WorkflowRecords(db)
    await records.create_log(level="WARN", message="looked at by hand", workflow_run_id=failed)
    await records.save_stage_output(failed, "flaky", "first", {"rows": 3})
    code, out, _ = await _cli(capsys, "--url", db_url, "flow", str(failed))
    assert code == 0
    assert f"run:       {failed}" in out
    assert "status:    FAILED" in out
    rows = {line.split()[1]: line.split() for line in out.splitlines() if line[:1].isdigit()}
    assert rows["first"][2:4] == ["COMPLETED", "1"]
    assert rows["flaky"][2:4] == ["FAILED", "1"]
    assert "attempt 1 failed on purpose" in out
    assert rows["last"][2] == "PENDING"
    assert "WARN   looked at by hand" in out
    assert f"workflow-v2/flaky/{failed}/first/output.json  STAGE_OUTPUT" in out

    code, _, err = await _cli(capsys, "--url", db_url, "flow", str(uuid.uuid4()))
    assert code == 2
    assert "RunNotFoundError" in err
    await records.delete_run(failed)
    code, _, err = await _cli(capsys, "--url", db_url, "flow", str(failed))
    assert code == 2
    assert "records rebuild" in err


async def test_records_rebuild_from_the_shell(
    db: Database, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    done, failed = await _flows(db)
    records = WorkflowRecords(db)

    async def snapshot() -> list[Any]:
        out = []
        for fid in [*done, failed]:
            run = await records.get_run(fid)
            out.append(None if run is None else {k: v for k, v in asdict(run).items() if k != "updated_at"})
        return out

    before = await snapshot()
    for fid in [*done, failed]:
        await records.delete_run(fid)
    code, out, err = await _cli(capsys, "--url", db_url, "records", "rebuild")
    assert code == 1
    assert "rebuilt the records of 0 of 3 flow(s)" in out
    assert "skipped 3 flow(s): unknown definition" in out
    assert "(pass it as MODULE:ATTR)" in out
    assert "rebuilding the records" in err
    target = "tests.engine.flows:flaky_definition"  # failures=2 transient: the flows that completed
    code, out, _ = await _cli(capsys, "records", "rebuild", target, "--url", db_url)
    assert code == 1  # the failed flow's definition is still unknown
    assert "rebuilt the records of 2 of 3 flow(s)" in out
    await db.definition_registry().register(flaky_definition(failures=9, kind="permanent"))
    code, out, _ = await _cli(capsys, "--url", db_url, "records", "rebuild", target)
    assert (code, "rebuilt the records of 3 of 3 flow(s)" in out) == (0, True)
    assert await snapshot() == before
    assert [r.status for r in await records.get_runs_by_status(Status.FAILED)] == [Status.FAILED]


async def test_records_follow_once_catches_up_then_says_where_it_stopped(
    db: Database, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    done, failed = await _flows(db)
    records = WorkflowRecords(db)
    for fid in [*done, failed]:
        await records.delete_run(fid)
    target = "tests.engine.flows:flaky_definition"
    code, out, _ = await _cli(capsys, "--url", db_url, "records", "follow", target, "--once", "--batch", "5")
    assert code == 1  # the failed flow's definition is unknown
    assert re.search(
        r"caught up: \d+ event\(s\) read; \d+ flow projection\(s\) written or found current", out
    )
    assert re.search(r"skipped \d+ flow projection\(s\): unknown definition", out)
    assert [(await records.get_run(fid)).status for fid in done] == [Status.COMPLETED] * 2  # type: ignore[union-attr]
    await db.definition_registry().register(flaky_definition(failures=9, kind="permanent"))
    await records.delete_run(done[0])
    code, out, _ = await _cli(capsys, "--url", db_url, "records", "follow", "--once")
    assert code == 0
    assert "caught up: 0 event(s) read; 0 flow projection(s)" in out  # it had read them all
    assert await records.get_run(done[0]) is None


async def test_records_follow_runs_until_sigterm(db: Database, db_url: str) -> None:
    """A real process: it follows flows appended while it runs, and SIGTERM stops it cleanly."""
    await db.definition_registry().register(flaky_definition())
    argv = [
        sys.executable,
        "-m",
        "chem_persistence_async.cli",
        "--url",
        db_url,
        "records",
        "follow",
        "--poll",
        "0.05",
    ]
    async with running(*argv, env={**os.environ, "PYTHONPATH": os.getcwd()}) as process:
        engine = FlowEngine(db.event_store(), FlowRepository(), flaky_definition(), retry_policy=FAST)
        fids = [await engine.run_to_end() for _ in range(3)]
        records = WorkflowRecords(db)

        async def followed() -> bool:
            runs = [await records.get_run(fid) for fid in fids]
            return all(run is not None and run.status is Status.COMPLETED for run in runs)

        await until(followed, 30, "the follower to record the three flows")
        out, err = await terminate(process)
    assert process.returncode == 0, err.decode()
    assert re.search(
        rb"stopped; \d+ flow projection\(s\) written or found current; 'workflow-records' is at \d", out
    )
