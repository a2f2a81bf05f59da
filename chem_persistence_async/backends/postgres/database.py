"""``Database``: the asyncpg pool, opened with its codecs and migrations, closed with everything it holds."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Mapping
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import anyio.to_thread
import asyncpg

from chem_persistence_async.backends.postgres.embedded import (
    resolve_data_dir,
    start_embedded,
    stop_embedded_on_sigterm,
)
from chem_persistence_async.backends.postgres.errors import translate
from chem_persistence_async.backends.postgres.migrations import migrate
from chem_persistence_async.backends.postgres.retry import (
    BackoffPolicy,
    RetryMetrics,
    call_with_retry,
    is_lost_connection,
    transient_reason,
)
from chem_persistence_async.backends.postgres.sql.query import Query
from chem_persistence_async.backends.postgres.transaction import PgTransaction, pg_tx
from chem_persistence_async.backends.postgres.wakeup import Listener, Notifier, send_notify
from chem_persistence_async.errors import (
    ConfigurationError,
    DatabaseClosedError,
    DatabaseError,
    MigrationError,
    PoolTimeoutError,
    TransientDatabaseError,
)
from chem_persistence_async.ports.unit_of_work import Transaction
from chem_persistence_async.settings import ConnectionSettings, DatabaseSettings, redact_url, scrub

if TYPE_CHECKING:
    from chem_persistence_async.backends.postgres.checkpoints import Checkpoints
    from chem_persistence_async.backends.postgres.definitions import DefinitionRegistry
    from chem_persistence_async.backends.postgres.event_store import PgEventStore
    from chem_persistence_async.backends.postgres.records import WorkflowRecords
    from chem_persistence_async.backends.postgres.work_queue import WorkQueue

T = TypeVar("T")

_SERVER_WENT_AWAY = frozenset({"connection_refused", "57P02", "57P03"})
"""Transient reasons that mean the server itself went away, not just one connection."""


_OPEN_BACKOFF = BackoffPolicy(delays=(0.1, 0.25, 0.5, 1.0, 2.0))
"""Opening waits out a server that is starting, restarting or full (about four seconds): a worker
started during a restart comes up once the server does."""


def _open_transient(exc: BaseException) -> str | None:
    """What is worth opening again: a refused or lost connection, a server starting up (57P03) or
    full (53300). A wrong password or database is not."""
    reason = transient_reason(exc)
    if reason in ("connection_refused", "connection_lost", "57P03", "53300") or (reason or "").startswith(
        "08"
    ):
        return reason
    return None


def _unit_transient(exc: BaseException) -> str | None:
    """What makes a whole unit of work worth running again: a transient driver error, or a
    statement inside it that failed transiently (no statement inside is retried on its own)."""
    if isinstance(exc, TransientDatabaseError):
        return exc.reason
    return transient_reason(exc)


class PooledConnection(asyncpg.Connection):  # type: ignore[misc]
    """A pool connection released without ``RESET ALL`` and friends.

    The stores leave no session state behind (no ``SET``, ``LISTEN``, cursors or advisory locks
    outside a transaction), so asyncpg's reset round trip on every release is pure cost.
    Code that borrows a connection through ``Database.acquire`` must keep to the same rule.
    """

    def get_reset_query(self) -> str:
        return ""


async def _init_connection(conn: asyncpg.Connection) -> None:
    # JSONB passes through as canonical JSON bytes: the stores encode and decode it in bulk.
    await conn.set_type_codec(
        "jsonb",
        schema="pg_catalog",
        encoder=_encode_jsonb,
        decoder=_decode_jsonb,
        format="binary",
    )


def _open(conn: asyncpg.Connection) -> bool:
    """Whether a borrowed connection is still open. asyncpg takes a pool connection back the moment
    it sees it lost (the server restarted, its backend was terminated), even one parked here, and
    its proxy then holds no connection (and raises on every call): that one is not open either.
    (Asked of the connection behind the proxy: the proxy's own method costs a Python call more.)"""
    con = getattr(conn, "_con", conn)  # (a pool's proxy, or a connection of one's own)
    return con is not None and not con.is_closed()


def _idle(conn: asyncpg.Connection) -> bool:
    """Open and outside a transaction (``_open``, asked the same way)."""
    con = getattr(conn, "_con", conn)
    return con is not None and not con.is_closed() and not con.is_in_transaction()


def _encode_jsonb(value: bytes | str) -> bytes:
    return b"\x01" + (value.encode("utf-8") if isinstance(value, str) else value)


def _decode_jsonb(data: bytes) -> bytes:
    return data[1:]


class Database:
    """A connection pool with the schema applied. Build it with ``connect``, ``from_env`` or ``open``.

    ``async with Database.connect(url) as db:`` for a scope, ``db = await Database.open(url)`` and
    ``await db.close()`` for a long-lived service. With no URL anywhere, an embedded PostgreSQL is
    started in the user's data directory.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: DatabaseSettings,
        url: str,
        embedded: bool,
        data_dir: Path | None = None,
    ) -> None:
        self._pool: asyncpg.Pool | None = pool
        self._settings = settings
        self._url = url
        self._embedded = embedded
        self._data_dir = data_dir
        connection = settings.connection
        self._backoff = BackoffPolicy.from_milliseconds(connection.retry_delays_ms)
        self.metrics = RetryMetrics()
        self._parked: list[tuple[asyncpg.Connection, float]] = []
        """Connections borrowed from the pool and kept for the next caller (see ``_give_back``)."""
        self._notifier: Notifier | None = None
        self._event_store: PgEventStore | None = None
        self._work_queue: WorkQueue | None = None
        self._registry: DefinitionRegistry | None = None
        self._records: WorkflowRecords | None = None
        self._checkpoints: Checkpoints | None = None
        self._park_limit = connection.max_connections
        self._park_lifetime = connection.max_inactive_connection_lifetime
        self._waiting = 0

    # --- opening and closing ---------------------------------------------------------------

    @classmethod
    def connect(cls, url: str | None = None, **overrides: Any) -> DatabaseOpener:
        """``async with Database.connect(url) as db`` (or ``await``); settings not given come from the env.

        ``overrides`` are the settings' flat keyword names (``max_connections=32``); they are
        checked here, so a misspelled one fails at this call, not at the first query.
        """
        settings = DatabaseSettings.load(url=url, **overrides)
        return DatabaseOpener(lambda: cls.open(settings=settings))

    @classmethod
    def from_env(cls, **overrides: Any) -> DatabaseOpener:
        """``async with Database.from_env() as db``: everything from the environment."""
        settings = DatabaseSettings.load(**overrides)
        return DatabaseOpener(lambda: cls.open(settings=settings))

    @classmethod
    async def open(
        cls, url: str | None = None, *, settings: DatabaseSettings | None = None, **overrides: Any
    ) -> Database:
        """Open a pool (``await db.close()`` when done); ``settings`` replaces reading the environment."""
        if settings is None:
            settings = DatabaseSettings.load(url=url, **overrides)
        elif url is not None or overrides:
            settings = settings.replace(url=url, **overrides)
        connection = settings.connection
        dsn = connection.url_value
        embedded = dsn is None
        data_dir: Path | None = None
        if dsn is None:
            data_dir = resolve_data_dir(connection.data_dir)
            stop_embedded_on_sigterm()
            dsn = await anyio.to_thread.run_sync(start_embedded, data_dir)
        server_settings = {"application_name": connection.application_name}
        assert dsn is not None

        async def attempt() -> asyncpg.Pool:
            if connection.auto_migrate:
                await _migrate(dsn, connection)
            return await asyncpg.create_pool(
                dsn,
                min_size=connection.min_connections,
                max_size=connection.max_connections,
                max_inactive_connection_lifetime=connection.max_inactive_connection_lifetime,
                command_timeout=connection.command_timeout,
                statement_cache_size=connection.statement_cache_size,
                timeout=connection.connect_timeout,
                init=_init_connection,
                connection_class=PooledConnection,
                server_settings=server_settings,
            )

        try:
            pool = await call_with_retry(
                attempt, policy=_OPEN_BACKOFF, operation="open", classify=_open_transient
            )
        except MigrationError:
            raise
        except TransientDatabaseError as exc:
            cause = exc.__cause__ or exc
            raise DatabaseError(
                f"cannot open {redact_url(dsn)} (still failing after {len(_OPEN_BACKOFF.delays)} retries): "
                f"{type(cause).__name__}: {scrub(str(cause), dsn)}",
                sqlstate=exc.sqlstate,
            ) from None
        except asyncpg.ClientConfigurationError as exc:
            raise ConfigurationError(f"cannot use {redact_url(dsn)}: {scrub(str(exc), dsn)}") from None
        except ValueError as exc:
            # asyncpg's own URL parsing (what ``url_problem`` does not foresee): a user's mistake.
            raise ConfigurationError(f"cannot use {redact_url(dsn)}: {scrub(str(exc), dsn)}") from None
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            raise DatabaseError(
                f"cannot open {redact_url(dsn)}: {type(exc).__name__}: {scrub(str(exc), dsn)}"
            ) from None
        return cls(pool, settings, dsn, embedded, data_dir)

    async def migrate(self) -> list[str]:
        """Apply pending migrations now (what opening does unless ``auto_migrate`` is off)."""
        self._require_open()
        return await _migrate(self._url, self._settings.connection)

    async def close(self, timeout: float = 10.0) -> None:
        """Close every connection (waiting up to ``timeout`` for borrowed ones, then terminating)."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if self._notifier is not None:
            await self._notifier.aclose()
        await self._release_parked(pool)
        try:
            await asyncio.wait_for(pool.close(), timeout)
        except TimeoutError:
            pool.terminate()

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # --- using it ---------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._pool is None

    @property
    def settings(self) -> DatabaseSettings:
        return self._settings

    @property
    def url(self) -> str:
        """The URL with its password redacted."""
        return redact_url(self._url)

    @property
    def embedded(self) -> bool:
        return self._embedded

    @property
    def data_dir(self) -> Path | None:
        """The embedded server's data directory (``None`` on a server of your own)."""
        return self._data_dir

    def describe(self) -> str:
        """Which database this is, for people: the embedded server's directory, or the redacted URL."""
        if self._embedded:
            return f"embedded PostgreSQL in {self._data_dir}"
        return self.url

    @property
    def pool(self) -> asyncpg.Pool:
        return self._require_open()

    def _require_open(self) -> asyncpg.Pool:
        pool = self._pool
        if pool is None or pool.is_closing():
            raise DatabaseClosedError(f"Database {self.url} is closed")
        return pool

    @asynccontextmanager
    async def acquire(self, *, timeout: float | None = None) -> AsyncIterator[asyncpg.Connection]:
        """Borrow a connection; ``PoolTimeoutError`` if none frees up within the acquire timeout."""
        pool, conn = await self._take(timeout)
        ok = False
        try:
            yield conn
            ok = True
        finally:
            await self._give_back(pool, conn, ok)

    async def _take(self, timeout: float | None) -> tuple[asyncpg.Pool, asyncpg.Connection]:
        pool = self._require_open()
        parked = self._parked
        while parked:
            conn = parked.pop()[0]
            if _open(conn):
                return pool, conn
            await pool.release(conn)  # asyncpg finishes a closed one off (one it took back: no-op)
        wait = self._settings.connection.acquire_timeout if timeout is None else timeout
        self._waiting += 1
        try:
            # ``asyncio.timeout`` rather than ``acquire(timeout=...)``: asyncpg's ``wait_for`` costs
            # a task per call.
            async with asyncio.timeout(wait):
                conn = await pool.acquire()
        except TimeoutError:
            raise PoolTimeoutError(
                f"no connection free within {wait:g}s (pool max {self._settings.connection.max_connections})"
            ) from None
        except asyncpg.InterfaceError:
            if self.closed or pool.is_closing():
                raise DatabaseClosedError(f"Database {self.url} is closed") from None
            raise
        finally:
            self._waiting -= 1
        return pool, conn

    async def _give_back(self, pool: asyncpg.Pool, conn: asyncpg.Connection, ok: bool) -> None:
        """Park a connection that finished cleanly for the next caller, else release it to the pool.

        A release costs asyncpg a shielded task, a reset and an inactivity timer, as much client
        time as the statement itself; a parked connection is handed out again with none of that.
        Only a connection in a clean state is parked (the call succeeded, it is open and outside a
        transaction), never while someone waits on the pool, and one idle longer than the pool's
        inactivity lifetime goes back to the pool (which closes it in its own time).
        """
        released = self._park(pool, conn, ok)
        if released is not None:
            await pool.release(released)

    def _park(self, pool: asyncpg.Pool, conn: asyncpg.Connection, ok: bool) -> asyncpg.Connection | None:
        """``_give_back`` but for the release: parks ``conn`` if it may be, and returns the
        connection to release, if any (``conn`` itself, or a parked one past its lifetime)."""
        parked = self._parked
        current = self._pool is pool  # (a bool first: an ``is`` in the condition narrows ``pool``)
        if ok and current and not self._waiting and len(parked) < self._park_limit and _idle(conn):
            now = time.monotonic()
            parked.append((conn, now))
            if self._park_lifetime and now - parked[0][1] > self._park_lifetime:
                return parked.pop(0)[0]
            return None
        return conn

    async def _release_parked(self, pool: asyncpg.Pool) -> None:
        parked, self._parked = self._parked, []
        while parked:  # popped, not iterated: a ``_take`` still looping on this list gets each once
            with contextlib.suppress(Exception):
                await pool.release(parked.pop()[0])

    async def run(self, fn: Callable[[asyncpg.Connection], Awaitable[T]], *, operation: str = "query") -> T:
        """Run ``fn`` on a pooled connection, retrying transient failures on a fresh connection.

        This is the error boundary of everything that runs through it: a driver error comes out as
        a ``DatabaseError`` (``TransientDatabaseError`` once the retries are spent), chained to it.

        The first attempt is made here, outside the retry loop (its closure, its frames): nearly
        every call succeeds at once, and a failed first attempt goes on to ``call_with_retry`` as
        that loop's own first attempt, so what is retried, counted and logged is unchanged. ``fn``
        is given the driver's connection itself, not the pool's proxy (whose check on every method
        call costs each statement a Python call): it must not keep it past its call, as the stores'
        functions do not (``acquire`` lends the proxy).
        """
        self.metrics.record_call()
        try:
            return await self._attempt(fn)
        except Exception as exc:
            return await self._retry(fn, exc, operation)

    async def _retry(
        self, fn: Callable[[asyncpg.Connection], Awaitable[T]], failed: Exception, operation: str
    ) -> T:
        """``run``'s retries after its first attempt failed with ``failed``."""
        try:
            return await call_with_retry(
                partial(self._attempt, fn),
                policy=self._backoff,
                metrics=self.metrics,
                operation=operation,
                failed=failed,
            )
        except Exception as exc:
            translated = translate(exc, operation=operation, retried=True)
            if translated is exc:
                raise
            raise translated from exc

    async def _attempt(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """One attempt of ``run``: ``fn`` on a connection taken now and given back after."""
        try:
            pool, conn = await self._take(None)
        except Exception as exc:
            await self._failed(exc)
            raise
        try:
            # (A proxy that no longer holds one is handed as it is: its calls then raise the
            # driver's transient "released" error, as they did.)
            result = await fn(conn if conn._con is None else conn._con)
        except Exception as exc:
            await self._failed_on(pool, conn, exc)
            raise
        except BaseException:  # cancelled: the pool takes it back (and cancels what it runs)
            await pool.release(conn)
            raise
        await self._give_back(pool, conn, True)
        return result

    async def _failed_on(self, pool: asyncpg.Pool, conn: asyncpg.Connection, exc: Exception) -> None:
        """After an attempt failed on ``conn``: never hand it out again if it was lost, give it back
        to the pool, then see to the rest of the pool (``_failed``)."""
        self._discard_if_lost(conn, exc)
        await self._give_back(pool, conn, False)
        await self._failed(exc)

    async def _failed(self, exc: Exception) -> None:
        """After a failed attempt: a server that went away takes every pooled connection with it."""
        if transient_reason(exc) in _SERVER_WENT_AWAY:
            await self._expire_connections()

    async def run_in(
        self,
        tx: Transaction | None,
        fn: Callable[[asyncpg.Connection], Awaitable[T]],
        *,
        operation: str = "query",
    ) -> T:
        """``fn`` on its own (``run``: retried) or inside the unit of work ``tx`` (not retried, as
        nothing inside one is; driver errors translated at the same boundary)."""
        ptx = pg_tx(tx, id(self))
        if ptx is None:
            return await self.run(fn, operation=operation)
        try:
            return await fn(ptx.connection)
        except Exception as exc:
            translated = translate(exc, operation=operation, retried=False)
            if translated is exc:
                raise
            raise translated from exc

    async def fetch(
        self,
        q: Query,
        values: Mapping[str, Any],
        *,
        tx: Transaction | None = None,
        operation: str = "query",
    ) -> list[asyncpg.Record]:
        """The rows of the named statement ``q`` bound to ``values``, as ``run_in`` would give them
        (outside a unit of work, on a parked connection, with ``run``'s first attempt inlined)."""
        args = q.args(values)
        text = q.text

        async def fetch(conn: asyncpg.Connection) -> list[asyncpg.Record]:
            return list(await conn.fetch(text, *args))

        pool = self._pool
        if tx is not None or not self._parked or pool is None:
            return await self.run_in(tx, fetch, operation=operation)
        # ``run`` inlined for its common case, a parked connection that answers: one statement is
        # most of what the stores send, and ``run``'s closure and frames cost each about 7 µs of a
        # SELECT's 150 on this machine (measured, interleaved). A failure goes on along ``run``'s path.
        conn = self._parked.pop()[0]
        if not _open(conn):
            await pool.release(conn)  # (as ``_take`` does; asyncpg's no-op for one it took back)
            return await self.run(fetch, operation=operation)
        self.metrics.record_call()
        try:
            rows = await conn._con.fetch(text, *args)
        except Exception as exc:
            await self._failed_on(pool, conn, exc)
            return await self._retry(fetch, exc, operation)
        except BaseException:
            await pool.release(conn)
            raise
        released = self._park(pool, conn, True)
        if released is not None:
            await pool.release(released)
        return list(rows)

    @staticmethod
    def _discard_if_lost(conn: asyncpg.Connection, exc: BaseException) -> None:
        if is_lost_connection(transient_reason(exc)):
            # Never hand this connection out again, whatever state asyncpg left it in.
            with contextlib.suppress(asyncpg.InterfaceError):  # already released
                conn.terminate()

    # --- the ports on this database (what a ``Worker`` takes) -------------------------------
    # One of each per Database: workers share one version cache, one group commit and one
    # registry cache. (Imported here: those modules import this one.)

    def event_store(self) -> PgEventStore:
        if self._event_store is None:
            from chem_persistence_async.backends.postgres.event_store import PgEventStore

            self._event_store = PgEventStore(self)
        return self._event_store

    def work_queue(self) -> WorkQueue:
        if self._work_queue is None:
            from chem_persistence_async.backends.postgres.work_queue import WorkQueue

            self._work_queue = WorkQueue(self)
        return self._work_queue

    def definition_registry(self) -> DefinitionRegistry:
        if self._registry is None:
            from chem_persistence_async.backends.postgres.definitions import DefinitionRegistry

            self._registry = DefinitionRegistry(self)
        return self._registry

    def checkpoints(self) -> Checkpoints:
        if self._checkpoints is None:
            from chem_persistence_async.backends.postgres.checkpoints import Checkpoints

            self._checkpoints = Checkpoints(self)
        return self._checkpoints

    def workflow_records(self) -> WorkflowRecords:
        if self._records is None:
            from chem_persistence_async.backends.postgres.records import WorkflowRecords

            self._records = WorkflowRecords(self)
        return self._records

    # --- wake-up (SPEC 8.4) -----------------------------------------------------------------

    @property
    def notifier(self) -> Notifier:
        """This database's wake-up sender: local workers at once, ``pg_notify`` coalesced."""
        if self._notifier is None:
            window = self._settings.queue.notify_window_ms / 1000
            self._notifier = Notifier(lambda queues: send_notify(self.run, queues), window=window)
        return self._notifier

    def listener(self, on_wake: Callable[[str | None], None], *, keepalive: float = 30.0) -> Listener:
        """A ``Listener`` on a dedicated connection of its own (not a pooled one)."""
        self._require_open()
        settings = self._settings.connection
        url = self._url

        async def connect() -> asyncpg.Connection:
            return await asyncpg.connect(
                url,
                timeout=settings.connect_timeout,
                statement_cache_size=settings.statement_cache_size,
                server_settings={"application_name": f"{settings.application_name}:listen"[:63]},
            )

        return Listener(connect, on_wake, keepalive=keepalive)

    # --- units of work ----------------------------------------------------------------------

    @asynccontextmanager
    async def transaction(
        self, *, isolation: str | None = None, readonly: bool = False
    ) -> AsyncIterator[PgTransaction]:
        """``async with db.transaction() as tx:`` one unit of work on one connection.

        Store methods given ``tx=tx`` and your own SQL on ``tx`` commit together when the block
        ends, or roll back together if it raises. Nothing inside is retried: use
        ``run_in_transaction`` to retry a whole unit of work. ``isolation`` is PostgreSQL's
        (``"read_committed"``, the default, ``"repeatable_read"`` or ``"serializable"``).
        """
        pool, conn = await self._take(None)
        tx = PgTransaction(conn, id(self))
        ok = False
        try:
            transaction = conn.transaction(isolation=isolation, readonly=readonly)
            await self._own(conn, transaction.start(), "BEGIN")
            try:
                yield tx
                tx.require_open()  # a unit of work a store marked broken must not commit
            except BaseException:
                # The body's own exception goes out as it is (your SQL's errors are yours); a
                # rollback that fails as well (a lost connection) adds nothing to it.
                with contextlib.suppress(Exception):
                    await transaction.rollback()
                raise
            await self._own(conn, transaction.commit(), "COMMIT")
            ok = True
        finally:
            after = tx._finish("committed" if ok else "rolled back")
            await self._give_back(pool, conn, ok)
        for callback in after:
            callback()

    async def _own(self, conn: asyncpg.Connection, statement: Awaitable[None], operation: str) -> None:
        """A statement of the unit of work itself (BEGIN, COMMIT), translated at the boundary."""
        try:
            await statement
        except Exception as exc:
            self._discard_if_lost(conn, exc)
            translated = translate(exc, operation=operation, retried=False)
            if translated is exc:
                raise
            raise translated from exc

    async def run_in_transaction(
        self,
        fn: Callable[[Transaction], Awaitable[T]],
        *,
        isolation: str | None = None,
        operation: str = "transaction",
    ) -> T:
        """``fn(tx)`` in a fresh unit of work, run again from the start after a transient failure
        (a serialization failure, a deadlock, a lost connection), with the database's backoff.

        ``fn`` must be safe to run twice: a commit whose acknowledgement was lost is retried too,
        so everything it writes must be keyed (fixed event ids, job keys).
        """

        async def attempt() -> T:
            async with self.transaction(isolation=isolation) as tx:
                return await fn(tx)

        return await call_with_retry(
            attempt, policy=self._backoff, metrics=self.metrics, operation=operation, classify=_unit_transient
        )

    async def _expire_connections(self) -> None:
        # The server refused a new connection (stopped, restarting, crashed): every pooled connection
        # predates that and is replaced. A single lost connection only discards itself (above): expiring
        # the whole pool on each one would turn a burst of killed backends into a reconnect storm.
        pool = self._pool
        if pool is not None:
            await self._release_parked(pool)
            await pool.expire_connections()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<Database {self.url} {state}{' embedded' if self._embedded else ''}>"


async def _migrate(dsn: str, settings: ConnectionSettings) -> list[str]:
    # A connection of its own, opened with the pool's settings: its statement cache size (0 behind
    # PgBouncer in transaction mode: no named prepared statement may be left on a server connection),
    # its timeouts (``command_timeout`` also bounds the wait for another process's migration) and its
    # application name. The migrations run in one transaction on it (see ``migrations.migrate``).
    conn = await asyncpg.connect(
        dsn,
        timeout=settings.connect_timeout,
        command_timeout=settings.command_timeout,
        statement_cache_size=settings.statement_cache_size,
        server_settings={"application_name": f"{settings.application_name}:migrate"[:63]},
    )
    try:
        return await migrate(conn)
    finally:
        await conn.close()


class DatabaseOpener:
    """What ``Database.connect``/``from_env`` return: an async context manager, also awaitable."""

    def __init__(self, factory: Callable[[], Awaitable[Database]]) -> None:
        self._factory = factory
        self._db: Database | None = None

    async def __aenter__(self) -> Database:
        self._db = await self._factory()
        return self._db

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._db is not None:
            await self._db.close()

    def __await__(self) -> Generator[Any, None, Database]:
        return self._factory().__await__()
