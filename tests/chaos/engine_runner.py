"""One chaos process (``python -m tests.chaos.engine_runner``): ``run_to_end`` over every flow of a
list, in an order of its own, ``--tasks`` flows at a time, then exit 0.

Several of these run the same flows at once and are killed with SIGKILL at random; whatever goes
wrong in one (an ``ErrorRecordMismatchError``, a conflict ``run_to_end`` did not resolve) ends it
with a traceback on stderr and a non-zero status, which fails the test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import sys
from datetime import timedelta
from pathlib import Path

from chem_persistence_async import Database, FlowEngine, FlowRepository, PgEventStore, RetryPolicy
from tests.chaos.flows import chaos_definition

READY = "chaos engine: running"
"""What a process prints once it opened the database and starts on the flows (only then is it worth
killing: a kill during start-up hits nothing)."""


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--flows", type=Path, required=True, help="a JSON list of flow ids")
    parser.add_argument("--p", type=float, required=True)
    parser.add_argument("--sleep", type=float, required=True)
    parser.add_argument("--lease", type=float, required=True, help="attempt lease, seconds")
    parser.add_argument("--max-retries", type=int, required=True)
    parser.add_argument("--tasks", type=int, default=4)
    return parser.parse_args(argv)


async def main(args: argparse.Namespace) -> None:
    flows: list[str] = json.loads(args.flows.read_text())
    random.shuffle(flows)
    async with Database.connect(args.url, min_connections=1, max_connections=args.tasks) as db:
        engine = FlowEngine(
            PgEventStore(db),
            FlowRepository(),
            chaos_definition(args.p, args.sleep),
            retry_policy=RetryPolicy(max_retries=args.max_retries, initial_delay=0.01, max_delay=0.1),
            attempt_lease=timedelta(seconds=args.lease),
        )
        print(READY, file=sys.stderr, flush=True)
        todo: asyncio.Queue[str] = asyncio.Queue()
        for flow in flows:
            todo.put_nowait(flow)

        async def drain() -> None:
            while not todo.empty():
                await engine.run_to_end(todo.get_nowait())

        async with asyncio.TaskGroup() as group:
            for _ in range(args.tasks):
                group.create_task(drain())


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(process)d %(levelname)s %(name)s %(message)s"
    )
    asyncio.run(main(parse(sys.argv[1:])))
