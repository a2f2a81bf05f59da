"""What the records (SPEC 9) cost, measured on a database of their own (``benchmarks/records.py``).

* ``log_call``: ``AICallLogger`` taking N calls and writing them all (timed until ``close()`` has
  committed the last one), next to raw asyncpg inserting the same rows one by one (one autocommit
  INSERT each, the way a logger without a buffer writes) and, for scale, raw ``executemany`` in one
  transaction. Also the caller's own cost: microseconds per ``log_call`` (nothing awaited).
* ``records``: ``FlowEngine.run_to_end`` of the same 3-step flows without records, with
  ``WorkflowRecords`` (runs and stages written by the append's own statement, so in the same
  transaction as the events), and with a recorder that writes nothing (a recorder the store does
  not carry: the engine opens a unit of work per append for it, which is what that costs), one
  flow after the other and from 16 tasks; and a ``Worker`` draining submitted flows with and
  without records (its default keeps them). One flow after the other, raw asyncpg writes the same
  flow's events with and without the least SQL that keeps its records current in the same
  statements (``records_raw``): what that pair adds is the floor under the library's figure. One
  flow after the other, each variant's CPU is counted too, this process's and the server's
  (``cpu``: its backends' ``/proc`` where readable), which a busy machine moves less than time.

Variants run round-robin, one sample each per round; figures are medians over the rounds.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from chem_persistence_async._bench.cpu import BackendCpu, client_seconds
from chem_persistence_async._bench.records_raw import run_raw_flow
from chem_persistence_async._bench.runner import Progress
from chem_persistence_async._bench.suite import resolve_url, url_with_database
from chem_persistence_async.backends.postgres.ai_calls import AICallLogger
from chem_persistence_async.backends.postgres.database import Database
from chem_persistence_async.backends.postgres.records import WorkflowRecords
from chem_persistence_async.domain.ai_calls import AICall, check_call
from chem_persistence_async.domain.artifacts import Artifact
from chem_persistence_async.domain.events import FlowEvent
from chem_persistence_async.domain.flow import FlowDefinition, FlowInstance
from chem_persistence_async.domain.positions import PositionedEvent
from chem_persistence_async.domain.records import Status
from chem_persistence_async.engine.engine import FlowEngine
from chem_persistence_async.engine.records import RecordsFollower
from chem_persistence_async.engine.repository import FlowRepository
from chem_persistence_async.engine.step import StepContext, StepOutput
from chem_persistence_async.ports.unit_of_work import Transaction
from chem_persistence_async.worker.subscriptions import Subscriptions
from chem_persistence_async.worker.worker import Worker


@dataclass(frozen=True)
class RecordsBenchConfig:
    rounds: int = 5
    calls: int = 20_000
    """Calls per ``log_call`` sample."""
    raw_calls: int = 3_000
    """Rows per raw one-by-one sample (a throughput: fewer rows, the same rate)."""
    flows: int = 300
    """Flows per sequential ``run_to_end`` sample."""
    concurrent_flows: int = 640
    tasks: int = 16
    worker_flows: int = 300
    """Flows per ``Worker`` sample (submitted first, then drained by one worker)."""
    follow_poll: float = 0.05
    """The ``RecordsFollower`` subscription's poll interval (seconds)."""

    @classmethod
    def quick(cls) -> RecordsBenchConfig:
        return cls(
            rounds=2, calls=2_000, raw_calls=300, flows=30, concurrent_flows=64, tasks=8, worker_flows=40
        )


@dataclass
class Figure:
    name: str
    unit: str
    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "unit": self.unit,
            "median": self.median,
            "min": min(self.samples),
            "max": max(self.samples),
            "samples": self.samples,
        }


def _call(i: int) -> AICall:
    return AICall(
        topic=f"bench/{i % 8}",
        call_type="completion",
        model_key=("small", "large")[i % 2],
        model_id="model-2025",
        prompt=f"Summarise the reaction conditions of sample {i} in one line.",
        response="Stirred at 25 C for 2 h under nitrogen; yield 87%.",
        input_tokens=40 + i % 50,
        output_tokens=15 + i % 10,
        cost=Decimal("0.000125"),
        metadata={"sample": i},
    )


_RAW_INSERT = """INSERT INTO ai_calls (id, topic, call_type, model_key, model_id, prompt, response,
    input_tokens, output_tokens, cost, metadata)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb)"""


def _raw_row(call: AICall) -> tuple[Any, ...]:
    checked = check_call(call)
    return (
        uuid4(),
        checked.topic,
        checked.call_type,
        checked.model_key,
        checked.model_id,
        checked.prompt,
        checked.response,
        checked.input_tokens,
        checked.output_tokens,
        checked.cost,
        json.dumps(call.metadata),
    )


@dataclass(frozen=True)
class Noop:
    id: str

    async def run(self, ctx: StepContext) -> StepOutput:
        return StepOutput(artifacts=(Artifact.of("value", {"step": ctx.step_id, "flow": str(ctx.flow_id)}),))


def flow_definition() -> FlowDefinition:
    return FlowDefinition("bench-records", [Noop("a"), Noop("b"), Noop("c")])


class NoRecords:
    """A recorder that writes nothing, and that no store carries: the engine opens a unit of work
    per append for it (what a recorder outside the append statement costs by itself)."""

    async def record_flow(
        self,
        instance: FlowInstance,
        definition: FlowDefinition,
        events: Sequence[FlowEvent],
        *,
        tx: Transaction,
    ) -> None:
        return None


async def _log_calls(db: Database, calls: list[AICall]) -> tuple[float, float]:
    """(seconds until every call is committed, seconds spent inside log_call)."""
    logger = AICallLogger(db)
    start = time.perf_counter()
    inside = 0.0
    for call in calls:
        t = time.perf_counter()
        logger.log_call(call)
        inside += time.perf_counter() - t
    await logger.close()
    return time.perf_counter() - start, inside


async def _raw_one_by_one(conn: asyncpg.Connection, rows: list[tuple[Any, ...]]) -> float:
    start = time.perf_counter()
    for row in rows:
        await conn.execute(_RAW_INSERT, *row)
    return time.perf_counter() - start


async def _raw_executemany(conn: asyncpg.Connection, rows: list[tuple[Any, ...]]) -> float:
    start = time.perf_counter()
    async with conn.transaction():
        await conn.executemany(_RAW_INSERT, rows)
    return time.perf_counter() - start


@dataclass
class Spent:
    """What one variant's flows took: wall seconds, this process's CPU seconds, and the server's
    (``None`` when its processes cannot be read)."""

    wall: float = 0.0
    client: float = 0.0
    server: float | None = None


async def _paired_sequential(
    runners: dict[str, Callable[[], Awaitable[object]]], flows: int, server: BackendCpu | None
) -> dict[str, Spent]:
    """What ``flows`` flows of each variant took, run one flow of each variant in turn (the order
    rotating), so every variant meets the same moments of a busy machine."""
    spent = {key: Spent(server=None if server is None else 0.0) for key in runners}
    keys = list(runners)
    for i in range(flows):
        for key in keys[i % len(keys) :] + keys[: i % len(keys)]:
            before = 0.0 if server is None else server.seconds()
            cpu = client_seconds()
            start = time.perf_counter()
            await runners[key]()
            wall = time.perf_counter() - start
            cpu = client_seconds() - cpu
            took = spent[key]
            took.wall += wall
            took.client += cpu
            if server is not None and took.server is not None:
                took.server += server.seconds() - before
    return spent


async def _paired_concurrent(engines: dict[str, FlowEngine], flows: int, tasks: int) -> dict[str, float]:
    """Seconds per variant for ``flows`` flows each from ``tasks`` tasks, in turns of one flow per
    task per variant (the order rotating)."""
    spent = dict.fromkeys(engines, 0.0)
    keys = list(engines)
    for turn in range(max(1, flows // tasks)):
        for key in keys[turn % len(keys) :] + keys[: turn % len(keys)]:
            engine = engines[key]
            start = time.perf_counter()
            await asyncio.gather(*(engine.run_to_end() for _ in range(tasks)))
            spent[key] += time.perf_counter() - start
    return spent


async def _drain(db: Database, definition: FlowDefinition, flows: int, tasks: int, records: bool) -> float:
    """Seconds a ``Worker`` (``concurrency=tasks``) takes to run ``flows`` submitted flows."""
    recorder = db.workflow_records() if records else None
    engine = FlowEngine(
        db.event_store(), FlowRepository(), definition, queue=db.work_queue(), records=recorder
    )
    for _ in range(flows):
        await engine.submit()
    start = time.perf_counter()
    async with Worker(db, definition, concurrency=tasks, poll_interval=0.05, records=records) as worker:
        while worker.stats.completed < flows:  # noqa: ASYNC110 - a worker counts; it has no event
            await asyncio.sleep(0.002)
    return time.perf_counter() - start


_FOLLOWER = "bench-records-follower"


async def _skip(events: Sequence[PositionedEvent], tx: Transaction) -> None:
    return None


async def _run_flows(engine: FlowEngine, flows: int) -> float:
    start = time.perf_counter()
    for _ in range(flows):
        await engine.run_to_end()
    return time.perf_counter() - start


async def _followed(
    db: Database, engine: FlowEngine, follower: RecordsFollower, flows: int, poll: float
) -> tuple[float, float]:
    """Seconds until ``flows`` flows of ``engine`` (which keeps no records) have run AND a
    ``RecordsFollower`` subscription running beside them has caught their records up, and of that
    the seconds from the last flow's end until then (the lag at the end). The subscription first
    skips, untimed, what the other variants wrote."""
    subs = Subscriptions(db, poll_interval=poll)
    await subs.catch_up(_FOLLOWER, _skip, batch_size=10_000)
    stop = asyncio.Event()
    start = time.perf_counter()
    following = asyncio.create_task(subs.run(_FOLLOWER, follower, stop=stop))
    for _ in range(flows):
        await engine.run_to_end()
    ran = time.perf_counter()
    stop.set()
    await following
    await subs.catch_up(_FOLLOWER, follower)
    end = time.perf_counter()
    return end - start, end - ran


_PROCESS_FOLLOWER = "bench-records-follower-process"


async def _followed_by_process(
    url: str, db: Database, engine: FlowEngine, flows: int, poll: float
) -> tuple[float, float]:
    """As ``_followed``, with the follower in a process of its own (``chem-persist records follow``,
    as it is deployed beside workers): started and seen following (one flow recorded) before the
    clock starts, stopped after; done when the last flow's run is recorded completed."""
    await Subscriptions(db).catch_up(_PROCESS_FOLLOWER, _skip, batch_size=10_000)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "chem_persistence_async.cli",
        "records",
        "follow",
        f"{__name__}:flow_definition",
        "--name",
        _PROCESS_FOLLOWER,
        "--poll",
        str(poll),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "DATABASE_URL": url},  # (not in argv, where ps shows it)
    )
    records = db.workflow_records()
    try:
        await _recorded(records, await engine.run_to_end())
        start = time.perf_counter()
        last = None
        for _ in range(flows):
            last = await engine.run_to_end()
        ran = time.perf_counter()
        assert last is not None
        await _recorded(records, last)
        end = time.perf_counter()
    finally:
        process.terminate()
        await process.wait()
    return end - start, end - ran


async def _recorded(records: WorkflowRecords, fid: UUID, deadline: float = 60.0) -> None:
    """Until the flow's run is recorded completed (looked up every millisecond)."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + deadline
    while True:
        run = await records.get_run(fid)
        if run is not None and run.status is Status.COMPLETED:
            return
        if loop.time() > give_up:
            raise RuntimeError(f"the follower process did not record flow {fid} within {deadline:g}s")
        await asyncio.sleep(0.001)


async def run_records_bench(
    url: str | None, cfg: RecordsBenchConfig, progress: Progress | None = None
) -> dict[str, Any]:
    progress = progress or Progress()
    server = await resolve_url(url)
    name = f"chem_bench_records_{os.getpid()}_{uuid4().hex[:6]}"
    admin = await asyncpg.connect(server)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    bench_url = url_with_database(server, name)
    try:
        async with Database.connect(bench_url, max_connections=cfg.tasks + 2) as db:
            raw = await asyncpg.connect(bench_url)  # the raw baselines' one connection
            try:
                load_before = os.getloadavg()
                result = await _measure(db, raw, cfg, progress, bench_url)
                result["environment"] = {
                    "when": datetime.now(UTC).isoformat(timespec="seconds"),
                    "server": raw.get_server_version()._asdict(),
                    "cpus": os.cpu_count(),
                    "load_average_before": load_before,
                    "load_average_after": os.getloadavg(),
                    "synchronous_commit": await raw.fetchval("SHOW synchronous_commit"),
                }
                return result
            finally:
                await raw.close()
    finally:
        admin = await asyncpg.connect(server)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def _measure(
    db: Database, raw_conn: asyncpg.Connection, cfg: RecordsBenchConfig, progress: Progress, url: str
) -> dict[str, Any]:
    calls = [_call(i) for i in range(cfg.calls)]
    raw_rows = [_raw_row(_call(i)) for i in range(cfg.raw_calls)]
    logger_rate = Figure("AICallLogger.log_call, until close() committed", "calls/s")
    inside = Figure("time inside log_call (the caller's cost)", "µs/call")
    raw_rate = Figure("raw asyncpg, one autocommit INSERT per call", "calls/s")
    many_rate = Figure("raw asyncpg, executemany in one transaction", "calls/s")

    definition = flow_definition()
    store = db.event_store()
    engines = {
        "without records": FlowEngine(store, FlowRepository(), definition),
        "with WorkflowRecords": FlowEngine(store, FlowRepository(), definition, records=WorkflowRecords(db)),
        "with a recorder writing nothing": FlowEngine(
            store, FlowRepository(), definition, records=NoRecords()
        ),
    }
    runners: dict[str, Callable[[], Awaitable[object]]] = {key: e.run_to_end for key, e in engines.items()}
    runners[_RAW] = lambda: run_raw_flow(raw_conn, records=False)
    runners[_RAW_RECORDED] = lambda: run_raw_flow(raw_conn, records=True)
    sequential = {key: Figure(f"run_to_end, one flow after another, {key}", "ms/flow") for key in engines}
    sequential[_RAW] = Figure("raw asyncpg, the same flow's appends, one flow after another", "ms/flow")
    sequential[_RAW_RECORDED] = Figure(
        "raw asyncpg, the same appends keeping the run and stages current", "ms/flow"
    )
    concurrent = {key: Figure(f"run_to_end from {cfg.tasks} tasks, {key}", "flows/s") for key in engines}

    steps: list[tuple[str, Callable[[], Awaitable[None]]]] = []

    async def log() -> None:
        seconds, spent = await _log_calls(db, calls)
        logger_rate.samples.append(len(calls) / seconds)
        inside.samples.append(spent / len(calls) * 1e6)

    async def raw() -> None:
        raw_rate.samples.append(
            len(raw_rows) / await _raw_one_by_one(raw_conn, [(uuid4(), *r[1:]) for r in raw_rows])
        )

    async def many() -> None:
        fresh = [(uuid4(), *r[1:]) for r in raw_rows * 3]
        many_rate.samples.append(len(fresh) / await _raw_executemany(raw_conn, fresh))

    client_cpu = {key: Figure(f"client CPU, one flow after another, {key}", "ms/flow") for key in sequential}
    server_cpu = {key: Figure(f"server CPU, one flow after another, {key}", "ms/flow") for key in sequential}

    async def seq() -> None:
        server = await BackendCpu.of(raw_conn)  # the pool's backends and the raw one, as they are now
        for key, took in (await _paired_sequential(runners, cfg.flows, server)).items():
            sequential[key].samples.append(took.wall / cfg.flows * 1000)
            client_cpu[key].samples.append(took.client / cfg.flows * 1000)
            if took.server is not None:
                server_cpu[key].samples.append(took.server / cfg.flows * 1000)

    async def conc() -> None:
        done = max(1, cfg.concurrent_flows // cfg.tasks) * cfg.tasks
        for key, seconds in (await _paired_concurrent(engines, cfg.concurrent_flows, cfg.tasks)).items():
            concurrent[key].samples.append(done / seconds)

    workers = {
        key: Figure(f"a Worker (concurrency {cfg.tasks}) draining submitted flows, {key}", "flows/s")
        for key in ("without records", "with WorkflowRecords")
    }

    async def drain() -> None:
        for key in list(workers)[:: 1 if len(workers["without records"].samples) % 2 else -1]:
            seconds = await _drain(db, definition, cfg.worker_flows, cfg.tasks, key != "without records")
            workers[key].samples.append(cfg.worker_flows / seconds)

    phases = {
        key: Figure(f"{cfg.flows} flows one after another, {key}", "ms/flow")
        for key in (
            "without records",
            "with WorkflowRecords",
            "with a RecordsFollower subscription",
            "with `records follow` in a process of its own",
        )
    }
    lag = Figure("the follower's lag after the last flow", "ms")
    process_lag = Figure("the follower process's lag after the last flow", "ms")
    plain = FlowEngine(store, FlowRepository(), definition)
    follower = RecordsFollower(store, db.workflow_records(), definitions=[definition])

    async def follow() -> None:
        turn = len(phases["without records"].samples)
        keys = list(phases)
        for key in keys[turn % len(keys) :] + keys[: turn % len(keys)]:
            if key == "with a RecordsFollower subscription":
                seconds, behind = await _followed(db, plain, follower, cfg.flows, cfg.follow_poll)
                lag.samples.append(behind * 1000)
            elif key == "with `records follow` in a process of its own":
                seconds, behind = await _followed_by_process(url, db, plain, cfg.flows, cfg.follow_poll)
                process_lag.samples.append(behind * 1000)
            else:
                seconds = await _run_flows(plain if key == "without records" else engines[key], cfg.flows)
            phases[key].samples.append(seconds / cfg.flows * 1000)

    steps += [("log_call", log), ("raw one by one", raw), ("raw executemany", many)]
    steps += [("records in the append or by a subscription", follow)]
    steps += [("a worker, with and without records", drain)]
    steps += [("run_to_end, the three variants in turn", seq), (f"run_to_end from {cfg.tasks} tasks", conc)]

    progress.note("warm-up round (untimed)")
    for _, step in steps:
        await step()
    everything = [logger_rate, inside, raw_rate, many_rate, *sequential.values(), *concurrent.values()]
    everything += [*client_cpu.values(), *server_cpu.values()]
    for figure in [*everything, *workers.values(), *phases.values(), lag, process_lag]:
        figure.samples.clear()
    progress.total = cfg.rounds * len(steps)
    for round_no in range(cfg.rounds):
        order = steps if round_no % 2 == 0 else list(reversed(steps))  # no variant always goes first
        for label, step in order:
            await step()
            progress.step(f"round {round_no + 1}: {label}")

    def added(
        figures: dict[str, Figure], key: str, *, rate: bool, base_key: str = "without records"
    ) -> float:
        """The median over rounds of each round's paired ratio to ``base_key``."""
        base = figures[base_key].samples
        ratios = [(b / v if rate else v / b) - 1 for v, b in zip(figures[key].samples, base, strict=True)]
        return statistics.median(ratios)

    return {
        "config": asdict(cfg),
        "log_call": {
            "logger": logger_rate.summary(),
            "inside_log_call": inside.summary(),
            "raw_one_by_one": raw_rate.summary(),
            "raw_executemany": many_rate.summary(),
            "ratio_logger_vs_raw_one_by_one": logger_rate.median / raw_rate.median,
        },
        "records": {
            "sequential": {key: figure.summary() for key, figure in sequential.items()},
            "cpu_sequential": {
                "client": {key: figure.summary() for key, figure in client_cpu.items()},
                "server": {key: figure.summary() for key, figure in server_cpu.items() if figure.samples},
                "added_ms": {
                    side: {
                        "library": _median_added(figures, "with WorkflowRecords", "without records"),
                        "raw": _median_added(figures, _RAW_RECORDED, _RAW),
                    }
                    for side, figures in (("client", client_cpu), ("server", server_cpu))
                    if all(figure.samples for figure in figures.values())
                },
            },
            "concurrent": {key: figure.summary() for key, figure in concurrent.items()},
            "overhead_sequential": {
                key: added(sequential, key, rate=False) for key in engines if key != "without records"
            },
            "floor_sequential": added(sequential, _RAW_RECORDED, rate=False, base_key=_RAW),
            "added_ms_sequential": {
                "library": _median_added(sequential, "with WorkflowRecords", "without records"),
                "raw": _median_added(sequential, _RAW_RECORDED, _RAW),
            },
            "overhead_concurrent": {
                key: added(concurrent, key, rate=True) for key in concurrent if key != "without records"
            },
            "worker": {key: figure.summary() for key, figure in workers.items()},
            "overhead_worker": {"with WorkflowRecords": added(workers, "with WorkflowRecords", rate=True)},
            "followed": {key: figure.summary() for key, figure in phases.items()},
            "follower_lag": lag.summary(),
            "follower_process_lag": process_lag.summary(),
            "overhead_followed": {
                key: added(phases, key, rate=False) for key in phases if key != "without records"
            },
            "follow_poll": cfg.follow_poll,
            "goal": "records add under 20% to a flow's run time",
        },
    }


def _median_added(figures: dict[str, Figure], key: str, base: str) -> float:
    """The median over rounds of ``key``'s figure less ``base``'s in the same round."""
    return statistics.median(a - b for a, b in zip(figures[key].samples, figures[base].samples, strict=True))


_RAW = "raw asyncpg"
_RAW_RECORDED = "raw asyncpg with records"


def render(result: dict[str, Any]) -> str:
    """The results as a Markdown table (medians, min-max)."""
    lines = []
    env = result.get("environment")
    if env:
        before, after = env["load_average_before"], env["load_average_after"]
        server = env["server"]
        lines += [
            f"{env['when']}, {env['cpus']} CPUs, PostgreSQL {server['major']}.{server['minor']}, "
            f"synchronous_commit {env['synchronous_commit']}, load average (1 min) {before[0]:.1f} before, "
            f"{after[0]:.1f} after; {result['config']['rounds']} rounds, medians.",
            "",
        ]
    lines += ["| figure | median | min-max |", "|---|---|---|"]

    def row(f: dict[str, Any]) -> None:
        lines.append(f"| {f['name']} | {f['median']:,.1f} {f['unit']} | {f['min']:,.1f}-{f['max']:,.1f} |")

    log = result["log_call"]
    for key in ("logger", "raw_one_by_one", "raw_executemany", "inside_log_call"):
        row(log[key])
    lines.append(f"| **log_call / raw one by one** | **{log['ratio_logger_vs_raw_one_by_one']:.1f}x** | |")
    records = result["records"]
    for part in ("sequential", "concurrent", "worker", "followed"):
        if part not in records:
            continue
        for figure in records[part].values():
            row(figure)
        if part == "followed":
            row(records["follower_lag"])
            if "follower_process_lag" in records:
                row(records["follower_process_lag"])
        for key, overhead in records[f"overhead_{part}"].items():
            lines.append(f"| **{part}: time added {key}** | **{overhead:+.1%}** | goal < +20% |")
        if part == "sequential" and "floor_sequential" in records:
            ms = records["added_ms_sequential"]
            lines.append(
                f"| **the floor: time raw asyncpg's record writes add to its flow** | "
                f"**{records['floor_sequential']:+.1%}** | |"
            )
            lines.append(
                f"| time added per flow: WorkflowRecords / raw record writes | "
                f"{ms['library']:.2f} / {ms['raw']:.2f} ms | |"
            )
            for side, added_ms in records.get("cpu_sequential", {}).get("added_ms", {}).items():
                lines.append(
                    f"| {side} CPU added per flow: WorkflowRecords / raw record writes | "
                    f"{added_ms['library']:.2f} / {added_ms['raw']:.2f} ms | |"
                )
    return "\n".join(lines)


def write(result: dict[str, Any], output: Path) -> tuple[Path, Path]:
    output.mkdir(parents=True, exist_ok=True)
    json_path = output / "records.json"
    md_path = output / "records.md"
    json_path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    md_path.write_text(render(result) + "\n")
    return json_path, md_path
