"""The parser and ``main``: which command runs, and how errors become exit statuses."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from chem_persistence_async import __version__
from chem_persistence_async._bench.config import GROUPS, operation_names
from chem_persistence_async.cli import inspect, records, setup, workers
from chem_persistence_async.errors import ChemPersistError

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


DEMO_COUNT = setup.DEMO_COUNT


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
    ).set_defaults(handler=setup.migrate)

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
    demo.set_defaults(handler=setup.demo)

    timeline = command(
        "timeline",
        "print a flow's failed attempts as a table",
        "Print a flow's failed attempts in attempt order, then their counts per step and error class.",
    )
    timeline.add_argument("flow_id", metavar="FLOW_ID", help="the flow's id (a UUID)")
    timeline.add_argument("--step", default=None, metavar="STEP_ID", help="only this step's attempts")
    timeline.set_defaults(handler=inspect.timeline)

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
    rep.set_defaults(handler=inspect.replay_flow)

    names = (*operation_names(), *GROUPS)
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
    bench.set_defaults(handler=setup.bench)

    work = command(
        "worker",
        "run flows from the work queue until stopped",
        "Claim and run the flows of the given definitions from the work queue until SIGTERM or "
        "Ctrl-C, which stop it gracefully (running steps get the grace period to finish; the rest "
        "are released at once). Defaults come from the CHEM_PERSIST_WORKER_* settings.",
    )
    work.add_argument(
        "target",
        metavar="MODULE:ATTR",
        help="a FlowDefinition, an iterable of them, or a callable returning either (e.g. myapp.flows:ORDER)",
    )
    work.add_argument("--concurrency", type=int, default=None, metavar="N", help="jobs run at once")
    work.add_argument(
        "--queue", action="append", default=None, metavar="Q", help="a queue to claim from (repeatable)"
    )
    work.add_argument("--lease", type=float, default=None, metavar="S", help="seconds a claim holds a job")
    work.add_argument(
        "--poll-interval",
        type=float,
        default=None,
        metavar="S",
        help="seconds between claims with no wake-up",
    )
    work.add_argument(
        "--no-listen", action="store_true", help="poll only (behind PgBouncer in transaction mode)"
    )
    work.add_argument(
        "--no-records",
        action="store_true",
        help="keep no workflow records (runs and stages) for the flows it runs",
    )
    work.add_argument(
        "--grace", type=float, default=None, metavar="S", help="seconds to let steps finish on stop"
    )
    work.add_argument(
        "--worker-id", default=None, metavar="ID", help="this worker's name in logs and the queue"
    )
    work.add_argument(
        "--max-retries",
        type=int,
        default=3,
        metavar="N",
        help="retries of a failed step (RetryPolicy, default 3)",
    )
    work.add_argument(
        "--retry-delay", type=float, default=0.05, metavar="S", help="first retry's delay (doubles each time)"
    )
    work.add_argument(
        "--max-retry-delay", type=float, default=30.0, metavar="S", help="the longest delay between retries"
    )
    work.set_defaults(handler=workers.worker)

    command(
        "queue",
        "show the work queue: depth, oldest ready job, expired leases, dead jobs",
        "Per queue: jobs ready now, scheduled for later, claimed, claimed with a lease run out, the "
        "age of the oldest ready job, and how many finished as completed, dead or cancelled.",
    ).set_defaults(handler=workers.queue)
    records.add_commands(command)
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
