"""``chem-persist``: migrate, run the demo, show a flow's error timeline or replay, benchmark.

Exit status: 0 done; 1 the demo flow failed; 2 a usage or configuration mistake, or any error the
library raised on purpose (one line on stderr, never a traceback, never a password); 130 after
Ctrl-C, 143 after SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from chem_persistence_async import __version__
from chem_persistence_async._bench.config import operation_names
from chem_persistence_async.backends.postgres.database import Database
from chem_persistence_async.backends.postgres.event_store import PgEventStore
from chem_persistence_async.backends.postgres.migrations import pending_migration_ids
from chem_persistence_async.domain.events import FlowEvent, FlowInitialized, StepFailed, StepFinished
from chem_persistence_async.domain.flow import FlowDefinition, FlowInstance, StepStatus
from chem_persistence_async.domain.ids import to_flow_id
from chem_persistence_async.engine.demo import demo_definition
from chem_persistence_async.engine.engine import FlowEngine
from chem_persistence_async.engine.repository import PgFlowRepository
from chem_persistence_async.errors import ChemPersistError, DefinitionMismatchError, FlowNotFoundError
from chem_persistence_async.replay import replay

DESCRIPTION = (
    "chem-persist: durable PostgreSQL persistence for an event-sourced workflow engine. "
    "Apply the schema, run the demo flow, inspect a flow's failed attempts or events, and "
    "benchmark the stores."
)
EPILOG = (
    "The database is --url, else $DATABASE_URL, else an embedded PostgreSQL in "
    "$CHEM_PERSIST_DATA_DIR (default: the user data directory). Every other setting comes from "
    "the environment variables listed in the README (DATABASE_MAX_CONNECTIONS, ...). "
    "Exit status: 0 done, 1 the demo flow failed, 2 a usage, configuration or library error."
)
URL_HELP = (
    "PostgreSQL URL, e.g. postgresql://user:password@host:5432/db (percent-encode special characters "
    "in the password); default: $DATABASE_URL, else the embedded server"
)
DEMO_COUNT = 10


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def _migrate(args: argparse.Namespace) -> int:
    opener = Database.connect(args.url, auto_migrate=False)  # settings are checked here, before any output
    _progress("opening the database…")
    async with opener as db:
        async with db.acquire() as conn:
            pending = await pending_migration_ids(conn)
        if not pending:
            print(f"{db.describe()}: schema up to date")
            return 0
        _progress(f"applying {len(pending)} migration(s): {', '.join(pending)}")
        applied = await db.migrate()
        print(f"{db.describe()}: applied {', '.join(applied) or 'nothing (another process did)'}")
    return 0


async def _demo(args: argparse.Namespace) -> int:
    opener = Database.connect(args.url)
    _progress("opening the database (embedded PostgreSQL when DATABASE_URL is unset)…")
    async with opener as db:
        print(f"database:    {db.describe()}", flush=True)
        engine = FlowEngine(PgEventStore(db), PgFlowRepository(), demo_definition(count=args.count))
        flow_id = await engine.run_to_end()
        instance = await engine.load(flow_id)
        print(f"flow_id:     {flow_id}")
        print(f"variants:    {','.join(await engine.event_variants(flow_id))}")
        print(f"fingerprint: {instance.fingerprint}")
        print(f"status:      {_status(instance)}")
    return 0 if instance.completed else 1


def _status(instance: FlowInstance) -> str:
    if instance.completed:
        return "completed"
    for slot in instance.steps:
        if slot.status is StepStatus.FAILED:
            last = slot.errors[-1] if slot.errors else None
            why = f" ({last.error_class.value}): {last.error_message}" if last is not None else ""
            return f"failed at step {slot.step_id!r}{why}"
    return "not finished"


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


async def _require_flow(store: PgEventStore, flow_id: UUID) -> None:
    if await store.flow_version(flow_id) == 0:
        raise FlowNotFoundError(f"flow {flow_id} does not exist in this database (it has no events)")


async def _timeline(args: argparse.Namespace) -> int:
    flow_id = to_flow_id(args.flow_id)
    async with Database.connect(args.url) as db:
        store = PgEventStore(db)
        await _require_flow(store, flow_id)
        errors = await store.get_error_timeline(flow_id, args.step)
        if not errors:
            if args.step is not None:
                events = await store.list(flow_id)
                ran = {str(step) for e in events if (step := getattr(e.kind, "step_id", None))}
                if args.step not in ran:
                    names = ", ".join(sorted(ran)) or "none yet"
                    raise FlowNotFoundError(
                        f"flow {flow_id} has run no step {args.step!r} (steps it ran: {names})"
                    )
            scope = f" of step {args.step!r}" if args.step is not None else ""
            print(f"flow {flow_id}: no failed attempts{scope}")
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
            raise FlowNotFoundError(f"flow {flow_id} does not exist in this database (it has no events)")
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
            definition = demo_definition(count=args.count)
            try:
                instance = replay(flow_id, events, definition)
            except DefinitionMismatchError:
                raise DefinitionMismatchError(
                    await _demo_mismatch(store, flow_id, events, args.count, definition)
                ) from None
            print()
            print(json.dumps(_instance_summary(instance), indent=2))
    return 0


async def _demo_mismatch(
    store: PgEventStore, flow_id: UUID, events: Sequence[FlowEvent], count: int, definition: FlowDefinition
) -> str:
    """Say how the flow's definition differs from the demo's with ``--count count``, and what to pass."""
    init = events[0].kind
    if not isinstance(init, FlowInitialized):
        return f"flow {flow_id} does not begin with FlowInitialized: its events are not a flow's"
    if init.definition_name != definition.name:
        return (
            f"flow {flow_id} was started with definition {init.definition_name!r} "
            f"({init.step_count} steps), not the demo: replay it without --demo"
        )
    for start, candidate in await _demo_params_seen(store, events):
        if demo_definition(start=start, count=candidate).hash == init.definition_hash:
            if start != 1:
                return f"flow {flow_id} was started with the demo for start={start}, count={candidate}"
            return (
                f"flow {flow_id} was started with the demo for --count {candidate}, not --count {count}: "
                f"run 'chem-persist replay {flow_id} --demo --count {candidate}'"
            )
    return (
        f"flow {flow_id} was started with another demo definition (hash {init.definition_hash[:12]}…; "
        f"--count {count} gives {definition.hash[:12]}…): pass the --count the demo ran with"
    )


async def _demo_params_seen(store: PgEventStore, events: Sequence[FlowEvent]) -> list[tuple[int, int]]:
    """The demo's seed parameters as the flow recorded them: in a failure's details, or in the
    numbers the seed step produced."""
    seen: list[tuple[int, int]] = []
    for event in events:
        kind = event.kind
        if isinstance(kind, StepFailed) and kind.step_id == "seed" and kind.error.details:
            params = kind.error.details.get("params")
            if isinstance(params, dict):
                start, count = params.get("start"), params.get("count")
                if isinstance(start, int) and isinstance(count, int):
                    seen.append((start, count))
        if isinstance(kind, StepFinished) and kind.step_id == "seed" and kind.outputs:
            for artifact in (await store.get_artifacts(kind.outputs)).values():
                payload = artifact.payload
                values = payload.get("values") if isinstance(payload, dict) else None
                if isinstance(values, list) and all(isinstance(v, int) for v in values):
                    first = values[0] if values else 1
                    seen.append((int(first), len(values)))  # type: ignore[arg-type]
    return seen


def _instance_summary(instance: FlowInstance) -> dict[str, Any]:
    return {
        "flow_id": str(instance.flow_id),
        "completed": instance.completed,
        "failed": instance.failed,
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
    parser = argparse.ArgumentParser(prog="chem-persist", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--url", default=None, help=URL_HELP)
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}", help="print the version and exit"
    )
    # ``--url`` after the subcommand too; SUPPRESS keeps an absent one from hiding one given before.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=argparse.SUPPRESS, help=URL_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], help=summary, description=description)

    command(
        "migrate",
        "apply pending schema migrations",
        "Apply the pending schema migrations (what opening a database does by itself unless "
        "CHEM_PERSIST_AUTO_MIGRATE=false), then say which were applied.",
    ).set_defaults(handler=_migrate)

    demo = command(
        "demo",
        "run the demo flow and print its id, variants, fingerprint and status",
        "Run the four-step demo flow (seed, split, forward, print_and_count) to its end and print "
        "the database it used, the flow id, its event variants (I,S,F,C), its fingerprint and "
        "whether it completed. Exits 1 if the flow failed.",
    )
    demo.add_argument(
        "--count",
        type=int,
        default=DEMO_COUNT,
        metavar="N",
        help=f"how many numbers the seed step makes (default {DEMO_COUNT}; a negative N fails the flow)",
    )
    demo.set_defaults(handler=_demo)

    timeline = command(
        "timeline",
        "print a flow's failed attempts as a table",
        "Print a flow's failed attempts in attempt order, then their counts per step and error class.",
    )
    timeline.add_argument("flow_id", metavar="FLOW_ID", help="the flow's id (a UUID)")
    timeline.add_argument("--step", default=None, metavar="STEP_ID", help="only this step's attempts")
    timeline.set_defaults(handler=_timeline)

    rep = command(
        "replay",
        "print a flow's events (and, with --demo, its replayed state)",
        "Print a flow's events in order; with --demo, also replay them against the demo definition "
        "and print the flow's state.",
    )
    rep.add_argument("flow_id", metavar="FLOW_ID", help="the flow's id (a UUID)")
    rep.add_argument("--demo", action="store_true", help="replay against the demo flow's definition")
    rep.add_argument(
        "--count",
        type=int,
        default=DEMO_COUNT,
        metavar="N",
        help=f"with --demo: the --count the demo ran with (default {DEMO_COUNT}; part of its definition)",
    )
    rep.set_defaults(handler=_replay)

    names = operation_names()
    bench = command(
        "bench",
        "benchmark the stores against raw asyncpg",
        "Benchmark each store operation against raw asyncpg doing the same SQL, in a database of its "
        "own that is dropped afterwards; results go to --output. Operations: " + ", ".join(names) + ".",
    )
    bench.add_argument("--quick", action="store_true", help="a short smoke run (a few hundred events)")
    bench.add_argument(
        "--output", default=None, metavar="DIR", help="directory for results JSON, table and chart"
    )
    bench.add_argument(
        "--only",
        nargs="+",
        default=None,
        choices=names,
        metavar="OP",
        help="run only these operations: " + ", ".join(names),
    )
    bench.set_defaults(handler=_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(asyncio.run(args.handler(args)))
    except ChemPersistError as exc:
        message = " ".join(str(exc).split("\n"))
        print(f"chem-persist: {type(exc).__name__}: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
