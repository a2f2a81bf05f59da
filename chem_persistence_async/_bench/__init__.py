"""The benchmark suite: each library operation next to raw asyncpg doing the same SQL work.

Run it with ``chem-persist bench [--quick]`` or ``python benchmarks/run.py [--quick]``; see
``benchmarks/README.md`` for what each figure means. ``matplotlib`` (for the chart) and ``orjson``
(for one raw read baseline) are optional: the ``bench`` extra.
"""

from chem_persistence_async._bench.config import SuiteConfig
from chem_persistence_async._bench.runner import BenchmarkError, Progress
from chem_persistence_async._bench.suite import SuiteResult, cli_main, run_suite

__all__ = ["BenchmarkError", "Progress", "SuiteConfig", "SuiteResult", "cli_main", "run_suite"]
