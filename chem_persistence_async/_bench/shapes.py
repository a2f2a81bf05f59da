"""The shapes users have (issue 15), each next to raw asyncpg doing the same work in the same run.

* single appends of a fixed-shape event and of events carrying free-form JSON (a ``StepSignal``
  with a 120-character signal and a small data dict, a ``StepFailed`` with the details the engine
  writes, a ``StepFinished`` with one artifact of about 1 KB or 100 KB);
* ``append_many`` of mixed events, 32 concurrent tasks appending signals;
* reads of flows of 10 to 10,000 events (prefixes of one flow the engine ran, so they carry
  signals, failures and retries), warm and through a second ``Database`` opened cold;
* one engine step (``StepStarted``, a no-op, the outcome) against the two INSERTs it amounts to.

A small flow is read many times per sample, so every sample times about the same work.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from chem_persistence_async._bench import raw
from chem_persistence_async._bench import workload as wl
from chem_persistence_async._bench.config import SHAPES_OPERATIONS, SuiteConfig
from chem_persistence_async._bench.runner import BenchmarkError, Case, Variant
from chem_persistence_async.backends.postgres.database import Database
from chem_persistence_async.backends.postgres.event_store import PgEventStore
from chem_persistence_async.domain.artifacts import Artifact
from chem_persistence_async.domain.events import (
    FlowEvent,
    FlowEventKind,
    FlowInitialized,
    RetryScheduled,
    StepFailed,
    StepFinished,
    StepSignal,
    StepStarted,
)
from chem_persistence_async.domain.failures import ErrorClass, StepErrorInfo
from chem_persistence_async.domain.fingerprints import failure_fingerprint, step_fingerprint
from chem_persistence_async.domain.flow import FlowDefinition, FlowInstance
from chem_persistence_async.engine.engine import Attempt, FlowEngine
from chem_persistence_async.engine.planner import RunStep
from chem_persistence_async.engine.repository import FlowRepository
from chem_persistence_async.replay import replay

SIGNAL = "reaction-monitor/" + "conversion-above-threshold-" * 4
SIGNAL = (SIGNAL + "x" * 120)[:120]
"""A 120-character signal name, as the issue's ``StepSignal``."""

SHAPE_STEPS_PER_FLOW = 10
"""Steps of each flow the engine-step case runs (started untimed)."""


def signal_data(i: int) -> dict[str, Any]:
    """A small free-form dict (a float, an int, a string, a list), as a step's signal carries."""
    return {"conversion": 0.5 + (i % 50) / 100, "sample": i, "phase": "heating", "temps": [25, 60, 80]}


def failure_details(i: int) -> dict[str, Any]:
    """What the engine writes as a failure's details: a stack trace, the input hash, the params."""
    trace = "".join(
        f'  File "/app/steps/reaction.py", line {100 + k}, in run\n    result = await client.call(x{k})\n'
        for k in range(8)
    )
    return {
        "stack_trace": "Traceback (most recent call last):\n" + trace + f"TimeoutError: attempt {i}",
        "input_hash": wl._fingerprint("input", i),
        "params": {"temperature": 80.5, "solvent": "toluene", "equivalents": [1.0, 1.2]},
        "exception_type": "builtins.TimeoutError",
    }


def artifact_payload(i: int, salt: str, size: int) -> dict[str, Any]:
    """A free-form payload of about ``size`` bytes of JSON: rows of a measurement table."""
    row_size = 60  # about the JSON of one row below
    rows = [
        {"id": k, "smiles": "CC(=O)OC1=CC=CC=C1C(=O)O", "score": round(0.001 * ((i + k) % 997), 3)}
        for k in range(max(1, size // row_size))
    ]
    return {"run": salt, "i": i, "rows": rows}


# --- the flow the reads read ---------------------------------------------------------------------


def _steps_for(events: int) -> int:
    """Steps enough for a flow of ``events`` events (2 per step, 1 more per signal, 3 per failure)."""
    total, steps = 1, 0
    while total < events + 1:
        total += 2 + (steps % 3 == 0) + 3 * (steps % 5 == 0)
        steps += 1
    return steps


def shape_definition(events: int) -> FlowDefinition:
    return FlowDefinition("bench-shapes", [wl.BenchStep(f"step-{i}") for i in range(_steps_for(events))])


@dataclass
class ShapeFlow:
    definition: FlowDefinition
    kinds: list[FlowEventKind]
    artifacts: dict[str, Artifact]


def generate_flow(events: int) -> ShapeFlow:
    """The events an engine writes for the shapes' definition: each step produces a small artifact,
    every 3rd also signals (free-form data), every 5th fails once (transient, with the engine's
    details) and is retried. Built directly rather than run (faster, and exact about the shape);
    checked by one ``replay``."""
    definition = shape_definition(events)
    lease = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
    kinds: list[FlowEventKind] = [
        FlowInitialized(
            definition_name=definition.name,
            definition_hash=definition.hash,
            step_count=len(definition.steps),
            inputs={"batch": "B-2026-11", "targets": ["yield", "purity"]},
        )
    ]
    artifacts: dict[str, Artifact] = {}
    previous = definition.hash
    for i, step_id in enumerate(definition.step_ids):
        kinds.append(StepStarted(step_index=i, step_id=step_id, attempt=1, lease_until=lease))
        if i % 5 == 0:
            error = StepErrorInfo(
                error_class=ErrorClass.TRANSIENT,
                message=f"instrument timed out at step {i}",
                details=failure_details(i),
            )
            fingerprint = failure_fingerprint(previous, step_id, 1, error.error_class.value)
            kinds += [
                StepFailed(
                    step_index=i,
                    step_id=step_id,
                    attempt=1,
                    error=error,
                    retry_count=0,
                    max_retries=3,
                    fingerprint=fingerprint,
                ),
                RetryScheduled(step_index=i, step_id=step_id, retry_index=1, reason="transient: timed out"),
                StepStarted(step_index=i, step_id=step_id, attempt=2, lease_until=lease),
            ]
        if i % 3 == 0:
            kinds.append(StepSignal(step_index=i, step_id=step_id, signal=SIGNAL, data=signal_data(i)))
        artifact = Artifact.of("measurement", {"step": i, "yield": 0.87, "notes": "ok"})
        artifacts[artifact.hash] = artifact
        previous = step_fingerprint(previous, step_id, [artifact.hash])
        kinds.append(
            StepFinished(step_index=i, step_id=step_id, outputs=(artifact.hash,), fingerprint=previous)
        )
        if len(kinds) >= events:
            break
    kinds = kinds[:events]
    now = datetime.now(UTC)
    flow_id = uuid4()
    log = [FlowEvent(v, flow_id, v, now, kind, uuid4()) for v, kind in enumerate(kinds, 1)]
    if replay(flow_id, log, definition).version != events:
        raise BenchmarkError(f"the shapes' flow does not replay to {events} events")
    return ShapeFlow(definition, kinds, artifacts)


async def seed_shape_flow(store: PgEventStore, flow: ShapeFlow, events: int, chunk: int = 1000) -> UUID:
    """Write the first ``events`` events of ``flow`` through the library (error rows, artifacts)."""
    flow_id = uuid4()
    kinds = flow.kinds[:events]
    for low in range(0, events, chunk):
        part = kinds[low : low + chunk]
        hashes = dict.fromkeys(h for k in part if isinstance(k, StepFinished) for h in k.outputs)
        await store.append_many(
            flow_id, part, artifacts=[flow.artifacts[h] for h in hashes], expected_version=low
        )
    return flow_id


# --- the cases -----------------------------------------------------------------------------------


_BACKGROUND_EVENTS = 20

_BACKGROUND = """
INSERT INTO event_log (event_id, flow_id, flow_version, event_type, payload)
SELECT gen_random_uuid(), f.id, g, 'stepstarted',
    jsonb_build_object('event_type', 'stepstarted', 'step_index', 0, 'step_id', 's0', 'attempt', g)
FROM (SELECT gen_random_uuid() AS id FROM generate_series(1, $1::int)) AS f, generate_series(1, $2::int) AS g
"""
"""Other flows, so that the statistics ``ANALYZE`` takes describe a table of many flows, as a real
one is (with only the few read flows, the planner takes every flow for a large one: see the README)."""


@dataclass
class ShapeContext:
    config: SuiteConfig
    url: str
    """The benchmark database: cold reads open a second ``Database`` (and raw connection) on it."""
    store: PgEventStore
    conn: asyncpg.Connection
    pool: asyncpg.Pool
    flows: dict[int, tuple[UUID, FlowDefinition]] = field(default_factory=dict)
    """Per size, the seeded flow and its definition (steps enough for that many events)."""


async def _nothing(warm: bool) -> None:
    return None


def _variant(
    key: str, label: str, prepare: Callable[[bool], Awaitable[Any]], run: Callable[[Any], Awaitable[int]]
) -> Variant:
    return Variant(key=key, label=label, prepare=prepare, run=run)


def _size(n: int, warm: bool) -> int:
    return min(n, 3) if warm else n


async def build_shape_cases(ctx: ShapeContext, note: Callable[[str], None]) -> list[Case]:
    """The shapes selected by ``config.only`` (all when empty), their flows seeded first (untimed)."""
    cfg = ctx.config
    wanted = [n for n in SHAPES_OPERATIONS if not cfg.only or n in cfg.only]
    sizes = [s for s in cfg.shape_flow_sizes if any(n.endswith(f"_{s}") for n in wanted)]
    if sizes:
        for size in sizes:
            flow = generate_flow(size)
            ctx.flows[size] = (await seed_shape_flow(ctx.store, flow, size), flow.definition)
        await ctx.conn.execute(_BACKGROUND, cfg.shape_background_flows, _BACKGROUND_EVENTS)
        note(
            f"shapes: seeded flows of {', '.join(f'{s:,}' for s in sizes)} events, and "
            f"{cfg.shape_background_flows:,} other flows of {_BACKGROUND_EVENTS}"
        )
        await ctx.conn.execute("VACUUM ANALYZE event_log")
    builders: dict[str, Callable[[], Case]] = {
        "shape_append_started": lambda: _append(ctx, "started"),
        "shape_append_signal": lambda: _append(ctx, "signal"),
        "shape_append_failure": lambda: _append(ctx, "failure"),
        "shape_append_artifact_1k": lambda: _append(ctx, "artifact_1k"),
        "shape_append_artifact_100k": lambda: _append(ctx, "artifact_100k"),
        "shape_append_many": lambda: _append_many(ctx),
        "shape_concurrent_32": lambda: _concurrent(ctx, 32),
        "shape_engine_step": lambda: _engine_step(ctx),
    }
    for size in sizes:
        for read in ("list", "stream", "load"):
            builders[f"shape_{read}_{size}"] = partial(_read, ctx, read, size, cold=False)
            if read != "stream":
                builders[f"shape_{read}_cold_{size}"] = partial(_read, ctx, read, size, cold=True)
    return [builders[name]() for name in wanted if name in builders]


# --- single appends --------------------------------------------------------------------------------


def _kinds(kind: str, n: int, salt: str) -> list[tuple[FlowEventKind, tuple[Artifact, ...]]]:
    """``n`` events of one shape, each with the artifacts it lists (new ones: a fresh ``salt``)."""
    out: list[tuple[FlowEventKind, tuple[Artifact, ...]]] = []
    for i in range(n):
        if kind == "started":
            out.append((wl.started(i), ()))
        elif kind == "signal":
            out.append(
                (StepSignal(step_index=i % 10, step_id=f"s{i % 10}", signal=SIGNAL, data=signal_data(i)), ())
            )
        elif kind == "failure":
            error = StepErrorInfo(
                error_class=ErrorClass.TRANSIENT,
                message=f"instrument timed out ({i})",
                details=failure_details(i),
            )
            failed = StepFailed(
                step_index=i % 10,
                step_id=f"s{i % 10}",
                attempt=1 + i // 10,
                error=error,
                retry_count=0,
                max_retries=3,
                fingerprint=wl._fingerprint(salt, i),
            )
            out.append((failed, ()))
        else:
            size = 1024 if kind == "artifact_1k" else 100 * 1024
            artifact = Artifact.of("table", artifact_payload(i, salt, size))
            finished = StepFinished(
                step_index=i % 10,
                step_id=f"s{i % 10}",
                outputs=(artifact.hash,),
                fingerprint=wl._fingerprint(salt, i),
            )
            out.append((finished, (artifact,)))
    return out


def _append(ctx: ShapeContext, kind: str) -> Case:
    n = ctx.config.shape_big_appends if kind == "artifact_100k" else ctx.config.shape_appends
    store, conn = ctx.store, ctx.conn
    with_artifacts = kind.startswith("artifact")

    async def lib_prepare(warm: bool) -> tuple[UUID, list[tuple[FlowEventKind, tuple[Artifact, ...]]]]:
        return uuid4(), _kinds(kind, _size(n, warm), wl.new_salt())

    async def lib_run(arg: tuple[UUID, list[tuple[FlowEventKind, tuple[Artifact, ...]]]]) -> int:
        flow_id, items = arg
        for event, artifacts in items:
            await store.append_kind(flow_id, event, artifacts=artifacts)
        return len(items)

    async def raw_prepare(warm: bool) -> tuple[UUID, list[tuple[dict[str, Any], list[raw.ArtifactRow]]]]:
        items = [
            (wl.as_dict(event), [(a.hash, a.kind, a.payload) for a in artifacts])
            for event, artifacts in _kinds(kind, _size(n, warm), wl.new_salt())
        ]
        return uuid4(), items

    async def raw_run(arg: tuple[UUID, list[tuple[dict[str, Any], list[raw.ArtifactRow]]]]) -> int:
        flow_id, items = arg
        if with_artifacts:
            return await raw.insert_with_artifacts_cte(conn, flow_id, items)
        events = [event for event, _ in items]
        if kind == "failure":
            return await raw.insert_failed_autocommit(conn, flow_id, events)
        return await raw.insert_autocommit(conn, flow_id, events)

    label, what = {
        "started": ("raw autocommit INSERT", "a StepStarted (fixed shape)"),
        "signal": ("raw autocommit INSERT", "a StepSignal (120-char signal, small data dict)"),
        "failure": ("raw autocommit INSERT + its error row (one CTE)", "a StepFailed with details (~800 B)"),
        "artifact_1k": ("raw one CTE statement (event + artifact)", "a StepFinished with a 1 KB artifact"),
        "artifact_100k": (
            "raw one CTE statement (event + artifact)",
            "a StepFinished with a 100 KB artifact",
        ),
    }[kind]
    return Case(
        name=f"shape_append_{kind}",
        title=f"append_kind of {what}, one per commit",
        unit="events/s",
        items=n,
        library=_variant("library", "PgEventStore.append_kind", lib_prepare, lib_run),
        baselines=[_variant("raw_statement", label, raw_prepare, raw_run)],
        goal=0.90,
        note="inputs built before the clock; validation + encoding (library), json.dumps (raw) timed",
    )


def _mixed(n: int, salt: str) -> list[FlowEventKind]:
    """StepStarted, StepSignal (free-form), StepFinished (no outputs), in turn."""
    kinds: list[FlowEventKind] = []
    for i in range(n):
        step = (i // 3) % 10
        if i % 3 == 0:
            kinds.append(wl.started(i // 3))
        elif i % 3 == 1:
            kinds.append(StepSignal(step_index=step, step_id=f"s{step}", signal=SIGNAL, data=signal_data(i)))
        else:
            kinds.append(
                StepFinished(step_index=step, step_id=f"s{step}", fingerprint=wl._fingerprint(salt, i))
            )
    return kinds


def _append_many(ctx: ShapeContext) -> Case:
    size, count = ctx.config.batch_size, ctx.config.shape_batches
    store, conn = ctx.store, ctx.conn

    async def lib_prepare(warm: bool) -> tuple[UUID, list[list[FlowEventKind]]]:
        return uuid4(), [_mixed(size, wl.new_salt()) for _ in range(min(count, 1) if warm else count)]

    async def lib_run(arg: tuple[UUID, list[list[FlowEventKind]]]) -> int:
        flow_id, batches = arg
        return sum([len(await store.append_many(flow_id, kinds)) for kinds in batches])

    async def raw_prepare(warm: bool) -> tuple[UUID, list[list[dict[str, Any]]]]:
        batches = [
            [wl.as_dict(k) for k in _mixed(size, wl.new_salt())]
            for _ in range(min(count, 1) if warm else count)
        ]
        return uuid4(), batches

    async def copy(arg: tuple[UUID, list[list[dict[str, Any]]]]) -> int:
        return await raw.copy_batches(conn, *arg)

    return Case(
        name="shape_append_many",
        title=f"append_many of {size:,} mixed events (1 in 3 a StepSignal with free-form data)",
        unit="events/s",
        items=size * count,
        library=_variant("library", f"PgEventStore.append_many({size})", lib_prepare, lib_run),
        baselines=[_variant("copy", "raw COPY", raw_prepare, copy)],
        goal=0.90,
    )


def _concurrent(ctx: ShapeContext, tasks: int) -> Case:
    per_task = max(1, ctx.config.concurrent_events // tasks)
    store, pool = ctx.store, ctx.pool

    def signals(n: int) -> list[FlowEventKind]:
        return [StepSignal(step_index=0, step_id="s0", signal=SIGNAL, data=signal_data(i)) for i in range(n)]

    async def lib_prepare(warm: bool) -> list[tuple[UUID, list[FlowEventKind]]]:
        return [(uuid4(), signals(min(per_task, 2) if warm else per_task)) for _ in range(tasks)]

    async def each(flow_id: UUID, kinds: list[FlowEventKind]) -> int:
        for kind in kinds:
            await store.append_kind(flow_id, kind)
        return len(kinds)

    async def lib_run(arg: list[tuple[UUID, list[FlowEventKind]]]) -> int:
        return sum(await asyncio.gather(*(each(f, k) for f, k in arg)))

    async def raw_prepare(warm: bool) -> list[tuple[UUID, list[dict[str, Any]]]]:
        n = min(per_task, 2) if warm else per_task
        return [(uuid4(), [wl.as_dict(k) for k in signals(n)]) for _ in range(tasks)]

    async def raw_run(arg: list[tuple[UUID, list[dict[str, Any]]]]) -> int:
        return sum(await asyncio.gather(*(raw.pool_insert_autocommit(pool, f, e) for f, e in arg)))

    return Case(
        name=f"shape_concurrent_{tasks}",
        title=f"{tasks} tasks appending StepSignals (free-form data), one per commit, group commit on",
        unit="events/s",
        items=per_task * tasks,
        library=_variant("library", f"append_kind from {tasks} tasks", lib_prepare, lib_run),
        baselines=[_variant("raw_pool", f"raw asyncpg pool, {tasks} tasks", raw_prepare, raw_run)],
        goal=3.0,
    )


# --- one engine step ------------------------------------------------------------------------------


def _step_definition() -> FlowDefinition:
    return FlowDefinition("bench-step", [wl.BenchStep(f"s{i}") for i in range(SHAPE_STEPS_PER_FLOW)])


def _engine_step(ctx: ShapeContext) -> Case:
    steps = max(SHAPE_STEPS_PER_FLOW, ctx.config.shape_steps // SHAPE_STEPS_PER_FLOW * SHAPE_STEPS_PER_FLOW)
    definition = _step_definition()
    engine = FlowEngine(ctx.store, FlowRepository(), definition)
    conn = ctx.conn

    async def lib_prepare(warm: bool) -> list[FlowInstance]:
        flows = 1 if warm else steps // SHAPE_STEPS_PER_FLOW
        return [await engine.load(await engine.start()) for _ in range(flows)]

    async def lib_run(instances: list[FlowInstance]) -> int:
        done = 0
        for instance in instances:
            for _ in range(SHAPE_STEPS_PER_FLOW):
                instance = await engine.execute(instance, engine.plan(instance))
                done += 1
        return done

    async def chained(instances: list[FlowInstance]) -> int:
        """As ``run_to_end`` does: the outcome and the next ``StepStarted`` in one append."""
        done = 0
        for instance in instances:
            action = engine.plan(instance)
            assert isinstance(action, RunStep)
            attempt: Attempt | None = await engine.begin(instance, action)
            while attempt is not None:  # the last commit appends the FlowCompleted instead
                outcome = await engine.run_attempt(attempt)
                attempt = (await engine.commit(attempt, outcome, chain=True)).then
                done += 1
        return done

    async def raw_prepare(warm: bool) -> list[list[dict[str, Any]]]:
        flows = 1 if warm else steps // SHAPE_STEPS_PER_FLOW
        out = []
        for _ in range(flows):
            events: list[dict[str, Any]] = []
            for i in range(SHAPE_STEPS_PER_FLOW):
                events.append(wl.as_dict(wl.started(i)) | {"lease_until": "2026-11-28T10:00:00+00:00"})
                events.append(
                    wl.as_dict(
                        StepFinished(step_index=i, step_id=f"s{i}", fingerprint=wl._fingerprint("x", i))
                    )
                )
            out.append(events)
        return out

    async def raw_run(flows: list[list[dict[str, Any]]]) -> int:
        for events in flows:
            await raw.insert_autocommit(conn, uuid4(), events)
        return len(flows) * SHAPE_STEPS_PER_FLOW

    return Case(
        name="shape_engine_step",
        title="one engine step: StepStarted, a no-op step, its StepFinished (engine.execute)",
        unit="steps/s",
        items=steps,
        library=_variant("library", "FlowEngine.execute (begin, run, commit)", lib_prepare, lib_run),
        baselines=[
            _variant(
                "raw_two_inserts",
                "raw 2 autocommit INSERTs (StepStarted, StepFinished)",
                raw_prepare,
                raw_run,
            ),
            _variant("chained", "(library) chained commit, as run_to_end", lib_prepare, chained),
        ],
        goal=0.80,
        note=f"flows of {SHAPE_STEPS_PER_FLOW} no-op steps, started and loaded untimed",
    )


# --- reads ----------------------------------------------------------------------------------------


@dataclass
class _Cold:
    """What a cold read holds: a second ``Database`` (or raw connection) per read, opened untimed."""

    dbs: list[Database] = field(default_factory=list)
    conns: list[asyncpg.Connection] = field(default_factory=list)

    @property
    def stores(self) -> list[PgEventStore]:
        """A fresh store per second ``Database``; a cold load builds its ``FlowEngine`` in the timed
        read, as a second process does (a warm load reuses one)."""
        return [PgEventStore(db) for db in self.dbs]


def _read(ctx: ShapeContext, op: str, size: int, *, cold: bool) -> Case:
    cfg = ctx.config
    flow_id, definition = ctx.flows[size]
    reads = max(1, cfg.shape_read_events // size)
    if cold:
        reads = min(reads, cfg.shape_cold_reads)
    warm_store = ctx.store
    repository = FlowRepository()
    orjson_loads = raw.optional_loads("orjson")

    warm_engine = FlowEngine(warm_store, repository, definition)

    async def read_once(store: PgEventStore, engine: FlowEngine) -> int:
        if op == "list":
            return len(await store.list(flow_id))
        if op == "stream":
            count = 0
            async for _event in store.stream(flow_id, batch_size=cfg.stream_batch_size):
                count += 1
            return count
        instance = await engine.load(flow_id)
        return instance.version

    async def open_cold(warm: bool) -> _Cold:
        n = 1 if warm else reads
        return _Cold(
            dbs=[
                await Database.open(ctx.url, min_connections=1, max_connections=1, auto_migrate=False)
                for _ in range(n)
            ]
        )

    async def close_cold(cold_dbs: _Cold) -> None:
        for db in cold_dbs.dbs:
            await db.close()
        for conn in cold_dbs.conns:
            await conn.close()

    async def lib_warm(_: None) -> int:
        return sum([await read_once(warm_store, warm_engine) for _ in range(reads)])

    async def lib_cold(held: _Cold) -> int:
        return sum(
            [await read_once(store, FlowEngine(store, repository, definition)) for store in held.stores]
        )

    async def raw_open(warm: bool) -> _Cold:
        n = 1 if warm else reads
        return _Cold(conns=[await asyncpg.connect(ctx.url) for _ in range(n)])

    def raw_warm(loads: Callable[[str], Any], whole: bool = False) -> Callable[[None], Awaitable[int]]:
        fetch = raw.fetch_flow_decode if whole else raw.fetch_decode

        async def run(_: None) -> int:
            return sum([await fetch(ctx.conn, flow_id, loads) for _ in range(reads)])

        return run

    def raw_cold(loads: Callable[[str], Any], whole: bool = False) -> Callable[[_Cold], Awaitable[int]]:
        fetch = raw.fetch_flow_decode if whole else raw.fetch_decode

        async def run(held: _Cold) -> int:
            return sum([await fetch(conn, flow_id, loads) for conn in held.conns])

        return run

    def variant(key: str, label: str, run_warm: Any, run_cold: Any, *, library: bool = False) -> Variant:
        if not cold:
            return Variant(key=key, label=label, prepare=_nothing, run=run_warm)
        return Variant(
            key=key, label=label, prepare=open_cold if library else raw_open, run=run_cold, cleanup=close_cold
        )

    what = {"list": "PgEventStore.list", "stream": "PgEventStore.stream", "load": "FlowEngine.load"}[op]
    how = (
        "a second Database per read (its connect untimed, its first query timed)"
        if cold
        else "the suite's Database"
    )
    baselines = [
        variant("fetch_json_loads", "raw fetch + json.loads", raw_warm(json.loads), raw_cold(json.loads))
    ]
    if op == "load":
        label = "raw fetch of load's statement (events + error rows) + json.loads"
        whole = variant("load_statement", label, raw_warm(json.loads, True), raw_cold(json.loads, True))
        baselines.append(whole)
    if orjson_loads is not None:
        goal = 0.9 if size >= 10_000 else None
        orjson_variant = variant(
            "fetch_orjson", "raw fetch + orjson.loads (dicts)", raw_warm(orjson_loads), raw_cold(orjson_loads)
        )
        baselines.append(replace(orjson_variant, goal=goal))
    cold_label = " (cold)" if cold else ""
    return Case(
        name=f"shape_{op}{'_cold' if cold else ''}_{size}",
        title=f"{what}{cold_label} of a flow of {size:,} events, {reads} read(s) per sample, through {how}",
        unit="events/s",
        items=size * reads,
        library=variant("library", f"{what}{cold_label}", lib_warm, lib_cold, library=True),
        baselines=baselines,
        goal=1.0,
        warm_up=not cold,
        note=("raw side: asyncpg.connect untimed, its first fetch (prepare + execute) timed" if cold else ""),
    )
