"""What the engine's log lines carry besides the flow: the job and worker running it.

A worker sets ``job_id`` and ``worker_id`` for the task that runs a job (``bind``); every log line
the engine writes in that task carries them as ``extra`` fields, next to ``flow_id``.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

_context: ContextVar[dict[str, str] | None] = ContextVar("chem_persistence_async_log_context", default=None)


def bind(**fields: str) -> None:
    """Add ``fields`` to every engine log line of the current task (and the tasks it starts)."""
    _context.set({**(_context.get() or {}), **fields})


def extra(**fields: Any) -> dict[str, Any]:
    """``fields`` plus what ``bind`` set, for a logging call's ``extra``."""
    bound = _context.get()
    return {**bound, **fields} if bound else fields
