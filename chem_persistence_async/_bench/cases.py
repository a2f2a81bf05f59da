"""The benchmark cases: each library operation and the raw-asyncpg baselines doing its SQL work."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from chem_persistence_async._bench import raw
from chem_persistence_async._bench import workload as wl
from chem_persistence_async._bench.config import (
    GROWTH_OPERATION,
    QUEUE_OPERATIONS,
    SHAPES_OPERATIONS,
    SuiteConfig,
    check_operations,
    operation_names,
)
from chem_persistence_async._bench.peer import Peer
from chem_persistence_async._bench.runner import BenchmarkError, Case, Timed, Variant
from chem_persistence_async.backends.postgres.database import Database
from chem_persistence_async.backends.postgres.event_store import PgEventStore
from chem_persistence_async.domain.events import FlowEventKind
from chem_persistence_async.domain.flow import FlowDefinition
from chem_persistence_async.engine.demo import demo_definition
from chem_persistence_async.engine.engine import FlowEngine
from chem_persistence_async.engine.repository import PgFlowRepository
from chem_persistence_async.replay import replay


@dataclass
class Context:
    config: SuiteConfig
    db: Database
    store: PgEventStore
    solo_store: PgEventStore
    """The same pool with group commit off: what group commit gains, or costs a lone caller."""
    conn: asyncpg.Connection
    """A raw connection of its own (asyncpg defaults)."""
    pool: asyncpg.Pool
    """A raw asyncpg pool (defaults, ``max_size`` = ``config.pool_size``)."""
    read_flow: UUID
    read_definition: FlowDefinition
    demo_script: Sequence[wl.ScriptOp]
    peer: Peer | None = None
    """The optional peer (``eventsourcing``): extra baselines, after the raw ones, when installed."""


def _variant(
    key: str,
    label: str,
    prepare: Callable[[bool], Awaitable[Any]],
    run: Callable[[Any], Awaitable[int | Timed]],
) -> Variant:
    return Variant(key=key, label=label, prepare=prepare, run=run)


async def _nothing(warm: bool) -> None:
    return None


def _size(n: int, warm: bool, small: int = 10) -> int:
    return min(n, small) if warm else n


def _json_loads(text: str | bytes) -> Any:
    return json.loads(text)


def build_cases(ctx: Context) -> list[Case]:
    cases = [
        _single_append(ctx),
        _append_with_artifacts(ctx),
        _append_many(ctx),
        _list(ctx),
        _stream(ctx),
        _replay(ctx),
    ]
    cases += [_concurrent(ctx, tasks) for tasks in ctx.config.concurrency]
    cases.append(_demo_flow(ctx))
    store_operations = [
        n
        for n in operation_names(ctx.config.concurrency)
        if n not in QUEUE_OPERATIONS and n not in SHAPES_OPERATIONS and n != GROWTH_OPERATION
    ]
    assert [case.name for case in cases] == store_operations
    only = ctx.config.only
    if only:
        check_operations(only, ctx.config.concurrency)
        cases = [case for case in cases if case.name in only]
    return cases


# --- writes -------------------------------------------------------------------------------------


async def _append_each(store: PgEventStore, flow_id: UUID, kinds: Sequence[FlowEventKind]) -> int:
    """One ``append_kind`` per event, one after the other: one commit each (or a group's)."""
    for kind in kinds:
        await store.append_kind(flow_id, kind)
    return len(kinds)


def _single_append(ctx: Context) -> Case:
    n = ctx.config.single_appends
    store, conn = ctx.store, ctx.conn

    async def lib_prepare(warm: bool) -> tuple[UUID, list[FlowEventKind]]:
        return uuid4(), wl.single_kinds(_size(n, warm))

    async def lib_run(arg: tuple[UUID, list[FlowEventKind]]) -> int:
        return await _append_each(store, *arg)

    async def solo_run(arg: tuple[UUID, list[FlowEventKind]]) -> int:
        return await _append_each(ctx.solo_store, *arg)

    async def raw_prepare(warm: bool) -> tuple[UUID, list[dict[str, Any]]]:
        return uuid4(), [wl.as_dict(k) for k in wl.single_kinds(_size(n, warm))]

    async def autocommit(arg: tuple[UUID, list[dict[str, Any]]]) -> int:
        return await raw.insert_autocommit(conn, *arg)

    async def transaction(arg: tuple[UUID, list[dict[str, Any]]]) -> int:
        return await raw.insert_in_transaction(conn, *arg)

    return Case(
        name="single_append",
        title="append_kind, one event per commit, one after the other",
        unit="events/s",
        items=n,
        library=_variant("library", "PgEventStore.append_kind", lib_prepare, lib_run),
        baselines=[
            _variant("autocommit_insert", "raw autocommit INSERT", raw_prepare, autocommit),
            _variant("begin_insert_commit", "raw BEGIN+INSERT+COMMIT", raw_prepare, transaction),
            _variant("group_commit_off", "(library, group commit off)", lib_prepare, solo_run),
            *_peer_single(ctx, raw_prepare),
        ],
        goal=0.90,
    )


def _append_with_artifacts(ctx: Context) -> Case:
    n = ctx.config.artifact_appends
    store, conn = ctx.store, ctx.conn

    async def lib_prepare(warm: bool) -> tuple[UUID, list[Any]]:
        return uuid4(), wl.finished_with_artifacts(_size(n, warm), wl.new_salt())

    async def lib_run(arg: tuple[UUID, list[Any]]) -> int:
        flow_id, items = arg
        for kind, artifacts in items:
            await store.append_kind(flow_id, kind, artifacts=artifacts)
        return len(items)

    async def raw_prepare(warm: bool) -> tuple[UUID, list[tuple[dict[str, Any], list[raw.ArtifactRow]]]]:
        items = [
            (wl.as_dict(kind), [(a.hash, a.kind, a.payload) for a in artifacts])
            for kind, artifacts in wl.finished_with_artifacts(_size(n, warm), wl.new_salt())
        ]
        return uuid4(), items

    async def cte(arg: tuple[UUID, Any]) -> int:
        return await raw.insert_with_artifacts_cte(conn, *arg)

    async def two(arg: tuple[UUID, Any]) -> int:
        return await raw.insert_with_artifacts_two_statements(conn, *arg)

    return Case(
        name="append_with_artifacts",
        title="append_kind of a StepFinished with 2 new artifacts, one per commit",
        unit="events/s",
        items=n,
        library=_variant("library", "PgEventStore.append_kind(artifacts=2)", lib_prepare, lib_run),
        baselines=[
            _variant("cte_statement", "raw one CTE statement", raw_prepare, cte),
            _variant("two_statements_tx", "raw 2 statements in a transaction", raw_prepare, two),
        ],
        goal=0.90,
    )


def _append_many(ctx: Context) -> Case:
    cfg = ctx.config
    size, count = cfg.batch_size, cfg.batches
    store, conn = ctx.store, ctx.conn

    async def lib_prepare(warm: bool) -> tuple[UUID, list[list[FlowEventKind]]]:
        return uuid4(), [wl.batch_kinds(size, wl.new_salt()) for _ in range(_size(count, warm, 1))]

    async def lib_run(arg: tuple[UUID, list[list[FlowEventKind]]]) -> int:
        flow_id, batches = arg
        total = 0
        for kinds in batches:
            total += len(await store.append_many(flow_id, kinds))
        return total

    async def raw_prepare(warm: bool) -> tuple[UUID, list[list[dict[str, Any]]]]:
        batches = [
            [wl.as_dict(k) for k in wl.batch_kinds(size, wl.new_salt())] for _ in range(_size(count, warm, 1))
        ]
        return uuid4(), batches

    async def copy(arg: tuple[UUID, list[list[dict[str, Any]]]]) -> int:
        return await raw.copy_batches(conn, *arg)

    async def executemany(arg: tuple[UUID, list[list[dict[str, Any]]]]) -> int:
        return await raw.executemany_batches(conn, *arg)

    return Case(
        name="append_many",
        title=f"append_many of {size:,} events per transaction",
        unit="events/s",
        items=size * count,
        library=_variant("library", f"PgEventStore.append_many({size})", lib_prepare, lib_run),
        baselines=[
            _variant("copy", "raw COPY", raw_prepare, copy),
            _variant("executemany", "raw executemany in a transaction", raw_prepare, executemany),
            *_peer_batches(ctx, raw_prepare, size),
        ],
        goal=0.80,
    )


# --- reads --------------------------------------------------------------------------------------


def _read_baselines(ctx: Context, *, paged: bool = False) -> list[Variant]:
    conn, flow_id = ctx.conn, ctx.read_flow
    orjson_loads = raw.optional_loads("orjson")

    async def fetch_json(_: None) -> int:
        return await raw.fetch_decode(conn, flow_id, _json_loads)

    async def fetch_only(_: None) -> int:
        return await raw.fetch_only(conn, flow_id)

    variants = [_variant("fetch_json_loads", "raw fetch + json.loads", _nothing, fetch_json)]
    if orjson_loads is not None:
        loads = orjson_loads

        async def fetch_orjson(_: None) -> int:
            return await raw.fetch_decode(conn, flow_id, loads)

        variants.append(_variant("fetch_orjson", "raw fetch + orjson.loads", _nothing, fetch_orjson))
    if paged:
        size = ctx.config.stream_batch_size

        async def pages(_: None) -> int:
            return await raw.fetch_pages_decode(conn, flow_id, _json_loads, size)

        variants.append(
            _variant("pages_json_loads", f"raw keyset pages of {size} + json.loads", _nothing, pages)
        )
    variants.append(_variant("fetch_only", "raw fetch (no decoding)", _nothing, fetch_only))
    return variants


def _list(ctx: Context) -> Case:
    store, flow_id = ctx.store, ctx.read_flow

    async def lib_run(_: None) -> int:
        return len(await store.list(flow_id))

    return Case(
        name="list",
        title=f"list of one flow of {ctx.config.read_events:,} events (typed FlowEvents)",
        unit="events/s",
        items=ctx.config.read_events,
        library=_variant("library", "PgEventStore.list", _nothing, lib_run),
        baselines=[*_read_baselines(ctx), *_peer_select(ctx)],
        goal=1.0,
        warm_up=False,
    )


def _stream(ctx: Context) -> Case:
    store, flow_id, size = ctx.store, ctx.read_flow, ctx.config.stream_batch_size

    async def lib_run(_: None) -> int:
        count = 0
        async for _event in store.stream(flow_id, batch_size=size):
            count += 1
        return count

    return Case(
        name="stream",
        title=f"stream of one flow of {ctx.config.read_events:,} events, batches of {size}",
        unit="events/s",
        items=ctx.config.read_events,
        library=_variant("library", f"PgEventStore.stream(batch_size={size})", _nothing, lib_run),
        baselines=_read_baselines(ctx, paged=True),
        note="memory: see the peak RSS figures",
        warm_up=False,
    )


def _replay(ctx: Context) -> Case:
    store, flow_id, definition = ctx.store, ctx.read_flow, ctx.read_definition
    repository = PgFlowRepository()
    expected = ctx.config.read_events

    async def lib_run(_: None) -> int:
        instance = await repository.load(store, flow_id, definition)
        if instance.version != expected:
            raise BenchmarkError(f"replay reached version {instance.version}, expected {expected}")
        return instance.version

    case = Case(
        name="replay",
        title=f"PgFlowRepository.load: list + replay of {expected:,} events to a FlowInstance",
        unit="events/s",
        items=expected,
        library=_variant("library", "PgFlowRepository.load (list + replay)", _nothing, lib_run),
        baselines=[*_read_baselines(ctx)[:1], *_peer_get(ctx)],
        note="replay_only_events_per_s in extras: replay() alone on events already in memory",
        warm_up=False,
    )
    return case


async def replay_only_rate(ctx: Context, repetitions: int) -> dict[str, float]:
    """``replay()`` alone (pure CPU), events/s: median, min, max."""
    events = await ctx.store.list(ctx.read_flow)
    rates = []
    for _ in range(repetitions):
        start = time.perf_counter()
        replay(ctx.read_flow, events, ctx.read_definition)
        rates.append(len(events) / (time.perf_counter() - start))
    rates.sort()
    return {"median": rates[len(rates) // 2], "min": rates[0], "max": rates[-1]}


# --- concurrency --------------------------------------------------------------------------------


def _concurrent(ctx: Context, tasks: int) -> Case:
    per_task = max(1, ctx.config.concurrent_events // tasks)
    store, pool = ctx.store, ctx.pool

    async def lib_prepare(warm: bool) -> list[tuple[UUID, list[FlowEventKind]]]:
        return [(uuid4(), wl.single_kinds(_size(per_task, warm, 2))) for _ in range(tasks)]

    async def lib_run(arg: list[tuple[UUID, list[FlowEventKind]]]) -> int:
        return sum(await asyncio.gather(*(_append_each(store, f, k) for f, k in arg)))

    async def solo_run(arg: list[tuple[UUID, list[FlowEventKind]]]) -> int:
        return sum(await asyncio.gather(*(_append_each(ctx.solo_store, f, k) for f, k in arg)))

    async def raw_prepare(warm: bool) -> list[tuple[UUID, list[dict[str, Any]]]]:
        size = _size(per_task, warm, 2)
        return [(uuid4(), [wl.as_dict(k) for k in wl.single_kinds(size)]) for _ in range(tasks)]

    async def raw_run(arg: list[tuple[UUID, list[dict[str, Any]]]]) -> int:
        return sum(await asyncio.gather(*(raw.pool_insert_autocommit(pool, f, e) for f, e in arg)))

    return Case(
        name=f"concurrent_{tasks}",
        title=f"{tasks} concurrent tasks, one event per commit, pool of {ctx.config.pool_size}",
        unit="events/s",
        items=per_task * tasks,
        library=_variant("library", f"append_kind from {tasks} tasks", lib_prepare, lib_run),
        baselines=[
            _variant("raw_pool", f"raw asyncpg pool, {tasks} tasks", raw_prepare, raw_run),
            _variant("group_commit_off", "(library, group commit off)", lib_prepare, solo_run),
        ],
        goal=0.90 if tasks == 8 else None,
    )


# --- a whole flow -------------------------------------------------------------------------------


def _demo_flow(ctx: Context) -> Case:
    n = ctx.config.demo_flows
    store, conn, script = ctx.store, ctx.conn, ctx.demo_script
    repository = PgFlowRepository()
    definition = demo_definition()

    async def flows(warm: bool) -> int:
        return _size(n, warm, 1)

    async def lib_run(count: int) -> int:
        for _i in range(count):
            engine = FlowEngine(store, repository, definition)
            await engine.run_to_end()
        return count

    async def with_reads(count: int) -> int:
        for _i in range(count):
            await raw.run_demo_script(conn, script, reads=True)
        return count

    async def writes_only(count: int) -> int:
        for _i in range(count):
            await raw.run_demo_script(conn, script, reads=False)
        return count

    writes = sum(isinstance(op, wl.ScriptAppend) for op in script)
    loads = len(script) - writes
    return Case(
        name="demo_flow",
        title=f"FlowEngine.run_to_end of the demo flow ({writes} events, {loads} reloads)",
        unit="flows/s",
        items=n,
        library=_variant("library", "FlowEngine.run_to_end(demo)", flows, lib_run),
        baselines=[
            _variant("raw_writes_and_reads", "raw same writes + same reloads", flows, with_reads),
            _variant("raw_writes_only", "raw same writes only", flows, writes_only),
        ],
    )


# --- the optional peer (eventsourcing), after the raw baselines ---------------------------------

PEER_READ_CASES = ("list", "replay")
"""The cases whose peer variants read the peer's seeded aggregate."""


def _peer_single(ctx: Context, prepare: Callable[[bool], Awaitable[Any]]) -> list[Variant]:
    if ctx.peer is None:
        return []
    peer = ctx.peer

    async def run(arg: tuple[UUID, list[dict[str, Any]]]) -> Timed:
        return await peer.insert_one_per_call(*arg)

    return [
        _variant(
            "peer_insert_events", "(peer) eventsourcing recorder, 1 event per insert_events", prepare, run
        )
    ]


def _peer_batches(ctx: Context, prepare: Callable[[bool], Awaitable[Any]], size: int) -> list[Variant]:
    if ctx.peer is None:
        return []
    peer = ctx.peer

    async def run(arg: tuple[UUID, list[list[dict[str, Any]]]]) -> Timed:
        return await peer.insert_batches(*arg)

    label = f"(peer) eventsourcing recorder, {size} events per insert_events"
    return [_variant("peer_insert_events", label, prepare, run)]


def _peer_select(ctx: Context) -> list[Variant]:
    if ctx.peer is None:
        return []
    peer = ctx.peer

    async def run(_: None) -> Timed:
        return await peer.select_decode()

    label = "(peer) eventsourcing recorder, select_events + json.loads"
    return [_variant("peer_select_events", label, _nothing, run)]


def _peer_get(ctx: Context) -> list[Variant]:
    if ctx.peer is None:
        return []
    peer = ctx.peer

    async def run(_: None) -> Timed:
        return await peer.repository_get()

    return [_variant("peer_repository_get", "(peer) eventsourcing repository.get", _nothing, run)]
