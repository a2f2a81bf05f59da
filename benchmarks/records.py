"""What the records cost: ``python benchmarks/records.py [--quick] [--url URL] [--output DIR]``.

``log_call`` throughput against raw asyncpg inserting the same rows one by one, and the time that
keeping runs and stages current adds to ``run_to_end``; see chem_persistence_async/_bench/records.py.
Results go to ``benchmarks/results/records.{json,md}``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing


def main() -> int:
    from chem_persistence_async._bench.records import RecordsBenchConfig, render, run_records_bench, write

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=None, help="server URL (default: $DATABASE_URL, else embedded)")
    parser.add_argument("--quick", action="store_true", help="a smoke run (seconds)")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds (default 5; quick 2)")
    parser.add_argument("--output", default=str(HERE / "results"), help="directory for the results")
    args = parser.parse_args()
    cfg = RecordsBenchConfig.quick() if args.quick else RecordsBenchConfig()
    if args.rounds is not None:
        from dataclasses import replace

        cfg = replace(cfg, rounds=args.rounds)
    result = asyncio.run(run_records_bench(args.url, cfg))
    if not args.quick:
        write(result, Path(args.output))
    print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
