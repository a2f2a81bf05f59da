"""``InMemoryEventStore``: the reference semantics of the contract, with no database.

It keeps the same encoded payloads the PostgreSQL store keeps and decodes them the same way, so
what PostgreSQL's JSONB would change is changed here too, and the two stay observably identical.
Every method finishes its state change without awaiting in between, so concurrent tasks see each
append as atomic, as they would a PostgreSQL transaction; inside a unit of work (``tx=``) each
append records how to undo itself.
"""

from __future__ import annotations

import builtins
import json
from bisect import bisect_left, bisect_right, insort
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import TypeVar
from uuid import UUID

from chem_persistence_async.backends.base import EventStoreBase
from chem_persistence_async.backends.memory.records import InMemoryWorkflowRecords
from chem_persistence_async.backends.memory.transaction import (
    MemoryTransaction,
    memory_transaction,
    memory_tx,
    new_group,
    oldest_open_group,
    run_in_memory_transaction,
)
from chem_persistence_async.backends.memory.work_queue import InMemoryWorkQueue
from chem_persistence_async.codec.decode import EventRow, decode_events, decode_positioned
from chem_persistence_async.codec.prepare import AppendBatch, StoreLimits
from chem_persistence_async.domain.artifacts import Artifact
from chem_persistence_async.domain.canonical import canonical_json
from chem_persistence_async.domain.events import FlowEvent
from chem_persistence_async.domain.failures import (
    ErrorClass,
    StepExecutionError,
    count_by_step_and_class,
    timeline_order,
)
from chem_persistence_async.domain.ids import (
    check_batch_size,
    check_flow_ids,
    check_hashes,
    check_step_id,
    to_flow_id,
)
from chem_persistence_async.domain.positions import Position, PositionedEvent, to_position
from chem_persistence_async.domain.projection import at_append_time
from chem_persistence_async.errors import ConcurrencyConflict, InvalidInputError
from chem_persistence_async.ports.event_store import FlowMark, FlowRecord
from chem_persistence_async.ports.records import FlowRecorder
from chem_persistence_async.ports.unit_of_work import Transaction
from chem_persistence_async.ports.work_queue import WorkQueuePort

T = TypeVar("T")


class InMemoryEventStore(EventStoreBase):
    """The ``AsyncEventStore`` in a process's memory (tests, notebooks, the reference for parity)."""

    def __init__(self, *, store_artifacts: bool = True, max_payload_bytes: int | None = None) -> None:
        self._limits = StoreLimits(
            store_artifacts=store_artifacts,
            **({} if max_payload_bytes is None else {"max_payload_bytes": max_payload_bytes}),
        )
        self._seq = 0
        self._flows: dict[UUID, list[EventRow]] = {}
        self._by_event_id: dict[UUID, tuple[UUID, int]] = {}
        self._artifacts: dict[str, tuple[Artifact, int]] = {}
        self._errors: list[StepExecutionError] = []
        self._order: list[tuple[int, int, UUID, int]] = []
        """Every stored event's ``(commit group, seq, flow, index among its flow's rows)``,
        ascending: the global order (``read_all``; the groups are ``MemoryTransaction``'s, as
        PostgreSQL's are transaction ids)."""

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """A unit of work over in-memory stores (shared by all of them: see ``MemoryTransaction``)."""
        return memory_transaction()

    async def run_in_transaction(self, fn: Callable[[Transaction], Awaitable[T]]) -> T:
        return await run_in_memory_transaction(fn)

    async def _write(self, batch: AppendBatch, tx: Transaction | None) -> list[FlowEvent]:
        return self._append(batch, memory_tx(tx))[0]

    def carries(self, recorder: FlowRecorder) -> bool:
        return isinstance(recorder, InMemoryWorkflowRecords)

    async def _write_recorded(
        self, batch: AppendBatch, recorder: FlowRecorder, tx: Transaction | None
    ) -> list[FlowEvent]:
        """The append and its records with no await in between (atomic, as PostgreSQL's one
        statement is); nothing recorded when the events were stored already."""
        journal = memory_tx(tx)
        events, written = self._append(batch, journal)
        if written:
            _merge_records(batch, recorder, events, journal)
        return events

    def carries_queue(self, queue: WorkQueuePort) -> bool:
        return isinstance(queue, InMemoryWorkQueue)

    async def _write_with_job(
        self, batch: AppendBatch, recorder: FlowRecorder | None, queue: WorkQueuePort
    ) -> list[FlowEvent]:
        """The append, its records and the job write in one unit of work with no await between
        them, checked in PostgreSQL's order: events stored already come back (the write is not
        made again), then the job must be held, then the version must match."""
        write = batch.job
        assert isinstance(queue, InMemoryWorkQueue)
        assert write is not None
        async with memory_transaction() as tx:
            journal = memory_tx(tx)
            assert journal is not None
            stored = any(e.event_id in self._by_event_id for e in batch.events)
            if not stored and write.job is not None:
                queue.require_held(write.job)
            events, written = self._append(batch, journal)
            if written:
                _merge_records(batch, recorder, events, journal)
                queue.apply_write(write, journal)
            return events

    def _append(self, batch: AppendBatch, journal: MemoryTransaction | None) -> tuple[list[FlowEvent], bool]:
        """The appended events, and whether this call wrote them (False: stored already)."""
        batch.refuse_missing([h for h in batch.unpassed_outputs if h not in self._artifacts])
        known = [self._by_event_id[e.event_id] for e in batch.events if e.event_id in self._by_event_id]
        if known:
            return self._replayed_append(batch, known), False

        fid = batch.flow_id
        rows = self._flows.get(fid, [])
        current = rows[-1][2] if rows else 0
        if batch.expected_version is not None and batch.expected_version != current:
            raise ConcurrencyConflict(fid, batch.expected_version, current)

        ts = datetime.now(UTC)
        group = new_group() if journal is None else journal.group
        stored: list[tuple[UUID, int, int, datetime]] = []
        seq_of_ordinal: dict[int, int] = {}
        errors_before, new_hashes = len(self._errors), []
        for ordinal, event in enumerate(batch.events, start=1):
            self._seq += 1
            version = current + ordinal
            rows.append((self._seq, event.event_id, version, ts, event.payload))
            self._by_event_id[event.event_id] = (fid, len(rows) - 1)
            insort(self._order, (group, self._seq, fid, len(rows) - 1))
            seq_of_ordinal[ordinal] = self._seq
            stored.append((event.event_id, self._seq, version, ts))
            if event.error is not None:
                err = event.error
                self._errors.append(
                    StepExecutionError(
                        flow_id=fid,
                        step_id=err.step_id,
                        attempt_number=err.attempt_number,
                        error_class=ErrorClass(err.error_class),
                        error_message=err.error_message,
                        details=None if err.details is None else json.loads(canonical_json(err.details)),
                        retry_count=err.retry_count,
                        max_retries=err.max_retries,
                        ts=ts,
                        event_seq=self._seq,
                    )
                )
        self._flows[fid] = rows
        for prepared in batch.artifacts:
            if prepared.artifact.hash not in self._artifacts:
                stored_artifact = Artifact(
                    hash=prepared.artifact.hash,
                    kind=prepared.artifact.kind,
                    payload=json.loads(prepared.payload),
                    metadata=None if prepared.metadata is None else json.loads(prepared.metadata),
                )
                self._artifacts[prepared.artifact.hash] = (stored_artifact, seq_of_ordinal[prepared.ordinal])
                new_hashes.append(prepared.artifact.hash)
        if journal is not None:
            journal.record_undo(lambda: self._undo_append(batch, current, errors_before, new_hashes, group))
        return batch.events_for(stored), True

    def _undo_append(
        self, batch: AppendBatch, base: int, errors_before: int, hashes: list[str], group: int
    ) -> None:
        """Take back one append made inside a unit of work that rolled back. The sequence is not
        rewound (a PostgreSQL sequence is not either): a rolled-back append leaves a gap in ``seq``."""
        rows = self._flows[batch.flow_id]
        for row in rows[base:]:
            del self._order[bisect_left(self._order, (group, row[0]), key=_place)]
        del rows[base:]
        if not rows:
            del self._flows[batch.flow_id]
        for event in batch.events:
            self._by_event_id.pop(event.event_id, None)
        del self._errors[errors_before:]
        for h in hashes:
            self._artifacts.pop(h, None)

    def _replayed_append(self, batch: AppendBatch, known: list[tuple[UUID, int]]) -> list[FlowEvent]:
        batch.refuse_reused_ids([fid for fid, _ in known])
        rows = self._flows[batch.flow_id]
        return batch.events_for((rows[i][1], rows[i][0], rows[i][2], rows[i][3]) for _, i in known)

    async def list(self, flow_id: UUID | str, *, tx: Transaction | None = None) -> builtins.list[FlowEvent]:
        memory_tx(tx)
        fid = to_flow_id(flow_id)
        return decode_events(fid, list(self._flows.get(fid, ())))

    async def read_flow(
        self, flow_id: UUID | str, *, after: FlowMark | None = None, tx: Transaction | None = None
    ) -> FlowRecord:
        memory_tx(tx)
        fid = to_flow_id(flow_id)
        rows = self._flows.get(fid, [])
        if after is None or not _has_mark(rows, after) or self._errors_upto(fid, after.seq) != after.errors:
            return self._record(fid)
        return FlowRecord(
            decode_events(fid, rows[after.version :]),
            [e for e in self._errors if e.flow_id == fid and (e.event_seq or 0) > after.seq],
            after.version,
        )

    def _errors_upto(self, fid: UUID, seq: int) -> int:
        return sum(
            1 for e in self._errors if e.flow_id == fid and (e.event_seq is None or e.event_seq <= seq)
        )

    def _record(self, fid: UUID) -> FlowRecord:
        return FlowRecord(
            decode_events(fid, list(self._flows.get(fid, ()))), [e for e in self._errors if e.flow_id == fid]
        )

    async def read_flows(
        self, flow_ids: Iterable[UUID | str], *, tx: Transaction | None = None
    ) -> dict[UUID, FlowRecord]:
        memory_tx(tx)
        return {fid: self._record(fid) for fid in check_flow_ids(flow_ids)}

    async def stream(self, flow_id: UUID | str, *, batch_size: int = 1000) -> AsyncIterator[FlowEvent]:
        fid = to_flow_id(flow_id)
        batch_size = check_batch_size(batch_size)
        rows = self._flows.get(fid, [])
        for start in range(0, len(rows), batch_size):
            for event in decode_events(fid, rows[start : start + batch_size]):
                yield event

    async def read_all(
        self, after: Position | str | None = None, *, limit: int = 1000, tx: Transaction | None = None
    ) -> builtins.list[PositionedEvent]:
        """Every flow's events in ``(commit group, seq)`` order, after ``after``, below the oldest
        unit of work still open (as PostgreSQL's below its oldest transaction still running)."""
        memory_tx(tx)
        start = to_position(after)
        limit = check_batch_size(limit, "limit")
        first = 0 if start is None else bisect_right(self._order, (start.group, start.seq), key=_place)
        horizon = oldest_open_group()
        rows: builtins.list[tuple[object, ...]] = []
        for group, _, fid, index in self._order[first : first + limit]:
            if horizon is not None and group >= horizon:
                break
            rows.append((*self._flows[fid][index], fid, group))
        return decode_positioned(rows)

    async def flow_version(self, flow_id: UUID | str, *, tx: Transaction | None = None) -> int:
        memory_tx(tx)
        rows = self._flows.get(to_flow_id(flow_id))
        return rows[-1][2] if rows else 0

    async def flow_ids(
        self, *, after: UUID | None = None, limit: int = 1000, tx: Transaction | None = None
    ) -> builtins.list[UUID]:
        """Ids of flows with events, ascending, after ``after`` (what ``records rebuild`` walks)."""
        memory_tx(tx)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidInputError(f"limit must be an int >= 1, got {limit!r}")
        start = None if after is None else to_flow_id(after)
        ids = sorted(fid for fid, rows in self._flows.items() if rows and (start is None or fid > start))
        return ids[:limit]

    async def get_artifacts(
        self, hashes: Iterable[str], *, tx: Transaction | None = None
    ) -> dict[str, Artifact]:
        memory_tx(tx)
        return {h: self._artifacts[h][0] for h in check_hashes(hashes) if h in self._artifacts}

    async def list_errors(
        self, flow_id: UUID | str, step_id: str | None = None, *, tx: Transaction | None = None
    ) -> builtins.list[StepExecutionError]:
        memory_tx(tx)
        fid, step_id = to_flow_id(flow_id), check_step_id(step_id)
        return [e for e in self._errors if e.flow_id == fid and (step_id is None or e.step_id == step_id)]

    async def get_error_timeline(
        self, flow_id: UUID | str, step_id: str | None = None, *, tx: Transaction | None = None
    ) -> builtins.list[StepExecutionError]:
        return timeline_order(await self.list_errors(flow_id, step_id, tx=tx))

    async def count_errors_by_flow(
        self, flow_id: UUID | str, *, tx: Transaction | None = None
    ) -> dict[str, dict[str, int]]:
        return count_by_step_and_class(await self.list_errors(flow_id, tx=tx))

    def __repr__(self) -> str:
        return f"<InMemoryEventStore flows={len(self._flows)} events={self._seq}>"


def _place(entry: tuple[int, int, UUID, int]) -> tuple[int, int]:
    """An ``_order`` entry's place in the global order: ``(commit group, seq)``."""
    return entry[0], entry[1]


def _has_mark(rows: list[EventRow], mark: FlowMark) -> bool:
    """Whether a flow's rows still hold the mark's last and first events (by version, id, seq)."""
    if not 1 <= mark.version <= len(rows) or rows[0][0] != mark.first_seq:
        return False
    seq, event_id, version = rows[mark.version - 1][:3]
    return version == mark.version and event_id == mark.event_id and seq == mark.seq


def _merge_records(
    batch: AppendBatch,
    recorder: FlowRecorder | None,
    events: list[FlowEvent],
    journal: MemoryTransaction | None,
) -> None:
    """Merge the records ``batch`` carries into ``recorder``, at the time its events were written."""
    if batch.records is not None and isinstance(recorder, InMemoryWorkflowRecords):
        recorder.merge_projection(at_append_time(batch.records, events[0].ts), journal)
