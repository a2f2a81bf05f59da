"""One process of the PgBouncer tests: ``python -m tests.backends.postgres.bouncer_worker URL``.

Prints ``ready`` once imported, waits for a line on stdin (so that several processes open at the same
moment), opens the database through PgBouncer with ``statement_cache_size=0`` and auto-migrate on,
runs the demo flow, and prints one JSON line with what it saw. Any failure exits non-zero with the
traceback on stderr.
"""

from __future__ import annotations

import asyncio
import json
import sys

from chem_persistence_async import Database, FlowEngine, PgEventStore, PgFlowRepository, demo_definition


async def main(url: str) -> dict[str, object]:
    async with Database.connect(url, statement_cache_size=0, min_connections=1, max_connections=2) as db:
        engine = FlowEngine(PgEventStore(db), PgFlowRepository(), demo_definition())
        flow_id = await engine.run_to_end()
        return {"flow_id": str(flow_id), "variants": await engine.event_variants(flow_id)}


if __name__ == "__main__":
    print("ready", flush=True)
    sys.stdin.readline()
    outcome = asyncio.run(main(sys.argv[1]))
    print(json.dumps(outcome), flush=True)
