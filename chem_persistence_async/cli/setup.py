"""``migrate``, ``demo`` and ``bench``: set the database up, try it, measure it."""

from __future__ import annotations

import argparse

from chem_persistence_async.backends.postgres.database import Database
from chem_persistence_async.backends.postgres.event_store import PgEventStore
from chem_persistence_async.backends.postgres.migrations import pending_migration_ids
from chem_persistence_async.cli.output import progress, status
from chem_persistence_async.engine.demo import demo_definition
from chem_persistence_async.engine.engine import FlowEngine
from chem_persistence_async.engine.repository import PgFlowRepository

DEMO_COUNT = 10


async def migrate(args: argparse.Namespace) -> int:
    opener = Database.connect(args.url, auto_migrate=False)  # settings are checked here, before any output
    progress("opening the database…")
    async with opener as db:
        async with db.acquire() as conn:
            pending = await pending_migration_ids(conn)
        if not pending:
            print(f"{db.describe()}: schema up to date")
            return 0
        progress(f"applying {len(pending)} migration(s): {', '.join(pending)}")
        applied = await db.migrate()
        print(f"{db.describe()}: applied {', '.join(applied) or 'nothing (another process did)'}")
    return 0


async def demo(args: argparse.Namespace) -> int:
    opener = Database.connect(args.url)
    progress("opening the database (embedded PostgreSQL when DATABASE_URL is unset)…")
    async with opener as db:
        print(f"database:    {db.describe()}", flush=True)
        engine = FlowEngine(PgEventStore(db), PgFlowRepository(), demo_definition(count=args.count))
        flow_id = await engine.run_to_end()
        instance = await engine.load(flow_id)
        print(f"flow_id:     {flow_id}")
        print(f"variants:    {','.join(await engine.event_variants(flow_id))}")
        print(f"fingerprint: {instance.fingerprint}")
        print(f"status:      {status(instance)}")
    return 0 if instance.completed else 1


async def bench(args: argparse.Namespace) -> int:
    from chem_persistence_async._bench import cli_main

    return int(await cli_main(args))
