"""The whole run: a dedicated database, the large flows, the interleaved rounds, RSS, the reports."""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID, uuid4

import anyio.to_thread
import asyncpg

from chem_persistence_async._bench import peer as peer_module
from chem_persistence_async._bench import queue_peers, report
from chem_persistence_async._bench import workload as wl
from chem_persistence_async._bench.cases import PEER_READ_CASES, Context, build_cases, replay_only_rate
from chem_persistence_async._bench.config import (
    GROWTH_OPERATION,
    QUEUE_OPERATIONS,
    SHAPES_OPERATIONS,
    SuiteConfig,
)
from chem_persistence_async._bench.growth import log_growth
from chem_persistence_async._bench.queue_cases import QueueContext, build_queue_cases, wake_latency
from chem_persistence_async._bench.rss import measure_in_subprocess
from chem_persistence_async._bench.runner import BenchmarkError, Progress, run_rounds, summarise
from chem_persistence_async._bench.shapes import ShapeContext, build_shape_cases
from chem_persistence_async.backends.postgres.database import Database
from chem_persistence_async.backends.postgres.embedded import start_embedded, stop_embedded_on_sigterm
from chem_persistence_async.domain.flow import FlowDefinition
from chem_persistence_async.settings import DatabaseSettings, redact_url

DEFAULT_OUTPUT = Path("benchmarks") / "results"


def url_with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + database))


@dataclass
class SuiteResult:
    results: dict[str, Any]
    json_path: Path | None
    chart_path: Path | None
    markdown_path: Path | None


async def resolve_url(url: str | None) -> str:
    """``url``, else ``DATABASE_URL``, else the library's default (the embedded server)."""
    connection = DatabaseSettings.load(url=url).connection
    if connection.url_value is not None:
        return connection.url_value
    stop_embedded_on_sigterm()  # as ``Database.open`` does: SIGTERM must not leave the server running
    return await anyio.to_thread.run_sync(start_embedded, connection.data_dir)


async def _create_database(server_url: str, synchronous_commit: str | None) -> tuple[str, str]:
    name = f"chem_bench_{os.getpid()}_{uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        if synchronous_commit is not None:
            await admin.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = {synchronous_commit}')
    finally:
        await admin.close()
    return name, url_with_database(server_url, name)


async def _drop_database(server_url: str, name: str) -> None:
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


async def _environment(conn: asyncpg.Connection) -> dict[str, Any]:
    settings = {}
    for name in ("server_version", "fsync", "synchronous_commit", "shared_buffers", "max_connections"):
        settings[name] = await conn.fetchval(f"SHOW {name}")
    return {
        **settings,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "asyncpg": _version("asyncpg"),
        "pydantic": _version("pydantic"),
        "orjson": _version("orjson"),
        "eventsourcing": _version("eventsourcing"),
        "pgqueuer": _version("pgqueuer"),
        "dbos": _version("dbos"),
        "chem_persistence_async": _version("chem-persistence-async"),
        "load_average_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


async def run_suite(
    url: str | None = None,
    *,
    config: SuiteConfig | None = None,
    output: Path | str | None = None,
    dedicated_database: bool = True,
    progress: Progress | None = None,
) -> SuiteResult:
    """Run every benchmark once, interleaved, and write the results (``output=None``: write nothing).

    With ``dedicated_database`` (the default) a fresh ``chem_bench_*`` database is created on the
    server of ``url`` and dropped afterwards; otherwise ``url`` must name a database the run may
    fill (a fresh, migrated one: the test suite's).
    """
    cfg = config or SuiteConfig.full()
    progress = progress or Progress()
    started = datetime.now(UTC)
    server_url = await resolve_url(url)
    name: str | None = None
    if dedicated_database:
        name, bench_url = await _create_database(server_url, cfg.synchronous_commit)
        progress.note(f"created database {name} on {redact_url(server_url)}")
    else:
        bench_url = server_url
        if cfg.synchronous_commit is not None:
            raise ValueError("synchronous_commit can only be set on a dedicated database")
    try:
        results = await _run(bench_url, cfg, progress, server_url)
    finally:
        if name is not None:
            await _drop_database(server_url, name)
            progress.note(f"dropped database {name}")
    results["started_at"] = started.isoformat()
    results["duration_s"] = progress.elapsed
    results["environment"]["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None

    json_path = chart_path = md_path = None
    if output is not None:
        directory = Path(output)
        stem = cfg.stem
        json_path = report.write_json(results, directory / f"{stem}.json")
        md_path = directory / f"{stem}.md"
        md_path.write_text(report.markdown(results), encoding="utf-8")
        chart_path = report.write_chart(results, directory / f"{stem}.png")
        progress.note(f"wrote {json_path}, {md_path}" + (f", {chart_path}" if chart_path else ""))
        if chart_path is None:
            progress.note("no chart: matplotlib is not installed (the 'bench' extra)")
    return SuiteResult(results, json_path, chart_path, md_path)


def _selected(cfg: SuiteConfig, names: tuple[str, ...] | list[str]) -> bool:
    return not cfg.only or any(name in cfg.only for name in names)


async def _run(
    bench_url: str, cfg: SuiteConfig, progress: Progress, server_url: str | None = None
) -> dict[str, Any]:
    progress.note(
        f"{'quick' if cfg.quick else 'full'} run: {cfg.repetitions} round(s)"
        f"{' after a warm-up round' if cfg.warmup else ''}"
    )
    db = await Database.open(bench_url, min_connections=2, max_connections=cfg.pool_size)
    conn: asyncpg.Connection = await asyncpg.connect(bench_url)
    pool: asyncpg.Pool | None = None
    peer: peer_module.Peer | None = None
    pgq: queue_peers.PgQueuerPeer | None = None
    dbos: queue_peers.DbosPeer | None = None
    try:
        pool = await asyncpg.create_pool(bench_url, min_size=2, max_size=cfg.pool_size)
        store_names = [n for n in cfg.only if n not in QUEUE_OPERATIONS and n not in SHAPES_OPERATIONS]
        if not cfg.only or store_names:
            peer = await peer_module.open_peer(bench_url)
        peer_status = peer_module.status()
        if peer is None and peer_status["available"]:
            peer_status = {
                **peer_status,
                "available": False,
                "skipped": "none of its operations was selected",
            }
        if peer is None:
            progress.note(f"peer: eventsourcing skipped, {peer_status['skipped']}")
        else:
            progress.note(f"peer: eventsourcing {peer_status['version']}, tables in schema {peer.schema}")
        queue_peer_status = []
        if _selected(cfg, ["queue_produce_consume"]):
            pgq = await queue_peers.open_pgqueuer(bench_url)
            queue_peer_status.append(queue_peers.pgqueuer_status())
            if pgq is not None:
                progress.note(
                    f"peer: pgqueuer {queue_peer_status[-1]['version']}, tables in schema {pgq.schema}"
                )
        if _selected(cfg, [n for n in QUEUE_OPERATIONS if n.startswith("flows_workers_")]):
            dbos, dbos_status = await queue_peers.open_dbos(
                server_url or bench_url, lambda name: url_with_database(server_url or bench_url, name)
            )
            queue_peer_status.append(dbos_status)
            if dbos is not None:
                progress.note(f"peer: dbos {dbos_status['version']}, system database {dbos.name}")
        for status in queue_peer_status:
            if not status["available"]:
                progress.note(f"peer: {status['name']} skipped, {status['skipped']}")
        environment = await _environment(conn)
        definition = wl.read_definition()
        read_flow = uuid4()
        if _selected(cfg, ["list", "stream", "replay"]):
            await wl.seed_flow(conn, read_flow, cfg.read_events, definition, progress=progress.note)
            await conn.execute("VACUUM ANALYZE event_log")
        from chem_persistence_async.backends.postgres.event_store import PgEventStore

        store = PgEventStore(db)
        ctx = Context(
            config=cfg,
            db=db,
            store=store,
            solo_store=PgEventStore(db, group_commit=False),
            conn=conn,
            pool=pool,
            read_flow=read_flow,
            read_definition=definition,
            demo_script=await wl.demo_script(),
            peer=peer,
        )
        cases = build_cases(ctx)
        qctx = QueueContext(config=cfg, db=db, store=store, conn=conn, url=bench_url, pgqueuer=pgq, dbos=dbos)
        cases += build_queue_cases(qctx, cfg.only)
        if _selected(cfg, SHAPES_OPERATIONS):
            sctx = ShapeContext(config=cfg, url=bench_url, store=store, conn=conn, pool=pool)
            cases += await build_shape_cases(sctx, progress.note)
        if peer is not None and any(case.name in PEER_READ_CASES for case in cases):
            await peer.seed_read_aggregate(cfg.read_events, progress=progress.note)
        await run_rounds(cases, repetitions=cfg.repetitions, warmup=cfg.warmup, progress=progress)
        wake: dict[str, Any] | None = None
        if _selected(cfg, ["wake_latency"]):
            progress.note(
                f"wake-up latency: {cfg.wake_jobs} flows per side, one every {cfg.wake_gap * 1000:.0f} ms…"
            )
            wake = await wake_latency(qctx)
            progress.note(
                "wake-up latency (median / p99 ms): "
                + ", ".join(
                    f"{k} {v['median_ms']:.1f} / {v['p99_ms']:.1f}"
                    for k, v in wake.items()
                    if isinstance(v, dict)
                )
            )
        growth: dict[str, Any] | None = None
        if _selected(cfg, [GROWTH_OPERATION]):
            growth = await log_growth(
                db, conn, sizes=cfg.growth_sizes, flows=cfg.growth_flows, tasks=32, note=progress.note
            )
        replay_case = next((c for c in cases if c.name == "replay"), None)
        if replay_case is not None:
            replay_case.extras["replay_only_events_per_s"] = await replay_only_rate(ctx, cfg.repetitions)
        operations = [summarise(case) for case in cases]
        group_commit = store.group_commit_stats

        # Flat memory: stream the read flow and a 10x larger one, and list the read flow, each in a
        # fresh subprocess (peak RSS belongs to that read alone).
        memory: list[dict[str, Any]] = []
        big_flow = uuid4()
        if cfg.memory:
            memory = await _memory(bench_url, conn, cfg, read_flow, big_flow, definition, progress)

        per_flow = "SELECT count(*) FROM event_log WHERE flow_id = $1"
        counts = {
            "read_flow_rows": await conn.fetchval(per_flow, read_flow),
            "big_flow_rows": await conn.fetchval(per_flow, big_flow),
            "event_log_rows": await conn.fetchval("SELECT count(*) FROM event_log"),
            "artifact_rows": await conn.fetchval("SELECT count(*) FROM workflow_step_artifacts"),
        }
    finally:
        try:
            if peer is not None:
                await peer.close()
            if pgq is not None:
                await pgq.close()
            if dbos is not None:
                await dbos.close()
        finally:
            if pool is not None:
                await pool.close()
            await conn.close()
            await db.close()
    return {
        "suite": "chem-persistence-async benchmarks",
        "format": 1,
        "quick": cfg.quick,
        "config": cfg.as_dict(),
        "environment": environment,
        "operations": operations,
        "memory": memory,
        "counts": counts,
        "group_commit": group_commit,
        "peer": peer_status,
        "queue_peers": queue_peer_status,
        "wake_latency": wake,
        "log_growth": growth,
        "definitions": {
            "throughput": "items (events, or flows for demo_flow) per second over one sample",
            "ratio": "library throughput / raw throughput, paired per round; > 1 means the library is faster",
            "median_min_max": "over the timed rounds (interleaved round-robin, variant order rotated)",
        },
    }


async def _memory(
    bench_url: str,
    conn: asyncpg.Connection,
    cfg: SuiteConfig,
    read_flow: UUID,
    big_flow: UUID,
    definition: FlowDefinition,
    progress: Progress,
) -> list[dict[str, Any]]:
    """Flat memory: stream the read flow and a larger one, and list the read flow, each in a fresh
    subprocess (its peak RSS belongs to that read alone). The quick run does the three at once."""
    await wl.seed_flow(conn, big_flow, cfg.rss_events, definition, progress=progress.note)
    await conn.execute("VACUUM ANALYZE event_log")
    reads = [
        (read_flow, "stream", cfg.read_events),
        (big_flow, "stream", cfg.rss_events),
        (read_flow, "list", cfg.read_events),
    ]

    async def one(flow_id: UUID, mode: str, events: int) -> dict[str, Any]:
        progress.note(f"peak RSS: {mode} of {events:,} events in a subprocess…")
        measured = await measure_in_subprocess(bench_url, flow_id, mode, cfg.stream_batch_size)
        if measured["events"] != events:
            raise BenchmarkError(f"RSS {mode} read {measured['events']} events, expected {events}")
        progress.note(
            f"peak RSS: {mode} of {events:,} events: {measured['peak_rss_mib']:.1f} MiB "
            f"(+{measured['growth_mib']:.1f} MiB over {measured['rss_before_mib']:.1f}), "
            f"{measured['events_per_s']:,.0f} events/s"
        )
        return measured

    if cfg.quick:
        return list(await asyncio.gather(*(one(*read) for read in reads)))
    return [await one(*read) for read in reads]


async def cli_main(args: argparse.Namespace) -> int:
    """``chem-persist bench`` and ``benchmarks/run.py``: run, print the table, write the results."""
    quick = bool(getattr(args, "quick", False))
    config = (SuiteConfig.quick_run() if quick else SuiteConfig.full()).with_options(
        repetitions=getattr(args, "repetitions", None),
        memory=False if getattr(args, "no_memory", False) else None,
        synchronous_commit=getattr(args, "synchronous_commit", None),
        only=tuple(getattr(args, "only", None) or ()),
    )
    output = getattr(args, "output", None)
    result = await run_suite(
        getattr(args, "url", None),
        config=config,
        output=Path(output) if output is not None else DEFAULT_OUTPUT,
    )
    print(report.console(result.results))
    print()
    for m in result.results["memory"]:
        print(
            f"peak RSS, {m['mode']} of {m['events']:,} events: {m['peak_rss_mib']:.1f} MiB "
            f"(+{m['growth_mib']:.1f} MiB)"
        )
    print(f"\n{'quick' if quick else 'full'} run took {result.results['duration_s']:.1f} s", file=sys.stderr)
    return 0
