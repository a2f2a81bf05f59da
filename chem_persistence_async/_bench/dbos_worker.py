"""A DBOS Transact worker process: the peer of ``chem-persist worker`` (the ``peer`` extra).

``python -m chem_persistence_async._bench.dbos_worker migrate URL`` creates DBOS's system schema
in the database of ``URL`` (once, before any worker: concurrent launches would race on it);
``python -m chem_persistence_async._bench.dbos_worker work URL QUEUE POLL`` launches DBOS, listens
to queue ``QUEUE`` (``polling_interval_sec=POLL``), prints ``ready`` and runs the workflows it
dequeues until SIGTERM. The workflow is the library's ``NOOP3``: three steps that do nothing.

Only this subprocess imports ``dbos``; the suite's process enqueues with ``DBOSClient``.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

from dbos import DBOS

WORKFLOW = "noop3"
"""The name DBOS registers the workflow under (what ``DBOSClient.enqueue`` names)."""


@DBOS.step()
def step_a() -> None:
    return None


@DBOS.step()
def step_b() -> None:
    return None


@DBOS.step()
def step_c() -> None:
    return None


@DBOS.workflow()
def noop3(n: int) -> int:
    step_a()
    step_b()
    step_c()
    return n


def _configure(url: str, *, migrate: bool) -> None:
    config: Any = {
        "name": "chem-bench",
        "system_database_url": url,
        "executor_id": f"chem-bench-{os.getpid()}",
        "log_level": "WARNING",
        "run_migrations": migrate,
        # 10 connections, not its default 20: four processes must fit a shared server's
        # max_connections (100) next to everything else; it runs about 60 workflows/s here.
        "sys_db_pool_size": 10,
    }
    DBOS(config=config)


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "migrate":
        _configure(argv[1], migrate=True)
        DBOS.launch()
        DBOS.destroy()
        return 0
    if len(argv) == 4 and argv[0] == "work":
        url, queue, poll = argv[1], argv[2], float(argv[3])
        _configure(url, migrate=False)
        stopping = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stopping.set())
        DBOS.launch()
        DBOS.register_queue(queue, polling_interval_sec=poll)
        print("ready", flush=True)
        stopping.wait()
        DBOS.destroy(workflow_completion_timeout_sec=10)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
