"""``AICallLoggerPort``: the AI-call log (SPEC 9.2), met by ``AICallLogger(db)`` and
``InMemoryAICallLogger()`` (one contract suite).

``log_call`` is a plain call that returns at once: the call is checked (a bad one raises there) and
buffered; buffers are written in batches in the background, and ``flush``, ``close`` and leaving
``async with`` write whatever is still buffered. The reads (``get_stats``, ``is_recorded``) write
this logger's buffer first, so they count every call logged before them.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Protocol

from chem_persistence_async.domain.ai_calls import AICall, AIHelperStats


class AICallLoggerPort(Protocol):
    def log_call(self, call: AICall) -> None:
        """Record ``call`` without waiting (buffered); ``LoggerClosedError`` once closed."""
        ...

    async def log_batch_results(self, batch_id: str, results: Sequence[AICall]) -> bool:
        """Record a batch's results once: the first call for ``batch_id`` writes them all (and marks
        the batch recorded) in one transaction; later calls write nothing and return False."""
        ...

    async def get_stats(self, topic_prefix: str) -> AIHelperStats:
        """Exact totals over the calls whose topic starts with ``topic_prefix`` (a plain prefix)."""
        ...

    async def is_recorded(self, batch_id: str) -> bool: ...

    async def flush(self) -> int:
        """Write everything buffered now; returns how many calls were written."""
        ...

    async def close(self) -> None:
        """Flush, then refuse further calls."""
        ...

    async def __aenter__(self) -> AICallLoggerPort: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
