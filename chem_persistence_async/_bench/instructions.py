"""Client instructions per operation, the library next to raw asyncpg, counted by callgrind.

On a shared 2-core machine a wall-clock ratio moves 0.8-1.3 from one run to the next, so a change
worth less than about 20% cannot be seen in the suite's figures. The instructions the client
process executes are repeatable (within 0.1-2% between runs) whatever else the machine does: the
measure for the library's own cost per call, the part of each missed per-call goal it controls.

Each workload's library variant and raw variant run in a child Python process under
``valgrind --tool=callgrind``, twice: after the same set-up, ``n`` operations and ``3n``
operations. ``(I(3n) - I(n)) / 2n`` is what one operation costs the client: the interpreter's
start-up, the imports and the set-up cancel out. What the server does is another process and
is not counted, nor is time spent waiting; an instruction is not a nanosecond (cache misses are
not counted either), so this ranks and sizes levers, and the suite's wall-clock ratios say what
users see.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import asyncpg

from chem_persistence_async._bench import raw
from chem_persistence_async._bench import shapes as sh
from chem_persistence_async._bench import workload as wl
from chem_persistence_async.backends.postgres.database import Database
from chem_persistence_async.backends.postgres.event_store import PgEventStore
from chem_persistence_async.domain.events import StepFinished
from chem_persistence_async.engine.engine import FlowEngine
from chem_persistence_async.engine.repository import FlowRepository

WARM = 30
"""Operations before the counted ones in both runs (statement caches, the pool, first calls)."""

Run = Callable[[str, int, int], Coroutine[Any, Any, int]]
"""``run(url, n, span)``: set up for ``span`` operations (the same in both runs of a pair), do
``WARM + n`` of them, return how many were done."""


@dataclass(frozen=True)
class Workload:
    name: str
    what: str
    library: Run
    raw: Run
    raw_label: str


async def _open(url: str) -> tuple[Database, PgEventStore]:
    db = await Database.open(url, min_connections=1, max_connections=2, auto_migrate=False)
    return db, PgEventStore(db)


def _append(kind: str) -> tuple[Run, Run]:
    async def library(url: str, n: int, span: int) -> int:
        items = sh._kinds(kind, WARM + span, wl.new_salt())[: WARM + n]
        db, store = await _open(url)
        try:
            flow_id = uuid4()
            for event, artifacts in items:
                await store.append_kind(flow_id, event, artifacts=artifacts)
        finally:
            await db.close()
        return len(items)

    async def raw_run(url: str, n: int, span: int) -> int:
        items = [wl.as_dict(event) for event, _ in sh._kinds(kind, WARM + span, wl.new_salt())][: WARM + n]
        conn = await asyncpg.connect(url)
        try:
            return await raw.insert_autocommit(conn, uuid4(), items)
        finally:
            await conn.close()

    return library, raw_run


def _flows_for(span: int) -> int:
    """Flows of ``SHAPE_STEPS_PER_FLOW`` steps enough for ``WARM + span`` steps."""
    return -(-(WARM + span) // sh.SHAPE_STEPS_PER_FLOW)


async def _step_library(url: str, n: int, span: int) -> int:
    db, store = await _open(url)
    try:
        engine = FlowEngine(store, FlowRepository(), sh._step_definition())
        per_flow = sh.SHAPE_STEPS_PER_FLOW
        flows = [await engine.load(await engine.start()) for _ in range(_flows_for(span))]
        done = 0
        for instance in flows:
            for _ in range(per_flow):
                if done == WARM + n:
                    return done
                instance = await engine.execute(instance, engine.plan(instance))
                done += 1
        return done
    finally:
        await db.close()


async def _step_raw(url: str, n: int, span: int) -> int:
    """The two autocommit INSERTs a step amounts to (``shapes``' engine step baseline)."""
    per_flow = sh.SHAPE_STEPS_PER_FLOW
    lease = datetime.now(UTC).isoformat()
    events: list[dict[str, Any]] = []
    for i in range(per_flow):
        events.append(wl.as_dict(wl.started(i)) | {"lease_until": lease})
        events.append(
            wl.as_dict(StepFinished(step_index=i, step_id=f"s{i}", fingerprint=wl._fingerprint("x", i)))
        )
    flows = [[dict(e) for e in events] for _ in range(_flows_for(span))]
    conn = await asyncpg.connect(url)
    try:
        done = 0
        for flow in flows:
            flow_id = uuid4()
            for step in range(per_flow):
                if done == WARM + n:
                    return done
                for version in (2 * step + 1, 2 * step + 2):
                    event = flow[version - 1]
                    await conn.execute(
                        raw.INSERT_EVENT, uuid4(), flow_id, version, event["event_type"], json.dumps(event)
                    )
                done += 1
        return done
    finally:
        await conn.close()


def _list(size: int) -> tuple[Run, Run]:
    async def seeded(url: str) -> tuple[Database, PgEventStore, Any]:
        db, store = await _open(url)
        return db, store, await sh.seed_shape_flow(store, sh.generate_flow(size), size)

    async def library(url: str, n: int, span: int) -> int:
        db, store, flow_id = await seeded(url)
        try:
            return sum([len(await store.list(flow_id)) for _ in range(WARM + n)]) // size
        finally:
            await db.close()

    async def raw_run(url: str, n: int, span: int) -> int:
        db, _store, flow_id = await seeded(url)
        await db.close()
        conn = await asyncpg.connect(url)
        try:
            return sum([await raw.fetch_decode(conn, flow_id, json.loads) for _ in range(WARM + n)]) // size
        finally:
            await conn.close()

    return library, raw_run


WORKLOADS: dict[str, Workload] = {
    "append_started": Workload(
        "append_started", "append_kind of a StepStarted", *_append("started"), "raw autocommit INSERT"
    ),
    "append_signal": Workload(
        "append_signal",
        "append_kind of a StepSignal (120-char signal, small data dict)",
        *_append("signal"),
        "raw autocommit INSERT",
    ),
    "engine_step": Workload(
        "engine_step",
        "one engine step (engine.execute: StepStarted, a no-op, StepFinished)",
        _step_library,
        _step_raw,
        "raw 2 autocommit INSERTs",
    ),
    "list_10": Workload("list_10", "list of a 10-event flow", *_list(10), "raw fetch + json.loads"),
    "list_100": Workload("list_100", "list of a 100-event flow", *_list(100), "raw fetch + json.loads"),
}


# --- the child: one variant of one workload, under callgrind ---------------------------------------


def child_main(argv: Sequence[str]) -> int:
    """``python -m chem_persistence_async._bench.instructions WORKLOAD VARIANT N SPAN URL``."""
    name, variant, n, span, url = argv
    workload = WORKLOADS[name]
    run = workload.library if variant == "library" else workload.raw
    done = asyncio.run(run(url, int(n), int(span)))
    if done != WARM + int(n):
        print(f"{name} {variant}: did {done} operations, not {WARM + int(n)}", file=sys.stderr)
        return 1
    return 0


# --- the driver ------------------------------------------------------------------------------------

_COLLECTED = re.compile(r"Collected : (\d+)")


def collected(stderr: str) -> int:
    """The instruction count callgrind prints at exit (``==pid== Collected : N``)."""
    match = _COLLECTED.search(stderr)
    if match is None:
        raise RuntimeError(f"no instruction count in callgrind's output: {stderr[-500:]!r}")
    return int(match.group(1))


def per_operation(small: int, large: int, n: int) -> float:
    """Instructions of one operation, from the counts of ``n`` and ``3n`` operations."""
    if large <= small:
        raise RuntimeError(f"3n operations counted {large:,} instructions, n counted {small:,}")
    return (large - small) / (2 * n)


async def _count(name: str, variant: str, n: int, span: int, url: str) -> int:
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise RuntimeError("valgrind is not installed (apt-get install valgrind)")
    proc = await asyncio.create_subprocess_exec(
        valgrind,
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        "-m",
        __name__,
        name,
        variant,
        str(n),
        str(span),
        url,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    _, err = await proc.communicate()
    stderr = err.decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{name} {variant} failed under callgrind: {stderr[-800:]}")
    return collected(stderr)


async def measure(name: str, variant: str, n: int, url: str) -> float:
    """One variant's instructions per operation: its ``n`` and ``3n`` runs side by side."""
    small, large = await asyncio.gather(
        _count(name, variant, n, 3 * n, url), _count(name, variant, 3 * n, 3 * n, url)
    )
    return per_operation(small, large, n)


async def run_instructions(url: str, names: Sequence[str], n: int) -> dict[str, Any]:
    """Every workload of ``names``, library and raw, in a fresh database on ``url``'s server."""
    from chem_persistence_async._bench.suite import _create_database, _drop_database, resolve_url

    server = await resolve_url(url)
    database, bench_url = await _create_database(server, None)
    try:
        db = await Database.open(bench_url)  # migrated once, before any child runs
        await db.close()
        rows = []
        for name in names:
            workload = WORKLOADS[name]
            library = await measure(name, "library", n, bench_url)
            baseline = await measure(name, "raw", n, bench_url)
            rows.append(
                {
                    "workload": name,
                    "what": workload.what,
                    "library": round(library),
                    "raw": round(baseline),
                    "raw_label": workload.raw_label,
                    "ratio": round(baseline / library, 3),
                }
            )
            print(
                f"{name}: library {library:,.0f}, raw {baseline:,.0f} instructions per operation",
                file=sys.stderr,
            )
    finally:
        await _drop_database(server, database)
    return {
        "n": n,
        "finished_at": datetime.now(UTC).isoformat(),
        "python": sys.version.split()[0],
        "rows": rows,
    }


def render(result: dict[str, Any]) -> str:
    lines = [
        f"Client instructions per operation (callgrind, runs of {result['n']:,} and {3 * result['n']:,}"
        " operations; the server's work not counted)",
        "",
        "| workload | library | raw | raw / library |",
        "|---|---|---|---|",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['what']} | {row['library']:,} | {row['raw']:,} ({row['raw_label']}) "
            f"| {row['ratio']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def write(result: dict[str, Any], directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "instructions.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (directory / "instructions.md").write_text(render(result), encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    """``benchmarks/instructions.py``: ``[--url URL] [--n N] [--output DIR] [WORKLOAD ...]``."""
    parser = argparse.ArgumentParser(description="client instructions per operation, library and raw")
    parser.add_argument("workloads", nargs="*", help=f"of {', '.join(WORKLOADS)} (default: all)")
    parser.add_argument("--url", default=None, help="server URL (default: $DATABASE_URL, else embedded)")
    parser.add_argument("--n", type=int, default=300, help="operations of the smaller run (default 300)")
    parser.add_argument("--output", default=None, help="directory for instructions.{json,md}")
    args = parser.parse_args(argv)
    unknown = [name for name in args.workloads if name not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(unknown)}: choose from {', '.join(WORKLOADS)}")
    result = asyncio.run(run_instructions(args.url, args.workloads or list(WORKLOADS), args.n))
    if args.output is not None:
        write(result, Path(args.output))
    print(render(result), end="")
    return 0


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
