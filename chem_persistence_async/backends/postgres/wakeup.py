"""Wake-up (SPEC 8.4): a job enqueued for now starts within milliseconds on an idle worker.

* ``Notifier`` (one per ``Database``): after an enqueue commits, the local workers are woken at
  once (in-process), and a ``pg_notify`` per queue is sent for the other processes from a task of
  its own: never inside the enqueuing transaction, whose commit would otherwise take NOTIFY's
  global commit lock. The first goes out at once; a burst that follows shares one per window.
* ``Listener`` (one per worker process): a dedicated connection, not a pooled one, that LISTENs,
  pings the server every ``keepalive`` seconds, and reconnects with backoff when the connection
  or the server goes away; after a reconnect it wakes everyone (notifications sent while it was
  away are lost, jobs are not).

Polling stays the fallback: a worker also claims every ``poll_interval`` seconds, so a lost
notification costs latency, never a job. Behind PgBouncer in transaction mode LISTEN does not
work: run workers with ``listen=False`` (poll only).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import asyncpg

from chem_persistence_async.backends.postgres.sql import queue as sql

logger = logging.getLogger("chem_persistence_async.wakeup")

CHANNEL = "chem_persistence_work"


class Notifier:
    """Local wake-ups at once, ``pg_notify`` coalesced off the write path."""

    def __init__(self, send: Callable[[list[str]], Any], *, window: float = 0.01) -> None:
        self._send = send
        self._window = window
        self._local: list[Callable[[str], None]] = []
        self._pending: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._last_sent = float("-inf")
        self.sent = 0
        """How many ``pg_notify`` statements were sent (each for every queue pending then)."""

    def subscribe(self, callback: Callable[[str], None]) -> Callable[[], None]:
        """Call ``callback(queue)`` for every job this process enqueues; returns the unsubscriber."""
        self._local.append(callback)
        return lambda: self._local.remove(callback) if callback in self._local else None

    def enqueued(self, queues: set[str] | list[str]) -> None:
        """Jobs for ``queues`` were committed by this process."""
        for queue in queues:
            for callback in list(self._local):
                callback(queue)
        self._pending.update(queues)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        # The first NOTIFY goes out at once (one loop turn later, so that what the same turn
        # enqueued joins it); after it, at most one per window. Until nothing is pending: a job
        # committed while a NOTIFY was in flight (this task not yet done, so ``enqueued`` started
        # no other) is announced after the window, not left for the other processes' next poll.
        loop = asyncio.get_running_loop()
        while self._pending:
            await asyncio.sleep(max(0.0, self._last_sent + self._window - loop.time()))
            queues, self._pending = sorted(self._pending), set()
            self._last_sent = loop.time()
            try:
                await self._send(queues)
                self.sent += 1
            except Exception as exc:  # polling covers a lost notification
                logger.debug("pg_notify failed (workers will poll): %s", exc)

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            with contextlib.suppress(Exception):
                await task


async def send_notify(db_run: Callable[..., Any], queues: list[str]) -> None:
    async def notify(conn: asyncpg.Connection) -> None:
        await conn.execute(sql.NOTIFY.text, *sql.NOTIFY.args({"channel": CHANNEL, "queues": queues}))

    await db_run(notify, operation="notify")


class Listener:
    """LISTEN on a dedicated connection with keepalive and reconnect; calls ``on_wake(queue)``
    (``queue`` is ``None`` after a reconnect: anything may be waiting)."""

    def __init__(
        self,
        connect: Callable[[], Any],
        on_wake: Callable[[str | None], None],
        *,
        keepalive: float = 30.0,
        reconnect_delays: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0),
    ) -> None:
        self._connect = connect
        self._on_wake = on_wake
        self._keepalive = keepalive
        self._delays = reconnect_delays
        self._task: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()
        self.connected = asyncio.Event()
        self.reconnects = 0

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="chem-persist-listener")

    async def _run(self) -> None:
        failures = 0
        first = True
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await self._connect()
                self._lost.clear()
                conn.add_termination_listener(lambda _c: self._lost.set())
                await conn.add_listener(CHANNEL, self._notified)
                self.connected.set()
                if not first:
                    self.reconnects += 1
                    logger.info("listener reconnected")
                    self._on_wake(None)
                first, failures = False, 0
                while True:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._lost.wait(), self._keepalive)
                    if self._lost.is_set() or conn.is_closed():
                        raise ConnectionError("the listening connection was closed")
                    await asyncio.wait_for(conn.fetchval("SELECT 1"), self._keepalive)
            except asyncio.CancelledError:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), 1.0)
                raise
            except Exception as exc:
                self.connected.clear()
                if conn is not None:
                    conn.terminate()
                delay = self._delays[min(failures, len(self._delays) - 1)]
                failures += 1
                logger.info(
                    "listener lost its connection (%s); reconnecting in %.2fs", type(exc).__name__, delay
                )
                await asyncio.sleep(delay)

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self._on_wake(payload or None)

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
