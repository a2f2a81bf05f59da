"""``PgEventStore``: the event store on PostgreSQL, through asyncpg, one statement per append."""

from __future__ import annotations

import asyncio
import builtins
import json
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, aclosing
from dataclasses import replace
from datetime import datetime
from operator import itemgetter
from typing import Any, TypeVar
from uuid import UUID

import asyncpg

from chem_persistence_async.backends.base import EventStoreBase
from chem_persistence_async.backends.postgres.database import Database
from chem_persistence_async.backends.postgres.group_commit import FALLBACK, Fallback, GroupCommitter
from chem_persistence_async.backends.postgres.json_parts import json_string, json_text, json_time
from chem_persistence_async.backends.postgres.records import WorkflowRecords
from chem_persistence_async.backends.postgres.sql import events as sql
from chem_persistence_async.backends.postgres.sql.query import Query
from chem_persistence_async.backends.postgres.sql.records import FLOW_IDS
from chem_persistence_async.backends.postgres.transaction import PgTransaction, pg_tx
from chem_persistence_async.backends.postgres.work_queue import WorkQueue
from chem_persistence_async.codec.decode import (
    decode_error,
    decode_error_json,
    decode_events,
    decode_positioned,
)
from chem_persistence_async.codec.fast import collector_paused, new_event
from chem_persistence_async.codec.prepare import AppendBatch, PreparedArtifact, StoreLimits
from chem_persistence_async.domain.artifacts import Artifact
from chem_persistence_async.domain.events import FlowEvent
from chem_persistence_async.domain.failures import StepExecutionError
from chem_persistence_async.domain.ids import (
    check_batch_size,
    check_flow_ids,
    check_hashes,
    check_step_id,
    to_flow_id,
)
from chem_persistence_async.domain.jobs import JobWrite, job_cancelled, lease_lost
from chem_persistence_async.domain.positions import Position, PositionedEvent, to_position
from chem_persistence_async.domain.projection import APPEND_TIME, FlowProjection, StageProjection
from chem_persistence_async.errors import (
    ConcurrencyConflict,
    InvalidInputError,
)
from chem_persistence_async.ports.event_store import FlowMark, FlowRecord
from chem_persistence_async.ports.records import FlowRecorder
from chem_persistence_async.ports.unit_of_work import Transaction
from chem_persistence_async.ports.work_queue import WorkQueuePort

T = TypeVar("T")

_MAX_CONFLICT_ROUNDS = 100

_version_of = itemgetter(2)
"""An event row's ``flow_version``."""

_VERSION_CACHE_SIZE = 10_000
"""How many flows' last versions a store remembers (a guess for the lean append, never trusted)."""

LIST_PAGE = 1000
"""Rows per query of a ``list`` outside a unit of work (a flow of up to this many events is one
query, as before paging)."""


class PgEventStore(EventStoreBase):
    """The ``AsyncEventStore`` on PostgreSQL. An operation on its own goes through ``Database.run``
    (retried on transient failures; appends grouped with concurrent ones into one commit); with
    ``tx=`` it runs inside that unit of work. Appends are idempotent by their client-made
    ``event_id``.
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
        settings = db.settings.store
        self._limits = StoreLimits(
            max_payload_bytes=settings.max_payload_bytes if max_payload_bytes is None else max_payload_bytes,
            store_artifacts=settings.store_artifacts if store_artifacts is None else store_artifacts,
        )
        self._versions: dict[UUID, int] = {}
        """Per flow: the last version this store saw committed (a guess, never trusted)."""
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

    def carries(self, recorder: FlowRecorder) -> bool:
        """The records of this database's own ``WorkflowRecords`` go in the append statement."""
        return isinstance(recorder, WorkflowRecords) and recorder.database is self._db

    async def _write_recorded(
        self, batch: AppendBatch, recorder: FlowRecorder, tx: Transaction | None
    ) -> builtins.list[FlowEvent]:
        return await self._write(batch, tx)  # the statements write ``batch.records`` themselves

    def carries_queue(self, queue: WorkQueuePort) -> bool:
        """The jobs of this database's own ``WorkQueue`` change in the append statement."""
        return isinstance(queue, WorkQueue) and queue.database is self._db

    async def _write_with_job(
        self, batch: AppendBatch, recorder: FlowRecorder | None, queue: WorkQueuePort
    ) -> builtins.list[FlowEvent]:
        """ONE statement, retried on a transient failure like any other, shared with other
        appends by group commit when there is a group to join; workers of the job's queue are
        woken once it commits."""
        events = await self._write(batch, None)
        job = batch.job
        if job is not None and job.wakes:
            self._db.notifier.enqueued({job.queue})
        return events

    async def _append_job_in(self, conn: asyncpg.Connection, batch: AppendBatch) -> list[FlowEvent]:
        """One attempt of ``_write_with_job``: the lean statement with the job write composed in
        (``sql.lean_append(jobs=True)``). When it writes nothing, the judge, told never to insert,
        says why: the events are stored already (an earlier attempt of this call committed, job
        write included), or the flow moved on (``ConcurrencyConflict``), or, when the statement
        said so, the job is no longer this worker's."""
        job, base = batch.job, batch.expected_version
        assert job is not None
        assert base is not None
        await _refuse_missing_outputs(conn, batch)
        many = len(batch.events) > 1
        statement = sql.lean_append(
            many=many,
            artifacts=bool(batch.artifacts),
            errors=batch.has_errors,
            in_tx=False,
            records=batch.records is not None,
            stored=_stored(batch),
            jobs=True,
        )
        try:
            values = _lean_values(batch, base) | _jobs_values([(1, job)])
            rows = await conn.fetch(statement.text, *statement.args(values))
        except asyncpg.UniqueViolationError:
            rows = []
        if rows and rows[0][3] is None and len(rows) == len(batch.events):
            self._remember(batch.flow_id, base + len(rows))
            return _lean_events(batch, base, rows)
        why = rows[0][3] if rows else None
        try:
            return await self._judge(conn, replace(batch, records=None, job=None), None, write=False)
        except ConcurrencyConflict:
            held = job.job
            if held is not None and why == "cancelled":
                raise job_cancelled(held.id) from None
            if held is not None and why == "lost":
                raise lease_lost(held.id) from None
            raise

    @property
    def group_commit_stats(self) -> dict[str, int] | None:
        """What group commit did so far (``None`` when it is off)."""
        return None if self._group is None else self._group.stats.snapshot()

    @property
    def database(self) -> Database:
        return self._db

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """A unit of work on this store's database (``db.transaction()``)."""
        return self._db.transaction()

    async def run_in_transaction(self, fn: Callable[[Transaction], Awaitable[T]]) -> T:
        return await self._db.run_in_transaction(fn)

    def _remember(self, flow_id: UUID, version: int) -> None:
        """Note a version this store saw committed for the flow: the next lean append's guess."""
        versions = self._versions
        known = versions.get(flow_id)
        if known is None:
            if len(versions) >= _VERSION_CACHE_SIZE:
                del versions[next(iter(versions))]  # the oldest entry
            versions[flow_id] = version
        elif version > known:
            versions[flow_id] = version

    def _remember_after(self, tx: PgTransaction | None, flow_id: UUID, version: int) -> None:
        """``_remember``, or, inside a unit of work, once it commits (it may yet roll back)."""
        if tx is None:
            self._remember(flow_id, version)
        else:
            tx.on_commit(lambda: self._remember(flow_id, version))

    # --- writing ----------------------------------------------------------------------------

    async def _write(self, batch: AppendBatch, tx: Transaction | None) -> list[FlowEvent]:
        ptx = pg_tx(tx, id(self._db))
        if ptx is not None:
            return await self._db.run_in(
                ptx, lambda conn: self._append_in(conn, batch, ptx), operation="append"
            )
        group = self._group
        if group is not None and not batch.unpassed_outputs:
            self._db.pool  # noqa: B018 - raise DatabaseClosedError before any work
            return await group.submit(batch)
        return await self._write_alone(batch)

    async def _write_alone(self, batch: AppendBatch) -> list[FlowEvent]:
        self._db.pool  # noqa: B018 - raise DatabaseClosedError before any work
        if batch.job is not None:
            return await self._db.run(lambda conn: self._append_job_in(conn, batch), operation="append_job")
        return await self._db.run(lambda conn: self._append_in(conn, batch, None), operation="append")

    async def _append_in(
        self, conn: asyncpg.Connection, batch: AppendBatch, tx: PgTransaction | None
    ) -> list[FlowEvent]:
        """One attempt: the lean statement in the obvious case, else the judge, which alone decides
        conflicts and finds events a lost acknowledgement left stored."""
        await _refuse_missing_outputs(conn, batch)
        flow_id = batch.flow_id
        base = batch.expected_version
        if base is None:
            base = self._versions.get(flow_id)
        if base is not None:
            many = len(batch.events) > 1
            statement = sql.lean_append(
                many=many,
                artifacts=bool(batch.artifacts),
                errors=batch.has_errors,
                in_tx=tx is not None,
                records=batch.records is not None,
                stored=_stored(batch),
            )
            try:
                rows = await conn.fetch(statement.text, *statement.args(_lean_values(batch, base)))
            except asyncpg.UniqueViolationError:
                rows = None  # (only outside a unit of work: inside one, conflicts are skipped)
            if rows:
                if len(rows) == len(batch.events):
                    self._remember_after(tx, flow_id, base + len(rows))
                    return _lean_events(batch, base, rows)
                _half_written(tx, batch, len(rows))
        return await self._judge(conn, batch, tx)

    async def _judge(
        self, conn: asyncpg.Connection, batch: AppendBatch, tx: PgTransaction | None, *, write: bool = True
    ) -> list[FlowEvent]:
        """Decide a batch the lean statement did not write; with ``write`` false it never
        inserts: the events stored already, or ``ConcurrencyConflict``."""
        statement = sql.judge_append(
            artifacts=bool(batch.artifacts),
            errors=batch.has_errors,
            in_tx=tx is not None,
            records=batch.records is not None,
        )
        values = _judge_values(batch)
        if not write:
            values["expected"] = -1  # no flow is ever at -1
        args = statement.args(values)
        for _ in range(_MAX_CONFLICT_ROUNDS):
            try:
                rows = await conn.fetch(statement.text, *args)
            except asyncpg.UniqueViolationError as exc:  # outside a unit of work only
                if exc.constraint_name == "event_log_event_id_key":
                    continue  # a concurrent attempt with these ids committed: read it back
                if exc.constraint_name == "event_log_flow_version_key":
                    if batch.expected_version is not None:
                        raise ConcurrencyConflict(batch.flow_id, batch.expected_version, None) from None
                    continue  # appending at the end raced another writer: take the next version
                raise
            if len(rows) == 1 and rows[0][1] is None:
                actual = rows[0][2]
                if tx is None or (batch.expected_version is not None and batch.expected_version != actual):
                    raise ConcurrencyConflict(batch.flow_id, batch.expected_version, actual)
                continue  # in a unit of work, a writer committed first: the next statement sees it
            if any(row[5] for row in rows):  # events already stored: exactly this batch's, or refused
                batch.refuse_reused_ids([row[4] for row in rows])
            elif len(rows) < len(batch.events):
                _half_written(tx, batch, len(rows))
            events = batch.events_for((row[0], row[1], row[2], row[3]) for row in rows)
            self._remember_after(tx, batch.flow_id, events[-1].flow_version)
            return events
        raise ConcurrencyConflict(batch.flow_id, batch.expected_version, None)

    async def _write_group(
        self, batches: Sequence[AppendBatch]
    ) -> builtins.list[builtins.list[FlowEvent] | BaseException | Fallback]:
        """Write several flows' batches in one ``GROUP_APPEND``; settle each member on its own."""
        recorded = [(item, b.records) for item, b in enumerate(batches, 1) if b.records is not None]
        jobs = [(item, b.job) for item, b in enumerate(batches, 1) if b.job is not None]
        statement = sql.group_append(records=bool(recorded), jobs=bool(jobs))
        values = _group_values(batches)
        if recorded:
            values |= _records_values(recorded)
        if jobs:
            values |= _jobs_values(jobs)
        args = statement.args(values)

        async def attempt(conn: asyncpg.Connection) -> builtins.list[Any]:
            return list(await conn.fetch(statement.text, *args))

        rows = await self._db.run(attempt, operation="append_group")
        per_item: builtins.list[builtins.list[Any]] = [[] for _ in batches]
        for row in rows:
            per_item[row[0] - 1].append(row[1:])
        outcomes: builtins.list[builtins.list[FlowEvent] | BaseException | Fallback] = []
        for batch, item_rows in zip(batches, per_item, strict=True):
            if not item_rows:
                outcomes.append(FALLBACK)
                continue
            if len(item_rows) == 1 and item_rows[0][1] is None:
                outcomes.append(ConcurrencyConflict(batch.flow_id, batch.expected_version, item_rows[0][2]))
                continue
            try:
                batch.refuse_reused_ids([row[4] for row in item_rows])
            except InvalidInputError as exc:
                outcomes.append(exc)
                continue
            events = batch.events_for((row[0], row[1], row[2], row[3]) for row in item_rows)
            self._remember(batch.flow_id, events[-1].flow_version)
            outcomes.append(events)
        return outcomes

    # --- reading ----------------------------------------------------------------------------

    async def list(self, flow_id: UUID | str, *, tx: Transaction | None = None) -> builtins.list[FlowEvent]:
        """The flow's events in order. In a unit of work, one statement; outside one, in pages of
        ``LIST_PAGE`` with the next page's query in flight while this one is decoded, as
        ``stream`` reads (a flow of 10,000 events read 0.69-0.84 of raw fetch + ``json.loads``
        in one statement, 1.16-1.41 streamed, in the same runs). The pages join into the flow as
        it stood when the last one was read: versions are gap-free, and a page only ever adds
        versions after the previous page's last."""
        fid = to_flow_id(flow_id)
        ptx = pg_tx(tx, id(self._db))
        if ptx is not None:
            events = decode_events(fid, await self._fetch(ptx, sql.LIST_EVENTS, "list", flow_id=fid))
        else:
            rows = await self._page(fid, 0, LIST_PAGE, "list")
            if len(rows) < LIST_PAGE:
                events = decode_events(fid, rows)
            else:
                events = await self._list_pages(fid, rows)
        if events:
            self._remember_after(ptx, fid, events[-1].flow_version)
        return events

    async def _list_pages(self, fid: UUID, first: builtins.list[Any]) -> builtins.list[FlowEvent]:
        """The events of a flow longer than one page, its first page's rows in hand.

        The cyclic garbage collector stays paused for the whole read, across the pages' awaits:
        the events kept so far are the bulk of the young heap, and every collection the next
        page's rows set off between two decodes walked them all again, then promoted them, then
        made full collections due over them (a list of 100,000 small events, one process,
        interleaved: 535 ms paged with collections between pages, 306 paused throughout, 471 in
        one statement, raw fetch + ``json.loads`` 553). Other tasks run during the awaits with
        it paused, which costs them nothing but a later collection of any cycles they make; a
        collector someone else switched off before the read stays off (``collector_paused``)."""
        events: builtins.list[FlowEvent] = []
        with collector_paused():
            async for page in self._decoded_pages(fid, LIST_PAGE, "list", first=first):
                events += page
        return events

    async def read_flow(
        self, flow_id: UUID | str, *, after: FlowMark | None = None, tx: Transaction | None = None
    ) -> FlowRecord:
        """The flow's events and error rows from ONE statement (one snapshot); with ``after``, the
        part after it when the flow still has it (``LOAD_FLOW_AFTER``), else the whole flow by a
        second statement."""
        fid = to_flow_id(flow_id)
        ptx = pg_tx(tx, id(self._db))
        rows: builtins.list[Any] = []
        if after is not None:
            rows = await self._fetch(
                ptx,
                sql.LOAD_FLOW_AFTER,
                "read_flow",
                flow_id=fid,
                after=after.version,
                after_id=after.event_id,
                after_seq=after.seq,
                first_seq=after.first_seq,
                errors=after.errors,
            )
        if not rows or not _is_mark(rows[0], after):
            after = None
            rows = await self._fetch(ptx, sql.LOAD_FLOW, "read_flow", flow_id=fid)
        errors_row = rows.pop() if rows and rows[-1][0] is None else None
        if errors_row is None:  # (ORDER BY puts it last; never trusted blindly)
            found = [i for i, row in enumerate(rows) if row[0] is None]
            errors_row = rows.pop(found[0]) if found else None
        since = 0
        if after is not None:
            since = after.version
            del rows[0]  # the reader's own last event, returned as proof
        # One pause for the whole read (the events, then the error rows; see decode_events): the
        # events of a load are replayed and dropped, and die young if no collection promotes them.
        with collector_paused():
            record = self._flow_record(ptx, fid, rows, None if errors_row is None else errors_row[4])
        return record if not since else FlowRecord(record.events, record.errors, since)

    async def read_flows(
        self, flow_ids: Iterable[UUID | str], *, tx: Transaction | None = None
    ) -> dict[UUID, FlowRecord]:
        """``read_flow`` of several flows from ONE statement (``LOAD_FLOWS``, one snapshot)."""
        fids = check_flow_ids(flow_ids)
        if not fids:
            return {}
        ptx = pg_tx(tx, id(self._db))
        rows = await self._fetch(ptx, sql.LOAD_FLOWS, "read_flows", flow_ids=fids)
        by_flow: dict[UUID, builtins.list[Any]] = {fid: [] for fid in fids}
        error_rows: dict[UUID, Any] = {}
        for row in rows:
            if row[0] is None:
                error_rows[row[5]] = row[4]
            else:
                by_flow[row[5]].append(row)
        with collector_paused():  # (as read_flow)
            for flow_rows in by_flow.values():
                flow_rows.sort(key=_version_of)  # (grouped per flow; never trusted blindly)
            return {
                fid: self._flow_record(ptx, fid, flow_rows, error_rows.get(fid))
                for fid, flow_rows in by_flow.items()
            }

    def _flow_record(
        self, ptx: PgTransaction | None, fid: UUID, rows: builtins.list[Any], errors_json: Any
    ) -> FlowRecord:
        """A flow's record from its event rows and its error rows as one JSON array (``None``:
        none), as ``LOAD_FLOW`` and ``LOAD_FLOWS`` return them."""
        events = decode_events(fid, rows)
        errors = [] if errors_json is None else decode_error_json(fid, errors_json)
        if events:
            self._remember_after(ptx, fid, events[-1].flow_version)
        return FlowRecord(events, errors)

    async def _fetch(
        self, tx: PgTransaction | None, q: Query, operation: str, **values: Any
    ) -> builtins.list[Any]:
        return await self._db.fetch(q, values, tx=tx, operation=operation)

    async def stream(self, flow_id: UUID | str, *, batch_size: int = 1000) -> AsyncIterator[FlowEvent]:
        """Yield the flow's events in order, ``batch_size`` rows per query (keyset paging on
        ``(flow_id, flow_version)``, the flow's own index, so no plan walks the whole log: no
        connection or transaction is held between batches)."""
        fid = to_flow_id(flow_id)
        batch_size = check_batch_size(batch_size)
        async with aclosing(self._decoded_pages(fid, batch_size, "stream")) as pages:
            async for page in pages:
                for event in page:
                    yield event

    async def _decoded_pages(
        self, fid: UUID, size: int, operation: str, *, first: builtins.list[Any] | None = None
    ) -> AsyncGenerator[builtins.list[FlowEvent], None]:
        """The flow's events, ``size`` rows per query (``first``: the first page's, read already).
        The next page's query is sent before this page is decoded and handed on, so the server
        works while the client decodes and the caller consumes: at most two pages are held, this
        one and the next."""
        rows = await self._page(fid, 0, size, operation) if first is None else first
        while True:
            following = None
            if len(rows) == size:
                following = asyncio.ensure_future(self._page(fid, rows[-1][2], size, operation))
            try:
                if following is not None:
                    await asyncio.sleep(0)  # one loop turn: the task sends its query
                yield decode_events(fid, rows)
            except BaseException as exc:
                if following is not None:
                    await self._settle(following, cancel=isinstance(exc, asyncio.CancelledError))
                raise
            if following is None:
                return
            rows = await following

    async def _page(self, fid: UUID, after: int, size: int, operation: str) -> builtins.list[Any]:
        return await self._fetch(None, sql.LIST_EVENTS_AFTER, operation, flow_id=fid, after=after, limit=size)

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

    async def read_all(
        self, after: Position | str | None = None, *, limit: int = 1000, tx: Transaction | None = None
    ) -> builtins.list[PositionedEvent]:
        """Every flow's events in the global order, after ``after`` (``READ_ALL``: by writing
        transaction, then ``seq``, only below the oldest transaction still running)."""
        start = to_position(after)
        limit = check_batch_size(limit, "limit")
        rows = await self._fetch(
            pg_tx(tx, id(self._db)),
            sql.READ_ALL,
            "read_all",
            after_tx=str(start.group) if start is not None else "0",
            after_seq=start.seq if start is not None else 0,
            limit=limit,
        )
        return decode_positioned(rows)

    async def flow_version(self, flow_id: UUID | str, *, tx: Transaction | None = None) -> int:
        fid = to_flow_id(flow_id)
        rows = await self._fetch(pg_tx(tx, id(self._db)), sql.FLOW_VERSION, "flow_version", flow_id=fid)
        return int(rows[0][0])

    async def flow_ids(
        self, *, after: UUID | None = None, limit: int = 1000, tx: Transaction | None = None
    ) -> builtins.list[UUID]:
        """Ids of flows with events, ascending, after ``after`` (what ``records rebuild`` walks)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidInputError(f"limit must be an int >= 1, got {limit!r}")
        start = None if after is None else to_flow_id(after)
        rows = await self._fetch(pg_tx(tx, id(self._db)), FLOW_IDS, "flow_ids", after=start, limit=limit)
        return [row[0] for row in rows]

    async def get_artifacts(
        self, hashes: Iterable[str], *, tx: Transaction | None = None
    ) -> dict[str, Artifact]:
        wanted = check_hashes(hashes)
        if not wanted:
            return {}
        rows = await self._fetch(pg_tx(tx, id(self._db)), sql.GET_ARTIFACTS, "get_artifacts", hashes=wanted)
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
        self, flow_id: UUID | str, step_id: str | None = None, *, tx: Transaction | None = None
    ) -> builtins.list[StepExecutionError]:
        return await self._errors(sql.LIST_ERRORS, flow_id, step_id, tx)

    async def get_error_timeline(
        self, flow_id: UUID | str, step_id: str | None = None, *, tx: Transaction | None = None
    ) -> builtins.list[StepExecutionError]:
        return await self._errors(sql.ERROR_TIMELINE, flow_id, step_id, tx)

    async def _errors(
        self, q: Query, flow_id: UUID | str, step_id: str | None, tx: Transaction | None
    ) -> builtins.list[StepExecutionError]:
        fid, step_id = to_flow_id(flow_id), check_step_id(step_id)
        rows = await self._fetch(pg_tx(tx, id(self._db)), q, "errors", flow_id=fid, step_id=step_id)
        return [decode_error(row) for row in rows]

    async def count_errors_by_flow(
        self, flow_id: UUID | str, *, tx: Transaction | None = None
    ) -> dict[str, dict[str, int]]:
        fid = to_flow_id(flow_id)
        counts: dict[str, dict[str, int]] = {}
        for step_id, error_class, count in await self._fetch(
            pg_tx(tx, id(self._db)), sql.COUNT_ERRORS, "count_errors", flow_id=fid
        ):
            counts.setdefault(step_id, {})[error_class] = count
        return counts

    def __repr__(self) -> str:
        return f"<PgEventStore {self._db!r}>"


def _is_mark(row: Any, mark: FlowMark | None) -> bool:
    """Whether an event row is the mark's last event (the same version, id and ``seq``; at version 1
    its first as well)."""
    if mark is None or (mark.version == 1 and mark.first_seq != mark.seq):
        return False
    return bool(row[2] == mark.version and row[1] == mark.event_id and row[0] == mark.seq)


# --- arguments, by the names the statements use -------------------------------------------------


def _half_written(tx: PgTransaction | None, batch: AppendBatch, written: int) -> None:
    """A batch only partly inserted: possible only inside a unit of work, when a concurrent writer
    took one of its later versions. That unit of work must not commit."""
    reason = (
        f"flow {batch.flow_id}: only {written} of {len(batch.events)} events went in (a concurrent writer)"
    )
    if tx is not None:
        tx.mark_broken(reason)
    raise ConcurrencyConflict(batch.flow_id, batch.expected_version, None)


def _lean_values(batch: AppendBatch, base: int) -> dict[str, Any]:
    events = batch.events
    values: dict[str, Any] = {"flow_id": batch.flow_id, "base": base}
    if len(events) == 1:
        values["event_id"] = events[0].event_id
        values["payload"] = events[0].payload
    else:
        values["event_ids"] = [e.event_id for e in events]
        values["payloads"] = _payloads_json(batch)
    if batch.artifacts:
        values["artifacts"] = _artifacts_json(batch.artifacts)
    if batch.records is not None:
        values |= (
            _stored_record_values(batch.records) if _stored(batch) else _flow_record_values(batch.records)
        )
    return values


def _stored(batch: AppendBatch) -> bool:
    """Whether a lean append's records go as ``sql.stored_flow_records_ctes`` updates."""
    return batch.records is not None and batch.records.run.stored


async def _refuse_missing_outputs(conn: asyncpg.Connection, batch: AppendBatch) -> None:
    """``MissingArtifactError`` if an output listed with no artifact passed is not stored either."""
    if batch.unpassed_outputs:
        missing = await conn.fetch(sql.MISSING_ARTIFACTS.text, list(batch.unpassed_outputs))
        batch.refuse_missing([row[0] for row in missing])


def _lean_events(batch: AppendBatch, base: int, rows: Sequence[Any]) -> list[FlowEvent]:
    """The batch's events from a lean append's full answer: ``(event_id, seq, ts)`` for one event,
    ``(flow_version, seq, ts)`` per event for several."""
    if len(batch.events) > 1:
        return batch.events_at(base, rows)
    event = batch.events[0]
    return [new_event(rows[0][1], batch.flow_id, base + 1, rows[0][2], event.kind, event.event_id)]


def _jobs_values(jobs: Sequence[tuple[int, JobWrite]]) -> dict[str, Any]:
    """``queue.JOB_WRITES_BEFORE``'s ``:jobs``: ONE JSON array, one object per item's job write."""
    return {"jobs": b"[" + b",".join([_job_json(item, job) for item, job in jobs]) + b"]"}


def _job_json(item: int, write: JobWrite) -> bytes:
    head = b'{"i":' + str(item).encode() + b',"k":' + json_text(write.kind)
    if write.spec is not None:
        spec = write.spec
        return b"".join(
            [
                head,
                b',"q":' + json_text(spec.queue),
                b',"n":' + json_text(spec.kind),
                b',"y":' + json_text(spec.key),
                b',"p":' + spec.payload,
                b',"r":' + str(spec.priority).encode(),
                b',"b":' + json_time(spec.not_before),
                b',"m":' + (b"null" if spec.max_attempts is None else str(spec.max_attempts).encode()),
                b',"f":' + json_text(None if spec.flow_id is None else str(spec.flow_id)),
                b',"d":' + json_text(spec.definition),
                b"}",
            ]
        )
    job = write.job
    assert job is not None
    return b"".join(
        [
            head,
            b',"id":',
            str(job.id).encode(),
            b',"t":"',
            str(job.lease_token).encode(),
            b'","u":',
            json_time(write.until),
            b"}",
        ]
    )


def _judge_values(batch: AppendBatch) -> dict[str, Any]:
    values = {
        "flow_id": batch.flow_id,
        "expected": batch.expected_version,
        "event_ids": [e.event_id for e in batch.events],
        "payloads": _payloads_json(batch),
    }
    if batch.artifacts:
        values["artifacts"] = _artifacts_json(batch.artifacts)
    if batch.records is not None:
        values |= _flow_record_values(batch.records)
    return values


def _records_values(recorded: Sequence[tuple[int, FlowProjection]]) -> dict[str, Any]:
    """``appended_records_ctes``'s ``:records``: ONE JSON array, written as bytes (names and
    messages escaped as JSON strings, JSON values already canonical bytes). Times the projection
    took from the append (``APPEND_TIME``) go as flags: the statement puts in the events' ``ts``."""
    return {"records": b"[" + b",".join([_run_json(item, p) for item, p in recorded]) + b"]"}


def _flow_record_values(p: FlowProjection) -> dict[str, Any]:
    """``appended_flow_records_ctes``'s parameters: the run's fields one by one, its stages as ONE
    JSON array (as ``_records_values`` writes them)."""
    r = p.run
    return {
        "rec_w": r.workflow_id,
        "rec_n": r.workflow_name,
        "rec_y": r.workflow_type,
        "rec_s": r.status.value,
        "rec_in": r.input.data,
        "rec_o": None if r.output is None else r.output.data,
        "rec_c": r.config.data,
        "rec_v": r.flow_version,
        "rec_p": r.previous_version,
        "rec_cn": _at_append(r.created_at),
        "rec_sn": _at_append(r.started_at),
        "rec_dn": _at_append(r.completed_at),
        "rec_g": b"[" + b",".join([_stage_json(s) for s in p.stages]) + b"]",
    }


def _stored_record_values(p: FlowProjection) -> dict[str, Any]:
    """``stored_flow_records_ctes``'s parameters: what an append can change of a stored run."""
    r = p.run
    return {
        "rec_s": r.status.value,
        "rec_o": None if r.output is None else r.output.data,
        "rec_v": r.flow_version,
        "rec_sn": _at_append(r.started_at),
        "rec_dn": _at_append(r.completed_at),
        "rec_g": b"[" + b",".join([_stored_stage_json(s) for s in p.stages]) + b"]",
    }


def _run_json(item: int, p: FlowProjection) -> bytes:
    r = p.run
    return b"".join(
        [
            b'{"i":',
            str(item).encode(),
            b',"w":',
            json_string(r.workflow_id).encode(),
            b',"n":',
            json_string(r.workflow_name).encode(),
            b',"y":',
            json_string(r.workflow_type).encode(),
            b',"s":"',
            r.status.value.encode(),
            b'","in":',
            b"null" if r.stored else r.input.data,
            b',"o":',
            b"null" if r.output is None else r.output.data,
            b',"c":',
            r.config.data,
            b',"v":',
            str(r.flow_version).encode(),
            b',"p":',
            str(r.previous_version).encode(),
            b',"cn":',
            _flag(r.created_at),
            b',"sn":',
            _flag(r.started_at),
            b',"dn":',
            _flag(r.completed_at),
            b',"g":[',
            b",".join([_stage_json(s) for s in p.stages]),
            b"]}",
        ]
    )


def _stage_json(s: StageProjection) -> bytes:
    return b"".join(
        [
            b'{"id":"',
            str(s.id).encode(),
            b'","n":',
            json_string(s.stage_name).encode(),
            b',"x":',
            str(s.stage_number).encode(),
            b',"c":',
            s.config.data,
            b',"t":',
            b"true" if s.touched else b"false",
            b",",
            _stage_changes_json(s),
        ]
    )


def _stored_stage_json(s: StageProjection) -> bytes:
    return b"{" + _stage_changes_json(s)


def _stage_changes_json(s: StageProjection) -> bytes:
    """A stage's key and what an append can change of it, then the closing brace."""
    return b"".join(
        [
            b'"k":',
            json_string(s.stage_id).encode(),
            b',"s":"',
            s.status.value.encode(),
            b'","e":',
            json_text(s.error_message),
            b',"np":',
            json_time(s.next_poll_at),
            b',"sn":',
            _flag(s.started_at),
            b',"dn":',
            _flag(s.completed_at),
            b',"o":',
            b"null" if s.output_data is None else s.output_data.data,
            b',"m":',
            s.metrics.data,
            b"}",
        ]
    )


def _at_append(time: datetime | None) -> bool:
    """Whether a time of a projection made before its append is the append's (else it is none)."""
    if time is None:
        return False
    if time == APPEND_TIME:
        return True
    raise ValueError(f"a projection made before its append holds a time of its own: {time!r}")


def _flag(time: datetime | None) -> bytes:
    return b"true" if _at_append(time) else b"false"


def _group_values(batches: Sequence[AppendBatch]) -> dict[str, Any]:
    """``GROUP_APPEND``'s arguments: items numbered from 1, one column per per-event parameter."""
    events = [
        (item, ordinal, e) for item, b in enumerate(batches, 1) for ordinal, e in enumerate(b.events, 1)
    ]
    return {
        "flow_ids": [b.flow_id for b in batches],
        "expected": [b.expected_version for b in batches],
        "items": [item for item, _, _ in events],
        "ordinals": [ordinal for _, ordinal, _ in events],
        "event_ids": [e.event_id for _, _, e in events],
        "payloads": b"[" + b",".join([e.payload for _, _, e in events]) + b"]",
        "artifacts": b"["
        + b",".join([_artifact_json(a, item) for item, b in enumerate(batches, 1) for a in b.artifacts])
        + b"]",
    }


def _payloads_json(batch: AppendBatch) -> bytes:
    return b"[" + b",".join([e.payload for e in batch.events]) + b"]"


def _artifacts_json(artifacts: Sequence[PreparedArtifact]) -> bytes:
    return b"[" + b",".join([_artifact_json(a) for a in artifacts]) + b"]"


def _artifact_json(a: PreparedArtifact, item: int | None = None) -> bytes:
    """One element of ``:artifacts``. The hash is 64 hex digits (checked against the content), the
    kind was checked storable when it was hashed, the payload and metadata are canonical JSON."""
    head = b'{"o":' + str(a.ordinal).encode() + (b"" if item is None else b',"i":' + str(item).encode())
    return (
        head
        + b',"h":"'
        + a.artifact.hash.encode()
        + b'","k":'
        + json_string(a.artifact.kind).encode()
        + b',"p":'
        + a.payload
        + b',"m":'
        + (b"null" if a.metadata is None else a.metadata)
        + b"}"
    )


def _flow_of(batch: AppendBatch) -> int:
    return batch.flow_id.int  # (an int hashes in C; a ``UUID`` calls its Python ``__hash__``)


def _event_count(batch: AppendBatch) -> int:
    return len(batch.events)
