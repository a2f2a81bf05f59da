"""The benchmark suite: each library operation next to raw asyncpg doing the same SQL work.

Run it with ``chem-persist bench [--quick]`` or ``python benchmarks/run.py [--quick]``; see
``benchmarks/README.md`` for what each figure means. ``matplotlib`` (for the chart) and ``orjson``
(for one raw read baseline) are optional: the ``bench`` extra.

The names below are loaded on first use: the command line reads ``_bench.config`` for ``bench
--only``'s choices at every start, and importing the suite with it (its cases, and the peers when
they are installed) cost every ``chem-persist`` command about 0.4 s.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chem_persistence_async._bench.config import SuiteConfig
    from chem_persistence_async._bench.runner import BenchmarkError, Progress
    from chem_persistence_async._bench.suite import SuiteResult, cli_main, run_suite

__all__ = ["BenchmarkError", "Progress", "SuiteConfig", "SuiteResult", "cli_main", "run_suite"]

_HOMES = {
    "SuiteConfig": "config",
    "BenchmarkError": "runner",
    "Progress": "runner",
    "SuiteResult": "suite",
    "cli_main": "suite",
    "run_suite": "suite",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
