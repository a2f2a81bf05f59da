"""Run the benchmark suite: ``python benchmarks/run.py [--quick] [--url URL] [--output DIR]``.

The same as ``chem-persist bench``; see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing


def main() -> int:
    from chem_persistence_async._bench import cli_main
    from chem_persistence_async._bench.config import GROUPS, operation_names

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=None, help="server URL (default: $DATABASE_URL, else embedded)")
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run of a few hundred events and flows (< 1 min)"
    )
    parser.add_argument("--output", default=str(HERE / "results"), help="directory for the results")
    parser.add_argument("--repetitions", type=int, default=None, help="timed rounds (default 3; quick 2)")
    parser.add_argument(
        "--synchronous-commit",
        choices=("on", "off"),
        default=None,
        help="set on the benchmark database; 'off' shows the client's cost instead of the disk flush",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        default=None,
        choices=(*operation_names(), *GROUPS),
        metavar="OPERATION",
        help="run only these: "
        + ", ".join(operation_names())
        + "; queue: all the queue's; shapes: all the shapes'",
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-RSS reads and their seeding")
    return asyncio.run(cli_main(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
