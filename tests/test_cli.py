"""chem-persist, run as a user runs it: a separate process, through the installed entry point."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

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


@pytest.mark.parametrize("command", ["replay", "timeline"])
def test_an_unknown_flow_is_said_not_to_exist(db_url: str, command: str) -> None:
    """Not "no failed attempts" with rc 0, as for a healthy flow: the flow is not there."""
    flow_id = str(uuid.uuid4())
    result = chem_persist(command, flow_id, "--url", db_url)
    assert result.returncode == 2, result.stdout
    assert result.stderr.strip().splitlines()[-1] == (
        f"chem-persist: FlowNotFoundError: flow {flow_id} does not exist in this database (it has no events)"
    )
    assert "no failed attempts" not in result.stdout


@pytest.mark.slow
def test_demo_on_the_embedded_server_leaves_no_server_behind(embedded_pgdata: Path) -> None:
    """With no DATABASE_URL the demo starts an embedded PostgreSQL and stops it when it exits."""
    pgdata = embedded_pgdata
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["CHEM_PERSIST_DATA_DIR"] = str(pgdata)
    result = chem_persist("demo", env=env, timeout=180)
    assert result.returncode == 0, result.stderr
    assert re.search(r"variants:\s+I,S,F,C", result.stdout)
    assert re.search(rf"^database:\s+embedded PostgreSQL in {re.escape(str(pgdata))}$", result.stdout, re.M)
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


# --- errors a user meets: one line, typed, rc 2, no traceback, no password ---------------------------

SECRET = "Pa55-w0rd"


def _one_error_line(result: subprocess.CompletedProcess[str], error: str) -> str:
    """The last stderr line is the error; no traceback, no password anywhere."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert SECRET not in result.stderr + result.stdout
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"chem-persist: {error}: "), result.stderr
    return line


@pytest.mark.parametrize(
    ("url", "expected", "given"),
    [
        (f"postgresql://alice:{SECRET}@127.0.0.1:abc/chem", "the port 'abc' is not a number", "env"),
        (
            f"postgresql://alice:{SECRET}@127.0.0.1:99999/chem",
            "the port 99999 is out of range (1-65535)",
            "option",
        ),
        (f"postgresql://alice:{SECRET}@127.0.0.1:0/chem", "the port 0 is out of range (1-65535)", "env"),
        ("postgresql://alice:Pa55@w0rd@127.0.0.1:5432/chem", "contains '@': percent-encode it", "env"),
        ("postgresql://alice:Pa55@w0rd@127.0.0.1:5432/chem", "contains '@': percent-encode it", "option"),
        (
            "postgresql://alice:Pa55/w0rd@127.0.0.1:5432/chem",
            "seems to contain '/', '?' or '#': percent-encode",
            "env",
        ),
        (
            f"postgresql://alice:{SECRET}@127.0.0.1/chem?port=x",
            "the port parameter 'x' is not a number",
            "env",
        ),
        (f"postgresql://alice:{SECRET}@127.0.0.1/chem?sslmode", "query string is malformed", "env"),
        (
            f"postgresql://alice:{SECRET}@127.0.0.1/chem?sslmode=bogus",
            "`sslmode` parameter must be one of",
            "env",
        ),
    ],
    ids=[
        "port-text",
        "port-big",
        "port-zero",
        "at-in-password",
        "at-in-password-option",
        "slash-in-password",
        "query-port",
        "query",
        "ssl",
    ],
)
def test_a_bad_url_is_one_typed_line_with_no_password(url: str, expected: str, given: str) -> None:
    env = dict(os.environ)
    args = ["migrate"]
    if given == "env":
        env["DATABASE_URL"] = url
    else:
        args += ["--url", url]  # after the subcommand
    line = _one_error_line(chem_persist(*args, env=env, timeout=60), "ConfigurationError")
    assert expected in line
    assert "Pa55" not in line  # not even the half of a password that an unencoded '@' or '/' splits off


def test_bad_settings_from_the_environment_are_named_and_echoed(db_url: str) -> None:
    env = dict(os.environ, DATABASE_MAX_CONNECTIONS="lots", CHEM_PERSIST_WORKER_LISTEN="maybe")
    line = _one_error_line(chem_persist("demo", "--url", db_url, env=env, timeout=60), "ConfigurationError")
    assert "DATABASE_MAX_CONNECTIONS='lots'" in line
    assert "CHEM_PERSIST_WORKER_LISTEN='maybe'" in line


def test_bench_refuses_an_unknown_operation_before_doing_anything() -> None:
    # A URL nothing answers on: had bench opened a database first, the error would be another one.
    result = chem_persist(
        "bench", "--only", "nosuchop", "--url", "postgresql://nobody@127.0.0.1:1/x", timeout=60
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "invalid choice: 'nosuchop'" in result.stderr
    for name in ("single_append", "append_with_artifacts", "list", "concurrent_32", "demo_flow"):
        assert name in result.stderr
    assert "created database" not in result.stderr


def test_bench_help_lists_the_operations() -> None:
    result = chem_persist("bench", "--help", timeout=60)
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "run only these operations: single_append, append_with_artifacts, append_many, list," in text
    assert "concurrent_8, concurrent_32, demo_flow" in text


async def _demo_flow(db_url: str, count: int) -> str:
    from chem_persistence_async import demo_definition

    async with Database.connect(db_url) as db:
        engine = FlowEngine(PgEventStore(db), PgFlowRepository(), demo_definition(count=count))
        return str(await engine.run_to_end())


async def test_replay_demo_of_a_flow_started_with_another_count_says_which(db_url: str) -> None:
    flow_id = await _demo_flow(db_url, 25)
    line = _one_error_line(
        chem_persist("replay", flow_id, "--demo", "--url", db_url), "DefinitionMismatchError"
    )
    assert f"flow {flow_id} was started with the demo for --count 25, not --count 10" in line
    assert f"run 'chem-persist replay {flow_id} --demo --count 25'" in line
    fixed = chem_persist("replay", flow_id, "--demo", "--count", "25", "--url", db_url)
    assert fixed.returncode == 0, fixed.stderr
    assert '"completed": true' in fixed.stdout


async def test_replay_demo_of_a_failed_demo_finds_its_count_in_the_failure(db_url: str) -> None:
    flow_id = await _demo_flow(db_url, -5)  # the seed step fails: its params are in the error details
    line = _one_error_line(
        chem_persist("replay", flow_id, "--demo", "--url", db_url), "DefinitionMismatchError"
    )
    assert "was started with the demo for --count -5, not --count 10" in line


async def test_replay_demo_of_another_definition_says_it_is_not_the_demo(db_url: str) -> None:
    async with Database.connect(db_url) as db:
        engine = FlowEngine(
            PgEventStore(db),
            PgFlowRepository(),
            flaky_definition(0),
            retry_policy=RetryPolicy(initial_delay=0.0),
        )
        flow_id = await engine.run_to_end()
    line = _one_error_line(
        chem_persist("replay", str(flow_id), "--demo", "--url", db_url), "DefinitionMismatchError"
    )
    assert f"flow {flow_id} was started with definition 'flaky' (3 steps), not the demo" in line
    assert "without --demo" in line


async def test_timeline_of_a_step_the_flow_never_ran(db_url: str) -> None:
    flow_id = await _demo_flow(db_url, 3)
    line = _one_error_line(
        chem_persist("timeline", flow_id, "--step", "nosuch", "--url", db_url), "FlowNotFoundError"
    )
    assert "has run no step 'nosuch' (steps it ran: forward, print_and_count, seed, split)" in line
    healthy = chem_persist("timeline", flow_id, "--step", "split", "--url", db_url)
    assert healthy.returncode == 0
    assert "no failed attempts of step 'split'" in healthy.stdout


def test_a_failed_demo_exits_non_zero_and_says_where_it_failed(db_url: str) -> None:
    result = chem_persist("demo", "--count", "-5", "--url", db_url)
    assert result.returncode == 1, result.stderr
    assert re.search(
        r"^status:\s+failed at step 'seed' \(validation\): count must be >= 0$", result.stdout, re.M
    )
    assert re.search(r"^variants:\s+I,S,X$", result.stdout, re.M)


def test_demo_says_which_database_it_opened_without_the_password(db_url: str) -> None:
    # The test server trusts local connections, so a password in the URL is sent and ignored.
    parts = urlsplit(db_url)
    url = urlunsplit(parts._replace(netloc=f"postgres:{SECRET}@{parts.netloc.rpartition('@')[2]}"))
    result = chem_persist("demo", "--url", url)
    assert result.returncode == 0, result.stderr
    said = re.search(r"^database:\s+(\S+)$", result.stdout, re.M)
    assert said, result.stdout
    assert said.group(1).startswith("postgresql://postgres:***@")
    assert parts.path in said.group(1)  # the database's name, for diagnosis
    assert re.search(r"^status:\s+completed$", result.stdout, re.M)
    assert SECRET not in result.stdout + result.stderr


# --- the command line explains itself ----------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("migrate",),
        ("demo", "--count", "2"),
        ("timeline", "FLOW"),
        ("replay", "FLOW"),
    ],
    ids=lambda a: a[0],
)
def test_url_is_accepted_after_the_subcommand(db_url: str, args: tuple[str, ...]) -> None:
    argv = [str(uuid.uuid4()) if a == "FLOW" else a for a in args]
    result = chem_persist(*argv, "--url", db_url)
    assert "unrecognized arguments" not in result.stderr
    if "FLOW" in args:
        assert result.returncode == 2, result.stderr
        assert "FlowNotFoundError" in result.stderr  # it reached the database named by --url
    else:
        assert result.returncode == 0, result.stderr


def test_a_url_after_the_subcommand_wins_over_one_before(db_url: str) -> None:
    result = chem_persist("--url", "postgresql://nobody@127.0.0.1:1/none", "migrate", "--url", db_url)
    assert result.returncode == 0, result.stderr


def test_every_subcommand_and_argument_has_help() -> None:
    import argparse

    from chem_persistence_async.cli import build_parser

    parser = build_parser()
    assert parser.description
    assert "``" not in parser.description  # plain text, not reST
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(subparsers.choices) == {
        "migrate",
        "demo",
        "timeline",
        "replay",
        "bench",
        "worker",
        "queue",
        "flows",
        "flow",
        "records",
    }
    for choice in subparsers._choices_actions:
        assert choice.help, choice.dest
    for name, sub in [("", parser), *subparsers.choices.items()]:
        assert sub.description, name
        for action in sub._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help, f"{name}: {action.dest} has no help"
            assert action.help != argparse.SUPPRESS, f"{name}: {action.dest} has no help"


def test_top_level_help_is_plain_text() -> None:
    result = chem_persist("--help", timeout=60)
    assert result.returncode == 0
    assert "``" not in result.stdout
    for command in ("migrate", "demo", "timeline", "replay", "bench"):
        assert re.search(rf"^\s+{command}\s+\S", result.stdout, re.M), command
    assert "DATABASE_URL" in result.stdout


def test_version_from_the_package_metadata() -> None:
    from importlib import metadata

    import chem_persistence_async

    installed = metadata.version("chem-persistence-async")
    assert chem_persistence_async.__version__ == installed
    result = chem_persist("--version", timeout=60)
    assert result.returncode == 0
    assert result.stdout.strip() == f"chem-persist {installed}"
    module = subprocess.run(
        [sys.executable, "-m", "chem_persistence_async.cli", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert module.stdout.strip() == f"chem-persist {installed}"


@pytest.mark.parametrize("records", [True, False], ids=["records", "no-records"])
async def test_worker_runs_submitted_flows_keeps_records_unless_told_and_stops_on_sigterm(
    db_url: str, records: bool
) -> None:

    from chem_persistence_async import FlowRepository, Status
    from chem_persistence_async._bench.flows import NOOP3
    from tests.support.processes import running, terminate
    from tests.support.waiting import until

    executable = shutil.which("chem-persist", path=str(Path(sys.executable).parent))
    assert executable
    queue = f"cli-{uuid.uuid4().hex[:8]}"
    argv = [executable, "--url", db_url, "worker", "chem_persistence_async._bench.flows:NOOP3"]
    argv += ["--queue", queue, "--poll-interval", "0.1", *([] if records else ["--no-records"])]
    async with Database.connect(db_url) as db:
        engine = FlowEngine(db.event_store(), FlowRepository(), NOOP3, queue=db.work_queue())
        flows = [await engine.submit(queue=queue) for _ in range(3)]
        async with running(*argv, cwd=ROOT) as proc:

            async def all_completed() -> bool:
                return all([(await engine.load(f)).completed for f in flows])

            await until(all_completed, 60, "the worker process to run the flows")
            _, stderr = await terminate(proc)
        assert proc.returncode == 0, stderr.decode()
        assert b"3 completed" in stderr
        runs = [await db.workflow_records().get_run(str(f)) for f in flows]
    if records:
        assert all(run is not None and run.status is Status.COMPLETED for run in runs), runs
    else:
        assert runs == [None, None, None]


def test_the_command_line_loads_the_benchmark_suite_only_for_bench() -> None:
    """Every command reads ``bench --only``'s choices from ``_bench.config``; importing the suite
    with it (its cases, and the peers when installed) once cost every command about 0.7 s."""
    probe = (
        "import sys; import chem_persistence_async.cli.main as m; "
        "print(sorted(n for n in sys.modules if n.startswith('chem_persistence_async._bench')))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert (
        result.stdout.strip() == "['chem_persistence_async._bench', 'chem_persistence_async._bench.config']"
    )
    from chem_persistence_async._bench import SuiteConfig, run_suite  # (loaded on first use)

    assert callable(run_suite)
    assert SuiteConfig.__name__ == "SuiteConfig"
    with pytest.raises(ImportError):
        from chem_persistence_async._bench import no_such_name  # type: ignore[attr-defined]  # noqa: F401
