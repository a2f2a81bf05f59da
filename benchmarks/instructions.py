"""Client instructions per operation, library next to raw asyncpg, counted by callgrind (needs
valgrind): ``python benchmarks/instructions.py [--url URL] [--n N] [--output DIR] [WORKLOAD ...]``.

Repeatable on a shared machine where wall-clock ratios are not; see
chem_persistence_async/_bench/instructions.py. Results go to ``benchmarks/results/instructions.*``.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing


if __name__ == "__main__":
    from chem_persistence_async._bench.instructions import main

    sys.exit(
        main(
            [*sys.argv[1:]] if "--output" in sys.argv else [*sys.argv[1:], "--output", str(HERE / "results")]
        )
    )
