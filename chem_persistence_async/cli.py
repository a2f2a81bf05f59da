"""``chem-persist``: migrate, run the demo, show a flow's error timeline or replay, benchmark."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from typing import Any

from chem_persistence_async.backends.postgres.database import Database
from chem_persistence_async.backends.postgres.event_store import PgEventStore
from chem_persistence_async.backends.postgres.migrations import pending_migration_ids
from chem_persistence_async.domain.flow import FlowInstance
from chem_persistence_async.domain.ids import to_flow_id
from chem_persistence_async.engine.demo import demo_definition
from chem_persistence_async.engine.engine import FlowEngine
from chem_persistence_async.engine.repository import PgFlowRepository
from chem_persistence_async.errors import ChemPersistError
from chem_persistence_async.replay import replay


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def _migrate(args: argparse.Namespace) -> int:
    _progress("opening the database…")
    async with Database.connect(args.url, auto_migrate=False) as db:
        async with db.acquire() as conn:
            pending = await pending_migration_ids(conn)
        if not pending:
            print(f"{db.url}: schema up to date")
            return 0
        _progress(f"applying {len(pending)} migration(s): {', '.join(pending)}")
        applied = await db.migrate()
        print(f"{db.url}: applied {', '.join(applied) or 'nothing (another process did)'}")
    return 0


async def _demo(args: argparse.Namespace) -> int:
    _progress("opening the database (embedded PostgreSQL when DATABASE_URL is unset)…")
    async with Database.connect(args.url) as db:
        engine = FlowEngine(PgEventStore(db), PgFlowRepository(), demo_definition(count=args.count))
        flow_id = await engine.run_to_end()
        print(f"flow_id:     {flow_id}")
        print(f"variants:    {','.join(await engine.event_variants(flow_id))}")
        print(f"fingerprint: {await engine.flow_fingerprint(flow_id)}")
    return 0


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


async def _timeline(args: argparse.Namespace) -> int:
    flow_id = to_flow_id(args.flow_id)
    async with Database.connect(args.url) as db:
        store = PgEventStore(db)
        errors = await store.get_error_timeline(flow_id, args.step)
        if not errors:
            print(f"flow {flow_id}: no failed attempts")
            return 0
        rows = [
            (
                e.ts.isoformat(timespec="milliseconds"),
                e.step_id,
                e.attempt_number,
                e.error_class.value,
                f"{e.retry_count}/{e.max_retries}",
                (e.error_message or "").splitlines()[0][:60] if e.error_message else "",
            )
            for e in errors
        ]
        print(f"flow {flow_id}: {len(errors)} failed attempt(s)")
        print(_table(("time", "step", "attempt", "class", "retries", "message"), rows))
        counts = await store.count_errors_by_flow(flow_id)
        print()
        print(
            _table(
                ("step", "class", "count"), [(s, c, n) for s, per in counts.items() for c, n in per.items()]
            )
        )
    return 0


async def _replay(args: argparse.Namespace) -> int:
    flow_id = to_flow_id(args.flow_id)
    async with Database.connect(args.url) as db:
        store = PgEventStore(db)
        events = await store.list(flow_id)
        if not events:
            print(f"flow {flow_id}: no events", file=sys.stderr)
            return 1
        print(
            _table(
                ("seq", "version", "time", "code", "event"),
                [
                    (e.seq, e.flow_version, e.ts.isoformat(timespec="milliseconds"), e.code, e.event_type)
                    for e in events
                ],
            )
        )
        if args.demo:
            instance: FlowInstance = replay(flow_id, events, demo_definition(count=args.count))
            print()
            print(json.dumps(_instance_summary(instance), indent=2))
    return 0


def _instance_summary(instance: FlowInstance) -> dict[str, Any]:
    return {
        "flow_id": str(instance.flow_id),
        "completed": instance.completed,
        "cursor": instance.cursor,
        "version": instance.version,
        "fingerprint": instance.fingerprint,
        "steps": [
            {
                "step_id": s.step_id,
                "status": s.status.value,
                "attempts": s.attempts,
                "retry_count": s.retry_count,
                "errors": len(s.errors),
                "outputs": len(s.outputs),
            }
            for s in instance.steps
        ],
    }


async def _bench(args: argparse.Namespace) -> int:
    from chem_persistence_async._bench import cli_main

    return int(await cli_main(args))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chem-persist", description=__doc__)
    parser.add_argument("--url", default=None, help="PostgreSQL URL (default: $DATABASE_URL, else embedded)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply pending schema migrations").set_defaults(handler=_migrate)
    demo = sub.add_parser("demo", help="run the demo flow and print its id, variants and fingerprint")
    demo.add_argument("--count", type=int, default=10, help="how many numbers the seed step makes")
    demo.set_defaults(handler=_demo)
    timeline = sub.add_parser("timeline", help="print a flow's failed attempts as a table")
    timeline.add_argument("flow_id")
    timeline.add_argument("--step", default=None, help="only this step")
    timeline.set_defaults(handler=_timeline)
    rep = sub.add_parser("replay", help="print a flow's events (and, with --demo, its replayed state)")
    rep.add_argument("flow_id")
    rep.add_argument("--demo", action="store_true", help="replay against the demo definition")
    rep.add_argument("--count", type=int, default=10)
    rep.set_defaults(handler=_replay)
    bench = sub.add_parser("bench", help="benchmark the stores against raw asyncpg")
    bench.add_argument("--quick", action="store_true", help="a short smoke run")
    bench.add_argument("--output", default=None, help="directory for results JSON and chart")
    bench.add_argument("--only", nargs="+", default=None, metavar="OP", help="run only these operations")
    bench.set_defaults(handler=_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(asyncio.run(args.handler(args)))
    except ChemPersistError as exc:
        print(f"chem-persist: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
