"""``retry_transient``: retry what a second attempt can fix, and nothing else.

Transient: serialization failures (40001), deadlocks (40P01), lock timeouts (55P03), lost or refused
connections, admin shutdown / crash / cannot-connect-now (57P01-03), statement timeouts (57014),
too many connections (53300) and connection exceptions (08xxx). Never constraint violations, bad
input or this package's own errors. A retried append is safe because its ``event_id`` is fixed
before the first attempt.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar, overload

import asyncpg

from chem_persistence_async.errors import ChemPersistError, PoolTimeoutError, TransientDatabaseError

logger = logging.getLogger("chem_persistence_async.retry")

P = ParamSpec("P")
T = TypeVar("T")

TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03", "57014", "57P01", "57P02", "57P03", "53300"})
_LOST_CONNECTION_MESSAGES = (
    "connection is closed",
    "connection was closed",
    "connection has been released",
    "underlying connection is closed",
    "protocol is not in a state",
)
# asyncpg's internal protocol-state errors: seen when the server dropped the connection in the middle of
# an operation (e.g. a FATAL during a prepare leaves the protocol waiting for a sync that never comes).
_BROKEN_PROTOCOL_MESSAGES = (
    "cannot switch to state",
    "protocol is in an unexpected state",
    "unknown error in protocol implementation",
)


def transient_reason(exc: BaseException) -> str | None:
    """A short reason (the SQLSTATE or a word) if ``exc`` is worth retrying, else ``None``."""
    if isinstance(exc, ChemPersistError | PoolTimeoutError):
        return None
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(exc, asyncpg.PostgresError) and isinstance(sqlstate, str):
        if sqlstate in TRANSIENT_SQLSTATES or sqlstate.startswith("08"):
            return sqlstate
        return None
    if isinstance(exc, asyncpg.ConnectionDoesNotExistError):
        return "connection_lost"
    if isinstance(exc, asyncpg.InterfaceError):
        message = str(exc)
        if any(fragment in message for fragment in _LOST_CONNECTION_MESSAGES):
            return "connection_lost"
        return None
    if isinstance(exc, asyncpg.InternalClientError):
        message = str(exc)
        if any(fragment in message for fragment in _BROKEN_PROTOCOL_MESSAGES):
            return "connection_lost"
        return None
    if isinstance(exc, TimeoutError):  # before OSError: TimeoutError is one since Python 3.10
        return "timeout"
    if isinstance(exc, ConnectionError | EOFError):
        return "connection_lost"
    if isinstance(exc, OSError):
        return "connection_refused"
    return None


def is_lost_connection(reason: str | None) -> bool:
    return reason is not None and (
        reason in ("connection_lost", "connection_refused") or reason.startswith(("08", "57P"))
    )


@dataclass
class RetryMetrics:
    """Counts a user can read (``Database.metrics``); safe to share across tasks and threads."""

    calls: int = 0
    retries: Counter[str] = field(default_factory=Counter)
    exhausted: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record_retry(self, reason: str) -> None:
        with self._lock:
            self.retries[reason] += 1

    def record_exhausted(self, reason: str) -> None:
        with self._lock:
            self.exhausted[reason] += 1

    def record_call(self) -> None:
        with self._lock:
            self.calls += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "calls": self.calls,
                "retries": dict(self.retries),
                "retries_total": sum(self.retries.values()),
                "exhausted": dict(self.exhausted),
            }


@dataclass(frozen=True)
class BackoffPolicy:
    """One attempt, then one retry per delay (seconds), each jittered by +/- ``jitter`` of itself."""

    delays: tuple[float, ...] = (0.015, 0.030, 0.045)
    jitter: float = 0.5

    @classmethod
    def from_milliseconds(cls, delays_ms: tuple[float, ...], jitter: float = 0.5) -> BackoffPolicy:
        return cls(tuple(d / 1000.0 for d in delays_ms), jitter)

    def delay(self, retry_index: int) -> float:
        base = self.delays[retry_index]
        return max(0.0, base * (1 + random.uniform(-self.jitter, self.jitter)))


DEFAULT_BACKOFF = BackoffPolicy()
DEFAULT_METRICS = RetryMetrics()


async def call_with_retry(
    attempt: Callable[[], Awaitable[T]],
    *,
    policy: BackoffPolicy = DEFAULT_BACKOFF,
    metrics: RetryMetrics = DEFAULT_METRICS,
    on_lost_connection: Callable[[], Awaitable[None]] | None = None,
    operation: str = "operation",
    classify: Callable[[BaseException], str | None] | None = None,
    failed: Exception | None = None,
) -> T:
    """Run ``attempt`` until it succeeds, fails for good, or the policy's delays run out; then
    raise ``TransientDatabaseError`` chained to the last failure (its SQLSTATE kept).

    ``failed``: the caller made the first attempt itself (and counted the call), and it failed
    with this; the loop goes on from there as if its own first attempt had."""
    if failed is None:
        metrics.record_call()
    retries = len(policy.delays)
    for index in range(retries + 1):
        try:
            if failed is not None:
                exc, failed = failed, None
                raise exc
            return await attempt()
        except Exception as exc:
            reason = (classify or transient_reason)(exc)
            if reason is None:
                raise
            if index == retries:
                metrics.record_exhausted(reason)
                logger.warning(
                    "transient failure persisted after %d retries",
                    retries,
                    extra={"operation": operation, "reason": reason, "attempt": index + 1},
                )
                sqlstate = getattr(exc, "sqlstate", None)
                raise TransientDatabaseError(
                    f"{operation} failed after {retries} retries: {type(exc).__name__}: {exc}",
                    reason=reason,
                    sqlstate=sqlstate if isinstance(sqlstate, str) else None,
                ) from exc
            metrics.record_retry(reason)
            delay = policy.delay(index)
            logger.info(
                "retrying after transient failure",
                extra={
                    "operation": operation,
                    "reason": reason,
                    "sqlstate": getattr(exc, "sqlstate", None),
                    "attempt": index + 1,
                    "delay_s": round(delay, 4),
                },
            )
            if on_lost_connection is not None and is_lost_connection(reason):
                await on_lost_connection()
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


@overload
def retry_transient(fn: Callable[P, Awaitable[T]], /) -> Callable[P, Awaitable[T]]: ...
@overload
def retry_transient(
    *, policy: BackoffPolicy = ..., metrics: RetryMetrics = ...
) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]: ...
def retry_transient(
    fn: Callable[P, Awaitable[T]] | None = None,
    /,
    *,
    policy: BackoffPolicy = DEFAULT_BACKOFF,
    metrics: RetryMetrics = DEFAULT_METRICS,
) -> Any:
    """Decorate an async function so transient database failures are retried with backoff.

    Use bare (``@retry_transient``) or configured (``@retry_transient(policy=BackoffPolicy(...))``).
    The function must be safe to call again: give writes a key fixed before the first attempt.
    """

    def decorate(func: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        @functools.wraps(func)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            return await call_with_retry(
                lambda: func(*args, **kwargs),
                policy=policy,
                metrics=metrics,
                operation=getattr(func, "__qualname__", "operation"),
            )

        return wrapper

    return decorate(fn) if fn is not None else decorate
