"""Peak resident memory of reading one flow, measured in a fresh subprocess.

``python -m chem_persistence_async._bench.rss FLOW_ID {stream,list} BATCH_SIZE`` with the
database URL in ``CHEM_BENCH_URL``; prints one JSON object. A subprocess of its own, so that the
peak (``ru_maxrss``) belongs to this read alone and not to the rest of the suite.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import time
from typing import Any
from uuid import UUID

_MIB = 1024 * 1024


def _status_bytes(field: str) -> int | None:
    """``VmHWM`` (peak) or ``VmRSS`` (current) of this process from ``/proc/self/status`` (Linux)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux >= 4.0); False if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


def peak_rss_bytes() -> tuple[int, str]:
    """The peak RSS and where it came from. ``VmHWM`` belongs to this process image alone;
    ``ru_maxrss`` (the fallback off Linux) also counts the parent's RSS at fork time."""
    peak = _status_bytes("VmHWM")
    if peak is not None:
        return peak, "VmHWM"
    import resource

    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (int(maxrss) if sys.platform == "darwin" else int(maxrss) * 1024), "ru_maxrss"


def current_rss_bytes() -> int:
    current = _status_bytes("VmRSS")
    return current if current is not None else peak_rss_bytes()[0]


async def _measure(url: str, flow_id: UUID, mode: str, batch_size: int) -> dict[str, Any]:
    from chem_persistence_async.backends.postgres.database import Database
    from chem_persistence_async.backends.postgres.event_store import PgEventStore

    db = await Database.open(url, min_connections=1, max_connections=2, auto_migrate=False)
    try:
        store = PgEventStore(db)
        # Warm up the same code paths on a few rows, so the baseline includes what is loaded once.
        async for _event in store.stream(flow_id, batch_size=min(batch_size, 10)):
            break
        await store.list(UUID(int=0))
        gc.collect()
        before = current_rss_bytes()
        peak_was_reset = reset_peak()
        start = time.perf_counter()
        count = 0
        if mode == "stream":
            async for _event in store.stream(flow_id, batch_size=batch_size):
                count += 1
        else:
            count = len(await store.list(flow_id))
        seconds = time.perf_counter() - start
        peak, source = peak_rss_bytes()
    finally:
        await db.close()
    return {
        "mode": mode,
        "events": count,
        "batch_size": batch_size if mode == "stream" else None,
        "seconds": seconds,
        "events_per_s": count / seconds if seconds > 0 else None,
        "rss_before_mib": before / _MIB,
        "peak_rss_mib": peak / _MIB,
        "growth_mib": (peak - before) / _MIB,
        "peak_source": source,
        "peak_reset_before_read": peak_was_reset,
    }


def _package_root() -> str:
    import chem_persistence_async

    return os.path.dirname(os.path.dirname(os.path.abspath(chem_persistence_async.__file__)))


async def measure_in_subprocess(url: str, flow_id: UUID, mode: str, batch_size: int) -> dict[str, Any]:
    """Run this module in a fresh interpreter and return what it printed."""
    package_root = _package_root()
    env = dict(os.environ)
    env["CHEM_BENCH_URL"] = url
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "chem_persistence_async._bench.rss",
        str(flow_id),
        mode,
        str(batch_size),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        detail = err.decode(errors="replace")[-2000:]
        raise RuntimeError(f"RSS subprocess failed ({process.returncode}): {detail}")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


def main(argv: list[str]) -> int:
    flow_id, mode, batch_size = UUID(argv[0]), argv[1], int(argv[2])
    if mode not in ("stream", "list"):
        raise SystemExit("mode must be stream or list")
    url = os.environ["CHEM_BENCH_URL"]
    print(json.dumps(asyncio.run(_measure(url, flow_id, mode, batch_size))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
