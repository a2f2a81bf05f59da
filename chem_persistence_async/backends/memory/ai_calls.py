"""``InMemoryAICallLogger``: the reference semantics of the AI-call log (SPEC 9.2), in memory.

Calls are checked exactly as ``AICallLogger`` checks them and kept at once (there is nothing to
buffer against), so ``flush`` has nothing to do; everything else behaves the same.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from types import TracebackType

from chem_persistence_async.domain.ai_calls import (
    DEFAULT_MAX_CALL_BYTES,
    AICall,
    AIHelperStats,
    CheckedCall,
    check_batch_id,
    check_call,
    check_prefix,
    stats_of,
)
from chem_persistence_async.errors import InvalidInputError, LoggerClosedError


class InMemoryAICallLogger:
    """The ``AICallLoggerPort`` in a process's memory."""

    def __init__(self, *, max_call_bytes: int = DEFAULT_MAX_CALL_BYTES) -> None:
        self._max_bytes = max_call_bytes
        self._calls: builtins.list[CheckedCall] = []
        self._batches: dict[str, int] = {}
        self._closed = False

    @property
    def pending(self) -> int:
        return 0

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def calls(self) -> builtins.list[CheckedCall]:
        """Every call recorded, in order (for tests)."""
        return list(self._calls)

    def log_call(self, call: AICall) -> None:
        if self._closed:
            raise LoggerClosedError("this AICallLogger is closed: the call was not recorded")
        self._calls.append(check_call(call, max_bytes=self._max_bytes))

    async def log_batch_results(self, batch_id: str, results: Sequence[AICall]) -> bool:
        bid = check_batch_id(batch_id)
        if isinstance(results, str | bytes) or not isinstance(results, Sequence):
            raise InvalidInputError("results must be a sequence of AICall")
        calls = [check_call(call, batch_id=bid, max_bytes=self._max_bytes) for call in results]
        if bid in self._batches:
            return False
        self._batches[bid] = len(calls)
        self._calls.extend(calls)
        return True

    async def get_stats(self, topic_prefix: str) -> AIHelperStats:
        return stats_of(self._calls, check_prefix(topic_prefix))

    async def is_recorded(self, batch_id: str) -> bool:
        return check_batch_id(batch_id) in self._batches

    async def flush(self) -> int:
        return 0

    async def close(self) -> None:
        self._closed = True

    async def __aenter__(self) -> InMemoryAICallLogger:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<InMemoryAICallLogger calls={len(self._calls)} batches={len(self._batches)}>"
