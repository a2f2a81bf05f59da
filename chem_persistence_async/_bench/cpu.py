"""CPU time spent by this process and by a database's server processes: figures that a busy
machine moves less than wall time (a flow that waits for a core costs no more CPU).

The server's processes are read from ``/proc/<pid>/stat`` (Linux, the server on this machine,
its processes readable by this user); where none can be read the figure is left out.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import asyncpg

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def client_seconds() -> float:
    """CPU seconds this process has spent (all its threads)."""
    return time.process_time()


class BackendCpu:
    """The CPU seconds of a fixed set of server processes (a database's backends)."""

    def __init__(self, pids: Sequence[int]) -> None:
        self._pids = tuple(pids)

    @classmethod
    async def of(cls, conn: asyncpg.Connection) -> BackendCpu | None:
        """The backends connected to ``conn``'s database now; ``None`` when none can be read."""
        rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        probe = cls([row[0] for row in rows])
        return probe if any(probe._ticks(pid) is not None for pid in probe._pids) else None

    def seconds(self) -> float:
        """Their user and system CPU seconds so far (a backend gone since counts no more)."""
        return sum(ticks for pid in self._pids if (ticks := self._ticks(pid)) is not None) / _TICKS

    @staticmethod
    def _ticks(pid: int) -> int | None:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat(5))
