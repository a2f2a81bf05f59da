"""``PgEventStore``: the event store on PostgreSQL, through asyncpg, one statement per append."""

from __future__ import annotations

import asyncio
import builtins
import json
import json.encoder
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any
from uuid import UUID

import asyncpg

from chem_persistence_async.backends.base import EventStoreBase
from chem_persistence_async.backends.postgres.database import Database
from chem_persistence_async.backends.postgres.group_commit import FALLBACK, Fallback, GroupCommitter
from chem_persistence_async.backends.postgres.sql import events as sql
from chem_persistence_async.codec.decode import decode_error, decode_events
from chem_persistence_async.codec.prepare import AppendBatch, PreparedArtifact, StoreLimits
from chem_persistence_async.domain.artifacts import Artifact
from chem_persistence_async.domain.events import FlowEvent
from chem_persistence_async.domain.failures import StepExecutionError
from chem_persistence_async.domain.ids import check_batch_size, check_hashes, check_step_id, to_flow_id
from chem_persistence_async.errors import (
    ConcurrencyConflict,
    InvalidInputError,
)

_MAX_CONFLICT_ROUNDS = 100

_VERSION_CACHE_SIZE = 10_000
"""How many flows' last versions a store remembers (a guess for the lean append, never trusted)."""


class PgEventStore(EventStoreBase):
    """The ``AsyncEventStore`` on PostgreSQL. Every operation goes through ``Database.run``
    (retried on transient failures); appends are idempotent by their client-made ``event_id``.
    """

    def __init__(
        self,
        db: Database,
        *,
        store_artifacts: bool | None = None,
        max_payload_bytes: int | None = None,
        group_commit: bool | None = None,
    ) -> None:
        self._db = db
        self._limits = StoreLimits(
            max_payload_bytes=db.settings.max_payload_bytes
            if max_payload_bytes is None
            else max_payload_bytes,
            store_artifacts=db.settings.store_artifacts if store_artifacts is None else store_artifacts,
        )
        self._versions: dict[UUID, int] = {}
        """Per flow: the last version this store saw stored (a guess, never trusted)."""
        settings = db.settings
        self._group: GroupCommitter[AppendBatch, list[FlowEvent]] | None = None
        if settings.group_commit if group_commit is None else group_commit:
            self._group = GroupCommitter(
                self._write_alone,
                self._write_group,
                key=_flow_of,
                size=_event_count,
                max_inflight=settings.group_commit_writers,
                max_group_events=settings.group_commit_max_events,
            )

    @property
    def group_commit_stats(self) -> dict[str, int] | None:
        """What group commit did so far (``None`` when it is off)."""
        return None if self._group is None else self._group.stats.snapshot()

    def _remember(self, flow_id: UUID, version: int) -> None:
        """Note a version this store saw stored for the flow: the next lean append's guess."""
        versions = self._versions
        known = versions.get(flow_id)
        if known is None:
            if len(versions) >= _VERSION_CACHE_SIZE:
                del versions[next(iter(versions))]  # the oldest entry
            versions[flow_id] = version
        elif version > known:
            versions[flow_id] = version

    @property
    def database(self) -> Database:
        return self._db

    # --- writing ----------------------------------------------------------------------------

    async def _write(self, batch: AppendBatch) -> list[FlowEvent]:
        group = self._group
        if group is not None and not batch.unpassed_outputs:
            self._db.pool  # noqa: B018 - raise DatabaseClosedError before any work
            return await group.submit(batch)
        return await self._write_alone(batch)

    async def _write_group(
        self, batches: Sequence[AppendBatch]
    ) -> builtins.list[builtins.list[FlowEvent] | BaseException | Fallback]:
        """Write several flows' batches in one ``GROUP_APPEND``; settle each member on its own."""
        args = _group_args(batches)

        async def attempt(conn: asyncpg.Connection) -> builtins.list[Any]:
            return list(await conn.fetch(sql.GROUP_APPEND, *args))

        rows = await self._db.run(attempt, operation="append_group")
        per_item: builtins.list[builtins.list[Any]] = [[] for _ in batches]
        for row in rows:
            per_item[row[0] - 1].append(row[1:])
        outcomes: builtins.list[builtins.list[FlowEvent] | BaseException | Fallback] = []
        for batch, item_rows in zip(batches, per_item, strict=True):
            if not item_rows:
                outcomes.append(FALLBACK)
                continue
            try:
                events = _interpret(batch, item_rows)
            except (ConcurrencyConflict, InvalidInputError) as exc:
                outcomes.append(exc)
                continue
            self._remember(batch.flow_id, events[-1].flow_version)
            outcomes.append(events)
        return outcomes

    async def _write_alone(self, batch: AppendBatch) -> list[FlowEvent]:
        events = batch.events
        if len(events) == 1 and events[0].error is None:
            return [await self._db.run(self._one_attempt(batch), operation="append")]
        self._db.pool  # noqa: B018 - raise DatabaseClosedError before any work
        lean_sql, lean_args = _lean_append(batch)
        by_version = lean_sql is sql.LEAN_APPEND_MANY
        flow_id, count = batch.flow_id, len(events)

        async def attempt(conn: asyncpg.Connection) -> list[FlowEvent]:
            base = await self._lean_base(conn, batch)
            if base is not None:
                # The obvious case in one plain INSERT; anything else goes to the full statement,
                # which alone decides conflicts and finds events a lost acknowledgement left stored.
                try:
                    rows = await conn.fetch(lean_sql, lean_args[0], flow_id, base, *lean_args[1:])
                except asyncpg.UniqueViolationError:
                    rows = None
                if rows is not None and len(rows) == count:
                    self._remember(flow_id, base + count)
                    return batch.events_at(base, rows) if by_version else batch.events_for(rows)
            return await self._append_full(conn, batch)

        return await self._db.run(attempt, operation="append")

    def _one_attempt(self, batch: AppendBatch) -> Callable[[asyncpg.Connection], Awaitable[FlowEvent]]:
        """``_write_alone``'s attempt for one event without an error row (most appends): one lean
        statement, its answer paired with the event without a lookup."""
        event = batch.events[0]
        flow_id = batch.flow_id
        extra: tuple[bytes, ...]
        if batch.artifacts:
            statement, extra = sql.LEAN_APPEND_ONE_ARTIFACTS, (_artifacts_json(batch.artifacts),)
        else:
            statement, extra = sql.LEAN_APPEND_ONE, ()

        async def attempt(conn: asyncpg.Connection) -> FlowEvent:
            base = await self._lean_base(conn, batch)
            if base is not None:
                try:
                    row = await conn.fetchrow(
                        statement, event.event_id, flow_id, base, event.event_type, event.payload, *extra
                    )
                except asyncpg.UniqueViolationError:
                    row = None
                if row is not None:
                    self._remember(flow_id, base + 1)
                    return FlowEvent(row[1], flow_id, base + 1, row[2], event.kind, event.event_id)
            return (await self._append_full(conn, batch))[0]

        return attempt

    async def _lean_base(self, conn: asyncpg.Connection, batch: AppendBatch) -> int | None:
        """Refuse outputs listed with no artifact and none stored, then the version a lean statement
        appends after: the caller's ``expected_version``, else this store's guess (``None``: no guess)."""
        if batch.unpassed_outputs:
            missing = await conn.fetch(sql.MISSING_ARTIFACTS, list(batch.unpassed_outputs))
            batch.refuse_missing([row[0] for row in missing])
        base = batch.expected_version
        return self._versions.get(batch.flow_id) if base is None else base

    async def _append_full(self, conn: asyncpg.Connection, batch: AppendBatch) -> list[FlowEvent]:
        """``APPEND``, the judge of every case the lean statements leave to it: a conflict, a
        raced end of the flow, events already stored by an attempt whose answer was lost."""
        args = _append_args(batch)
        for _ in range(_MAX_CONFLICT_ROUNDS):
            try:
                rows = await conn.fetch(sql.APPEND, *args)
            except asyncpg.UniqueViolationError as exc:
                if exc.constraint_name == "event_log_event_id_key":
                    continue  # a concurrent attempt with these ids committed: read it back
                if exc.constraint_name == "event_log_flow_version_key":
                    if batch.expected_version is not None:
                        raise ConcurrencyConflict(batch.flow_id, batch.expected_version, None) from None
                    continue  # appending at the end raced another writer: take the next version
                raise
            events = _interpret(batch, rows)
            self._remember(batch.flow_id, events[-1].flow_version)
            return events
        raise ConcurrencyConflict(batch.flow_id, batch.expected_version, None)

    # --- reading ----------------------------------------------------------------------------

    async def list(self, flow_id: UUID | str) -> builtins.list[FlowEvent]:
        fid = to_flow_id(flow_id)

        async def fetch(conn: asyncpg.Connection) -> builtins.list[Any]:
            return list(await conn.fetch(sql.LIST_EVENTS, fid))

        events = decode_events(fid, await self._db.run(fetch, operation="list"))
        if events:
            self._remember(fid, events[-1].flow_version)
        return events

    async def stream(self, flow_id: UUID | str, *, batch_size: int = 1000) -> AsyncIterator[FlowEvent]:
        """Yield the flow's events in ``seq`` order, ``batch_size`` rows per query (keyset paging:
        no connection or transaction is held between batches).

        The next page's query is sent before this page is decoded and yielded, so the server works
        while the caller consumes: at most two pages are held, this one and the next.
        """
        fid = to_flow_id(flow_id)
        batch_size = check_batch_size(batch_size)
        rows = await self._page(fid, 0, batch_size)
        while True:
            following = None
            if len(rows) == batch_size:
                following = asyncio.ensure_future(self._page(fid, rows[-1][0], batch_size))
            try:
                if following is not None:
                    await asyncio.sleep(0)  # one loop turn: the task sends its query
                for event in decode_events(fid, rows):
                    yield event
            except BaseException as exc:
                if following is not None:
                    await self._settle(following, cancel=isinstance(exc, asyncio.CancelledError))
                raise
            if following is None:
                return
            rows = await following

    async def _page(self, fid: UUID, after: int, size: int) -> builtins.list[Any]:
        async def fetch(conn: asyncpg.Connection) -> builtins.list[Any]:
            return list(await conn.fetch(sql.LIST_EVENTS_AFTER, fid, after, size))

        return await self._db.run(fetch, operation="stream")

    @staticmethod
    async def _settle(page: asyncio.Future[Any], *, cancel: bool) -> None:
        """Finish with a prefetched page nobody will read. It is left to land rather than cancelled
        (a cancel costs asyncpg a request on a new connection), unless the stream itself is."""
        if cancel:
            page.cancel()
        if not page.done():
            await asyncio.wait((page,))
        if not page.cancelled():
            page.exception()  # retrieved: a failed page nobody asked for is not an error

    async def flow_version(self, flow_id: UUID | str) -> int:
        fid = to_flow_id(flow_id)

        async def fetch(conn: asyncpg.Connection) -> int:
            return int(await conn.fetchval(sql.FLOW_VERSION, fid))

        return await self._db.run(fetch, operation="flow_version")

    async def get_artifacts(self, hashes: Iterable[str]) -> dict[str, Artifact]:
        wanted = check_hashes(hashes)
        if not wanted:
            return {}

        async def fetch(conn: asyncpg.Connection) -> builtins.list[Any]:
            return list(await conn.fetch(sql.GET_ARTIFACTS, wanted))

        rows = await self._db.run(fetch, operation="get_artifacts")
        return {
            row[0]: Artifact(
                hash=row[0],
                kind=row[1],
                payload=json.loads(row[2]),
                metadata=None if row[3] is None else json.loads(row[3]),
            )
            for row in rows
        }

    async def list_errors(
        self, flow_id: UUID | str, step_id: str | None = None
    ) -> builtins.list[StepExecutionError]:
        return await self._errors(sql.LIST_ERRORS, flow_id, step_id)

    async def get_error_timeline(
        self, flow_id: UUID | str, step_id: str | None = None
    ) -> builtins.list[StepExecutionError]:
        return await self._errors(sql.ERROR_TIMELINE, flow_id, step_id)

    async def _errors(
        self, query: str, flow_id: UUID | str, step_id: str | None
    ) -> builtins.list[StepExecutionError]:
        fid, step_id = to_flow_id(flow_id), check_step_id(step_id)

        async def fetch(conn: asyncpg.Connection) -> builtins.list[Any]:
            return list(await conn.fetch(query, fid, step_id))

        return [decode_error(row) for row in await self._db.run(fetch, operation="errors")]

    async def count_errors_by_flow(self, flow_id: UUID | str) -> dict[str, dict[str, int]]:
        fid = to_flow_id(flow_id)

        async def fetch(conn: asyncpg.Connection) -> builtins.list[Any]:
            return list(await conn.fetch(sql.COUNT_ERRORS, fid))

        counts: dict[str, dict[str, int]] = {}
        for step_id, error_class, count in await self._db.run(fetch, operation="count_errors"):
            counts.setdefault(step_id, {})[error_class] = count
        return counts

    def __repr__(self) -> str:
        return f"<PgEventStore {self._db!r}>"


def _append_args(batch: AppendBatch) -> tuple[Any, ...]:
    events = batch.events
    failed = [(i + 1, e.error) for i, e in enumerate(events) if e.error is not None]
    return (
        [e.event_id for e in events],
        batch.flow_id,
        batch.expected_version,
        [e.event_type for e in events],
        [e.payload for e in events],
        [a.ordinal for a in batch.artifacts],
        [a.artifact.hash for a in batch.artifacts],
        [a.artifact.kind for a in batch.artifacts],
        [a.payload for a in batch.artifacts],
        [a.metadata for a in batch.artifacts],
        [ordinal for ordinal, _ in failed],
        [err.step_id for _, err in failed if err],
        [err.attempt_number for _, err in failed if err],
        [err.error_class for _, err in failed if err],
        [err.error_message for _, err in failed if err],
        [err.details for _, err in failed if err],
        [err.retry_count for _, err in failed if err],
        [err.max_retries for _, err in failed if err],
    )


def _group_args(batches: Sequence[AppendBatch]) -> tuple[Any, ...]:
    """``GROUP_APPEND``'s arguments: one column per parameter, items numbered from 1."""
    events = [
        (item, ordinal, e) for item, b in enumerate(batches, 1) for ordinal, e in enumerate(b.events, 1)
    ]
    failed = [(item, ordinal, e.error) for item, ordinal, e in events if e.error is not None]
    artifacts = [(item, a) for item, b in enumerate(batches, 1) for a in b.artifacts]
    return (
        [b.flow_id for b in batches],
        [b.expected_version for b in batches],
        [item for item, _, _ in events],
        [ordinal for _, ordinal, _ in events],
        [e.event_id for _, _, e in events],
        [e.event_type for _, _, e in events],
        b"[" + b",".join([e.payload for _, _, e in events]) + b"]",
        [item for item, _ in artifacts],
        [a.ordinal for _, a in artifacts],
        [a.artifact.hash for _, a in artifacts],
        [a.artifact.kind for _, a in artifacts],
        [a.payload for _, a in artifacts],
        [a.metadata for _, a in artifacts],
        [item for item, _, _ in failed],
        [ordinal for _, ordinal, _ in failed],
        [err.step_id for _, _, err in failed if err],
        [err.attempt_number for _, _, err in failed if err],
        [err.error_class for _, _, err in failed if err],
        [err.error_message for _, _, err in failed if err],
        [err.details for _, _, err in failed if err],
        [err.retry_count for _, _, err in failed if err],
        [err.max_retries for _, _, err in failed if err],
    )


def _artifacts_json(artifacts: Sequence[PreparedArtifact]) -> bytes:
    """``LEAN_APPEND_ONE_ARTIFACTS``' $6. The hash is 64 hex digits (checked against the content), the
    kind was checked storable when it was hashed, the payload and metadata are canonical JSON."""
    return (
        b"["
        + b",".join(
            [
                b'{"h":"'
                + a.artifact.hash.encode()
                + b'","k":'
                + _json_string(a.artifact.kind).encode()
                + b',"p":'
                + a.payload
                + b',"m":'
                + (b"null" if a.metadata is None else a.metadata)
                + b"}"
                for a in artifacts
            ]
        )
        + b"]"
    )


_json_string: Callable[[str], str] = json.encoder.encode_basestring


def _flow_of(batch: AppendBatch) -> int:
    return batch.flow_id.int  # (an int hashes in C; a ``UUID`` calls its Python ``__hash__``)


def _event_count(batch: AppendBatch) -> int:
    return len(batch.events)


def _lean_append(batch: AppendBatch) -> tuple[str, tuple[Any, ...]]:
    """The lean statement for a batch of several events or one with an error row, and its arguments
    but $2 (flow) and $3 (base)."""
    events = batch.events
    failed = [(i, e.error) for i, e in enumerate(events, 1) if e.error is not None]
    if not batch.artifacts and not failed:
        return sql.LEAN_APPEND_MANY, (
            [e.event_id for e in events],
            b"[" + b",".join([e.payload for e in events]) + b"]",
        )
    args = _append_args(batch)
    rest: tuple[Any, ...] = ()
    if batch.artifacts:
        rest += args[5:10]
    if failed:
        rest += args[10:18]
    statement = (
        sql.LEAN_APPEND_BOTH
        if batch.artifacts and failed
        else sql.LEAN_APPEND_ARTIFACTS
        if batch.artifacts
        else sql.LEAN_APPEND_ERRORS
    )
    return statement, (args[0], args[3], args[4], *rest)


def _interpret(batch: AppendBatch, rows: Sequence[Any]) -> builtins.list[FlowEvent]:
    if len(rows) == 1 and rows[0][1] is None:
        raise ConcurrencyConflict(batch.flow_id, batch.expected_version, rows[0][2])
    batch.refuse_reused_ids([row[4] for row in rows])
    return batch.events_for((row[0], row[1], row[2], row[3]) for row in rows)
