"""``worker`` and ``queue``: run flows from the work queue, and see what waits in it."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from chem_persistence_async.backends.postgres.database import Database
from chem_persistence_async.cli.output import progress, table
from chem_persistence_async.domain.flow import FlowDefinition
from chem_persistence_async.engine.retry_policy import RetryPolicy
from chem_persistence_async.errors import DefinitionError
from chem_persistence_async.worker.worker import Worker


def load_definitions(target: str) -> list[FlowDefinition]:
    """``MODULE:ATTR``: a ``FlowDefinition``, an iterable of them, or a callable returning either."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise DefinitionError(f"expected MODULE:ATTR (e.g. myapp.flows:ORDER_FLOW), got {target!r}")
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # as `python -m` does: the working directory's modules are importable
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise DefinitionError(f"cannot import {module_name!r}: {exc}") from None
    try:
        found: Any = getattr(module, attr)
    except AttributeError:
        raise DefinitionError(f"module {module_name!r} has no attribute {attr!r}") from None
    if callable(found) and not isinstance(found, FlowDefinition):
        found = found()
    definitions = [found] if isinstance(found, FlowDefinition) else list(_iterable(found, target))
    if not definitions or not all(isinstance(d, FlowDefinition) for d in definitions):
        raise DefinitionError(f"{target} is not a FlowDefinition or an iterable of them")
    return definitions


def _iterable(value: Any, target: str) -> Iterable[Any]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise DefinitionError(f"{target} is not a FlowDefinition or an iterable of them")
    return value


@contextmanager
def stopped_by_signals(stop: Callable[[], object]) -> Iterator[None]:
    """While the block runs, SIGTERM and SIGINT call ``stop`` (a graceful stop) instead of
    interrupting the process."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop)
    try:
        yield
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


async def worker(args: argparse.Namespace) -> int:
    definitions = load_definitions(args.target)
    opener = Database.connect(args.url)
    async with opener as db:
        settings = db.settings.worker
        run = Worker(
            db,
            definitions,
            worker_id=args.worker_id,
            concurrency=args.concurrency or settings.concurrency,
            queues=args.queue or settings.queues,
            lease=timedelta(seconds=args.lease or settings.lease),
            poll_interval=args.poll_interval or settings.poll_interval,
            listen=settings.listen and not args.no_listen,
            grace=settings.grace_period if args.grace is None else args.grace,
            records=settings.records and not args.no_records,
            retry_policy=RetryPolicy(
                max_retries=args.max_retries, initial_delay=args.retry_delay, max_delay=args.max_retry_delay
            ),
        )
        progress(
            f"worker {run.worker_id} on {db.describe()}: {', '.join(d.name for d in definitions)}; "
            "SIGTERM or Ctrl-C stops it gracefully"
        )
        with stopped_by_signals(run.stop):
            await run.run()
        progress(
            f"worker {run.worker_id} stopped: {run.stats.completed} completed, {run.stats.suspended} "
            f"suspended, {run.stats.failed} failed, {run.stats.interrupted} released"
        )
    return 0


async def queue(args: argparse.Namespace) -> int:
    async with Database.connect(args.url) as db:
        rows = await db.work_queue().stats()
        if not rows:
            print(f"{db.describe()}: no jobs")
            return 0
        print(
            table(
                (
                    "queue",
                    "ready",
                    "scheduled",
                    "claimed",
                    "expired",
                    "oldest ready",
                    "completed",
                    "dead",
                    "cancelled",
                ),
                [
                    (
                        row["queue"],
                        row["depth"].ready,
                        row["depth"].scheduled,
                        row["depth"].claimed,
                        row["depth"].expired,
                        "-" if row["oldest_ready_age_s"] is None else f"{row['oldest_ready_age_s']:.1f}s",
                        row["finished"].get("completed", 0),
                        row["finished"].get("dead", 0),
                        row["finished"].get("cancelled", 0),
                    )
                    for row in rows
                ],
            )
        )
    return 0
