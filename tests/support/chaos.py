"""Chaos tools: real processes killed with SIGKILL and restarted, and checks of what they left.

* ``ProcessGang``: N copies of a command, each with its stderr in a file of its own; a member is
  killed with SIGKILL (never a graceful signal) and started again at once; a member that exits by
  itself with a non-zero status fails the test with its stderr;
* ``read_timelines`` and ``check_timeline``: each flow's log read straight from ``event_log`` (no
  library code in between), and the attempt rules every log must keep: every ``StepStarted`` has
  exactly one outcome (``StepFinished`` or ``StepFailed`` of the same attempt) before that step's
  next ``StepStarted``, attempts count 1, 2, 3... with no gap, one ``StepFinished`` per step;
* ``assert_error_rows_one_to_one``: each ``stepfailed`` event has exactly one
  ``step_execution_errors`` row, and each row belongs to one ``stepfailed`` event;
* ``assert_clean_stderr``: no process printed a traceback, an ``ErrorRecordMismatchError`` or
  another line it should not have.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import subprocess
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parents[2]
"""The repository: subprocesses run there, so ``tests.*`` modules are importable."""


# --- processes ----------------------------------------------------------------------------------


@dataclass
class Member:
    """One slot of the gang: the process running in it now, and every stderr file it ever had."""

    index: int
    process: subprocess.Popen[bytes] | None = None
    stderr_files: list[Path] = field(default_factory=list)
    kills: int = 0


class ProcessGang:
    """``size`` copies of ``argv(index)``, started in ``ROOT`` with ``env``; stderr kept in ``log_dir``."""

    def __init__(
        self, argv: Callable[[int], Sequence[str]], size: int, *, env: dict[str, str], log_dir: Path
    ) -> None:
        self._argv = argv
        self._env = env
        self._log_dir = log_dir
        self.members = [Member(i) for i in range(size)]
        self.kills = 0
        self.starts = 0

    def start_all(self) -> None:
        for member in self.members:
            self._start(member)

    def _start(self, member: Member) -> None:
        path = self._log_dir / f"p{member.index}-{len(member.stderr_files)}.stderr"
        member.stderr_files.append(path)
        with path.open("wb") as stderr:
            member.process = subprocess.Popen(
                list(self._argv(member.index)),
                cwd=ROOT,
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        self.starts += 1

    def live(self) -> list[Member]:
        return [m for m in self.members if m.process is not None and m.process.poll() is None]

    def kill_and_restart(
        self, rng: random.Random, *, ready: str | None = None, busy: Collection[int] | None = None
    ) -> Member | None:
        """SIGKILL one running member chosen by ``rng`` and start it again. Only one that printed
        ``ready`` on stderr (a kill during start-up hits nothing), and, if ``busy`` (pids) names
        any of those, one of them (a kill of an idle process hits nothing either). ``None``: no
        member qualified, nothing was killed."""
        candidates = [m for m in self.live() if ready is None or ready in read_text(m.stderr_files[-1])]
        working = [m for m in candidates if m.process is not None and m.process.pid in (busy or ())]
        candidates = working or candidates
        if not candidates:
            return None
        victim = rng.choice(candidates)
        assert victim.process is not None
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait(30)
        victim.kills += 1
        self.kills += 1
        self._start(victim)
        return victim

    def check_no_failure(self) -> None:
        """Fail if a member exited by itself with a non-zero status (a SIGKILL of ours is restarted
        at once, so it is never seen here)."""
        for member in self.members:
            process = member.process
            if process is not None and process.poll() not in (None, 0):
                raise AssertionError(
                    f"process {member.index} exited with {process.returncode}:\n"
                    + read_text(member.stderr_files[-1])[-6000:]
                )

    def finished(self) -> int:
        """How many members exited with status 0."""
        return sum(1 for m in self.members if m.process is not None and m.process.poll() == 0)

    def all_say(self, marker: str) -> bool:
        """Every running member has printed ``marker`` on stderr (e.g. that it handles SIGTERM now)."""
        return all(marker in read_text(m.stderr_files[-1]) for m in self.live())

    def returncodes(self) -> list[int | None]:
        return [None if m.process is None else m.process.poll() for m in self.members]

    def signal_all(self, signum: int) -> None:
        for member in self.live():
            assert member.process is not None
            member.process.send_signal(signum)

    def kill_all(self) -> None:
        """What is still running is killed (clean-up after a failed test)."""
        for member in self.live():
            assert member.process is not None
            member.process.kill()
            member.process.wait(30)

    def stderr_texts(self) -> list[tuple[str, str]]:
        return [(path.name, read_text(path)) for m in self.members for path in m.stderr_files]


async def wait_for(
    condition: Callable[[], Any],
    deadline_s: float,
    what: str,
    *,
    every: float = 0.05,
    explain: Callable[[], Awaitable[str]] | None = None,
) -> None:
    """Poll ``condition`` (a function, or one returning an awaitable) until true, within
    ``deadline_s``; on time-out, fail with ``what`` and what ``explain`` says of the state then."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() >= end:
            details = "" if explain is None else "\n" + await explain()
            raise AssertionError(f"timed out after {deadline_s:.0f}s waiting for {what}{details}")
        await asyncio.sleep(every)


async def stop_gracefully(gang: ProcessGang, ready: str, what: str) -> None:
    """SIGTERM every member once each has printed ``ready`` (it handles the signal now: one
    restarted a moment ago may still be importing, and would die of it instead), then wait until
    each has exited with 0."""
    await wait_for(lambda: gang.all_say(ready), 60, f"every {what} to be up", every=0.1)
    gang.signal_all(signal.SIGTERM)

    async def stopped() -> str:
        return f"exit statuses: {gang.returncodes()}"

    await wait_for(lambda: gang.finished() == len(gang.members), 60, f"every {what} to stop", explain=stopped)


async def unfinished(conn: asyncpg.Connection) -> str:
    """The flows with no ``FlowCompleted`` yet (their event codes) and the active jobs."""
    flows = await conn.fetch(
        "SELECT flow_id, string_agg(event_type, ',' ORDER BY seq) AS codes FROM event_log GROUP BY flow_id"
        " HAVING NOT bool_or(event_type = 'flowcompleted') LIMIT 20"
    )
    jobs = await conn.fetch(
        "SELECT id, flow_id, state, attempt, not_before - now() AS due_in, lease_expires_at - now() AS lease_left,"
        " worker_id, last_error FROM work_queue ORDER BY id LIMIT 20"
    )
    return (
        "unfinished flows:\n"
        + "\n".join(f"  {r['flow_id']}: {r['codes']}" for r in flows)
        + ("\nactive jobs:\n" + "\n".join(f"  {dict(r)}" for r in jobs))
    )


def read_text(path: Path) -> str:
    return path.read_bytes().decode("utf-8", "replace") if path.exists() else ""


FORBIDDEN = ("Traceback", "ErrorRecordMismatchError", " ERROR ", " WARNING ", " CRITICAL ")
"""What no chaos process may print: a traceback, a spurious mismatch between a flow's events and
its error rows, or a log line at WARNING or above (in the engine runner's log format)."""


def assert_clean_stderr(
    gang: ProcessGang, *, allowed: Sequence[str] = (), forbidden: Sequence[str] = FORBIDDEN
) -> None:
    """No line of any process's stderr holds one of ``forbidden``, unless it holds one of
    ``allowed`` (an expected warning, e.g. a lost attempt being closed)."""
    bad: list[str] = []
    for name, text in gang.stderr_texts():
        for line in text.splitlines():
            if any(fragment in line for fragment in allowed):
                continue
            if any(fragment in line for fragment in forbidden):
                bad.append(f"{name}: {line}")
    assert not bad, "subprocess stderr:\n" + "\n".join(bad[:40])


def assert_only_expected_stderr(gang: ProcessGang, expected: Sequence[str]) -> None:
    """Every line any process printed matches one of the regular expressions ``expected`` (for a
    process whose log lines carry no level: the command line prints WARNING and above bare)."""
    patterns = [re.compile(e) for e in expected]
    bad = [
        f"{name}: {line}"
        for name, text in gang.stderr_texts()
        for line in text.splitlines()
        if line.strip() and not any(p.search(line) for p in patterns)
    ]
    assert not bad, "unexpected subprocess stderr:\n" + "\n".join(bad[:40])


def subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONSTARTUP", None)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


# --- what the processes left in the database ----------------------------------------------------


@dataclass(frozen=True)
class Row:
    seq: int
    version: int
    type: str
    payload: dict[str, Any]


async def read_timelines(conn: asyncpg.Connection) -> dict[uuid.UUID, list[Row]]:
    rows = await conn.fetch(
        "SELECT flow_id, seq, flow_version, event_type, payload::text AS payload FROM event_log ORDER BY seq"
    )
    timelines: dict[uuid.UUID, list[Row]] = defaultdict(list)
    for r in rows:
        timelines[r["flow_id"]].append(
            Row(r["seq"], r["flow_version"], r["event_type"], json.loads(r["payload"]))
        )
    return dict(timelines)


@dataclass
class StepAttempts:
    """One step of one flow, as its log tells it."""

    attempts: int = 0
    finished: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    """Failed attempts by error class."""
    lost: int = 0
    """Failed attempts closed as lost (``attempt lost: ...``: its starter vanished)."""
    interrupted: int = 0
    """Failed attempts closed by a worker shutting down gracefully."""


def check_timeline(flow_id: uuid.UUID, timeline: Sequence[Row]) -> dict[str, StepAttempts]:
    """Assert the attempt rules (module docstring) on one flow's log; return its steps' counts."""
    assert [r.version for r in timeline] == list(range(1, len(timeline) + 1)), f"{flow_id}: version gap"
    steps: dict[str, StepAttempts] = defaultdict(StepAttempts)
    open_attempt: dict[str, int] = {}
    for row in timeline:
        p = row.payload
        where = f"flow {flow_id} v{row.version} ({row.type})"
        if row.type == "stepstarted":
            step = steps[p["step_id"]]
            assert p["step_id"] not in open_attempt, (
                f"{where}: attempt {p['attempt']} started while attempt {open_attempt.get(p['step_id'])} "
                "had no outcome (superseded)"
            )
            assert p["attempt"] == step.attempts + 1, f"{where}: attempt {p['attempt']} after {step.attempts}"
            step.attempts = p["attempt"]
            open_attempt[p["step_id"]] = p["attempt"]
        elif row.type == "stepfinished":
            assert open_attempt.pop(p["step_id"], None) is not None, f"{where}: an outcome with no attempt"
            steps[p["step_id"]].finished += 1
        elif row.type == "stepfailed":
            attempt = open_attempt.pop(p["step_id"], None)
            assert attempt == p["attempt"], f"{where}: failure of attempt {p['attempt']}, open: {attempt}"
            step = steps[p["step_id"]]
            step.failed[p["error"]["error_class"]] += 1
            message = p["error"]["message"] or ""
            step.lost += message.startswith("attempt lost")
            step.interrupted += message.startswith("attempt interrupted")
    assert not open_attempt, f"flow {flow_id}: attempts with no outcome at the end: {open_attempt}"
    for step_id, step in steps.items():
        assert step.finished <= 1, f"flow {flow_id}: step {step_id} finished {step.finished} times"
        assert step.attempts == step.finished + sum(step.failed.values())
    return dict(steps)


async def assert_error_rows_one_to_one(conn: asyncpg.Connection) -> int:
    """Each ``stepfailed`` event has exactly one error row (same flow, step and attempt) and each
    row one event; returns how many there are."""
    events = await conn.fetch(
        "SELECT seq, flow_id, payload->>'step_id' AS step_id, (payload->>'attempt')::int AS attempt"
        " FROM event_log WHERE event_type = 'stepfailed'"
    )
    rows = await conn.fetch("SELECT event_seq, flow_id, step_id, attempt_number FROM step_execution_errors")
    by_seq = Counter(r["event_seq"] for r in rows)
    duplicated = [seq for seq, n in by_seq.items() if n > 1]
    assert not duplicated, f"error rows written twice for events {duplicated[:10]}"
    assert None not in by_seq, "an error row with no event"
    expected = {e["seq"]: (e["flow_id"], e["step_id"], e["attempt"]) for e in events}
    found = {r["event_seq"]: (r["flow_id"], r["step_id"], r["attempt_number"]) for r in rows}
    missing = set(expected) - set(found)
    stray = set(found) - set(expected)
    assert not missing, f"{len(missing)} stepfailed events have no error row"
    assert not stray, f"{len(stray)} error rows belong to no stepfailed event"
    assert found == expected, "an error row disagrees with its stepfailed event"
    return len(rows)
