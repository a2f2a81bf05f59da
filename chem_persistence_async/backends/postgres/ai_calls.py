"""``AICallLogger``: the AI-call log on PostgreSQL (SPEC 9.2); its SQL is ``sql/ai_calls.py``.

``log_call`` checks the call and appends it to a buffer: no I/O, no await. A background task
writes the buffer in batches of ``batch_size`` (one statement each, ``Database.run``'s retries),
as soon as a batch is full or every ``flush_interval`` seconds. ``flush()``, ``close()`` and
leaving ``async with`` write whatever is buffered, so a process that stops gracefully loses
nothing. A process killed outright (SIGKILL, power loss) loses what was still buffered: at most
the calls of the last ``flush_interval`` seconds (or one ``batch_size`` when calls come faster).
A write that keeps failing leaves its calls buffered, in order, for the next attempt; calls carry
ids made when they were logged, so a batch written twice is stored once.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
from collections.abc import Sequence
from decimal import Decimal
from types import TracebackType
from typing import Any

import asyncpg

from chem_persistence_async.backends.postgres.database import Database
from chem_persistence_async.backends.postgres.sql import ai_calls as sql
from chem_persistence_async.backends.postgres.sql.query import Query
from chem_persistence_async.domain.ai_calls import (
    DEFAULT_MAX_CALL_BYTES,
    AICall,
    AIHelperStats,
    CheckedCall,
    ModelStats,
    check_batch_id,
    check_call,
    check_prefix,
)
from chem_persistence_async.errors import ChemPersistError, InvalidInputError, LoggerClosedError

logger = logging.getLogger("chem_persistence_async.ai_calls")

_MAX_BACKOFF = 5.0


class AICallLogger:
    """The ``AICallLoggerPort`` on PostgreSQL (see the module docstring)."""

    def __init__(
        self,
        db: Database,
        *,
        batch_size: int = 1000,
        flush_interval: float = 0.2,
        max_call_bytes: int = DEFAULT_MAX_CALL_BYTES,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= 100_000:
            raise InvalidInputError(f"batch_size must be an int between 1 and 100000, got {batch_size!r}")
        if not isinstance(flush_interval, int | float) or not 0 < flush_interval <= 3600:
            raise InvalidInputError(
                f"flush_interval must be between 0 and 3600 seconds, got {flush_interval!r}"
            )
        self._db = db
        self._batch_size = batch_size
        self._interval = float(flush_interval)
        self._max_bytes = max_call_bytes
        self._buffer: list[CheckedCall] = []
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.written = 0
        """Calls written so far by this logger (``log_call``'s; batches' are not counted)."""
        self.failed_flushes = 0

    @property
    def pending(self) -> int:
        """Calls logged and not written yet."""
        return len(self._buffer)

    @property
    def closed(self) -> bool:
        return self._closed

    # --- logging ----------------------------------------------------------------------------

    def log_call(self, call: AICall) -> None:
        if self._closed:
            raise LoggerClosedError("this AICallLogger is closed: the call was not recorded")
        self._buffer.append(check_call(call, max_bytes=self._max_bytes))
        if self._task is None:
            self._start()
        if len(self._buffer) >= self._batch_size:
            self._wake.set()

    def _start(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no event loop here: the calls wait for flush() or close()
        self._task = loop.create_task(self._flush_in_background(), name="chem-persist-ai-calls")

    async def _flush_in_background(self) -> None:
        failures = 0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()
            try:
                await self.flush()
                failures = 0
            except ChemPersistError as exc:
                failures += 1
                self.failed_flushes += 1
                logger.warning(
                    "writing %d buffered AI call(s) failed (%s); keeping them for the next attempt",
                    len(self._buffer),
                    exc,
                )
                await asyncio.sleep(min(self._interval * 2**failures, _MAX_BACKOFF))

    async def flush(self) -> int:
        """Write every call buffered now, in batches; returns how many were written. On failure
        the calls not written stay buffered, in order, and the error is raised."""
        written = 0
        async with self._lock:
            while self._buffer:
                batch = self._buffer[: self._batch_size]
                del self._buffer[: len(batch)]
                try:
                    await self._write(batch)
                except BaseException:
                    self._buffer[:0] = batch  # back at the front; a retry writes nothing twice
                    raise
                written += len(batch)
                self.written += len(batch)
        return written

    async def _write(self, batch: Sequence[CheckedCall]) -> None:
        args = sql.INSERT_CALLS.args(_call_values(batch))

        async def insert(conn: asyncpg.Connection) -> None:
            await conn.execute(sql.INSERT_CALLS.text, *args)

        await self._db.run(insert, operation="log_calls")

    async def log_batch_results(self, batch_id: str, results: Sequence[AICall]) -> bool:
        bid = check_batch_id(batch_id)
        if isinstance(results, str | bytes) or not isinstance(results, Sequence):
            raise InvalidInputError("results must be a sequence of AICall")
        calls = [check_call(call, batch_id=bid, max_bytes=self._max_bytes) for call in results]
        values = _call_values(calls) | {"batch_id": bid, "count": len(calls)}
        ((marked, _),) = await self._fetch(sql.LOG_BATCH, values, "log_batch_results")
        return bool(marked)

    # --- reading ----------------------------------------------------------------------------

    async def get_stats(self, topic_prefix: str) -> AIHelperStats:
        pattern = _like_prefix(check_prefix(topic_prefix))
        await self.flush()
        rows = await self._fetch(sql.STATS, {"pattern": pattern}, "get_ai_stats")
        return AIHelperStats.of(
            {row[0]: ModelStats(int(row[1]), int(row[2]), int(row[3]), Decimal(row[4])) for row in rows}
        )

    async def is_recorded(self, batch_id: str) -> bool:
        rows = await self._fetch(sql.IS_RECORDED, {"batch_id": check_batch_id(batch_id)}, "is_recorded")
        return bool(rows[0][0])

    async def _fetch(self, q: Query, values: dict[str, Any], operation: str) -> builtins.list[Any]:
        args = q.args(values)

        async def fetch(conn: asyncpg.Connection) -> builtins.list[Any]:
            return list(await conn.fetch(q.text, *args))

        return await self._db.run(fetch, operation=operation)

    # --- life cycle -------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop the background writer and write what is buffered; later ``log_call``s raise
        ``LoggerClosedError``. Close it before the ``Database``. If the last write fails, the
        error is raised and the calls stay buffered (``pending``): call ``close()`` again."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.flush()

    async def __aenter__(self) -> AICallLogger:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<AICallLogger {state} pending={len(self._buffer)} written={self.written}>"


def _like_prefix(prefix: str) -> str:
    """A LIKE pattern for every string starting with ``prefix`` (its wildcards escaped)."""
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _call_values(calls: Sequence[CheckedCall]) -> dict[str, Any]:
    return {
        "ids": [c.id for c in calls],
        "topics": [c.topic for c in calls],
        "call_types": [c.call_type for c in calls],
        "model_keys": [c.model_key for c in calls],
        "model_ids": [c.model_id for c in calls],
        "prompts": [c.prompt for c in calls],
        "responses": [c.response for c in calls],
        "input_tokens": [c.input_tokens for c in calls],
        "output_tokens": [c.output_tokens for c in calls],
        "costs": [c.cost for c in calls],
        "metadata": b"[" + b",".join(b"null" if c.metadata is None else c.metadata for c in calls) + b"]",
    }
