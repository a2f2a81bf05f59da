"""The half of an event store that does not depend on the backend: the public append methods.

Every backend validates and encodes through ``prepare_append`` here, then hands one ``AppendBatch``
to its own ``_write``; so what is refused, and how, cannot differ between them.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Sequence
from dataclasses import replace
from uuid import UUID

from chem_persistence_async.codec.prepare import AppendBatch, StoreLimits, prepare_append
from chem_persistence_async.domain.artifacts import Artifact
from chem_persistence_async.domain.events import FlowEvent, FlowEventKind
from chem_persistence_async.domain.jobs import JobWrite
from chem_persistence_async.domain.projection import FlowProjection
from chem_persistence_async.errors import InvalidInputError
from chem_persistence_async.ports.records import FlowRecorder
from chem_persistence_async.ports.unit_of_work import Transaction
from chem_persistence_async.ports.work_queue import WorkQueuePort


class EventStoreBase:
    _limits: StoreLimits

    async def append_kind(
        self,
        flow_id: UUID | str,
        kind: FlowEventKind,
        *,
        artifacts: Iterable[Artifact] = (),
        expected_version: int | None = None,
        event_id: UUID | None = None,
        tx: Transaction | None = None,
    ) -> FlowEvent:
        """Append one event (with the artifacts its ``StepFinished`` lists) in one transaction."""
        batch = prepare_append(
            flow_id,
            [kind],
            artifacts=artifacts,
            expected_version=expected_version,
            event_ids=None if event_id is None else [event_id],
            limits=self._limits,
        )
        return (await self._write(batch, tx))[0]

    async def append_many(
        self,
        flow_id: UUID | str,
        kinds: Sequence[FlowEventKind],
        *,
        artifacts: Iterable[Artifact] = (),
        expected_version: int | None = None,
        event_ids: Sequence[UUID] | None = None,
        tx: Transaction | None = None,
    ) -> builtins.list[FlowEvent]:
        """Append several events to one flow, all or none, with consecutive versions."""
        batch = self._prepare(flow_id, kinds, artifacts, expected_version, event_ids)
        if not batch.events:
            return []
        return await self._write(batch, tx)

    def _prepare(
        self,
        flow_id: UUID | str,
        kinds: Sequence[FlowEventKind],
        artifacts: Iterable[Artifact],
        expected_version: int | None,
        event_ids: Sequence[UUID] | None,
    ) -> AppendBatch:
        return prepare_append(
            flow_id,
            kinds,
            artifacts=artifacts,
            expected_version=expected_version,
            event_ids=event_ids,
            limits=self._limits,
        )

    async def append_recorded(
        self,
        flow_id: UUID,
        kinds: Sequence[FlowEventKind],
        records: FlowProjection,
        *,
        recorder: FlowRecorder,
        expected_version: int,
        artifacts: Iterable[Artifact] = (),
        event_ids: Sequence[UUID] | None = None,
        tx: Transaction | None = None,
    ) -> builtins.list[FlowEvent]:
        """``append_many`` that writes ``records`` with the events (``RecordingEventStore``); the
        backend's ``_write`` writes them only if it writes the events. ``recorder`` must be one
        this store ``carries``."""
        if not self.carries(recorder):
            raise InvalidInputError(f"{self!r} cannot write the records of {recorder!r} in its appends")
        batch = self._prepare(flow_id, kinds, artifacts, expected_version, event_ids)
        if not batch.events:
            return []
        if batch.expected_version is None or records.run.run_id != batch.flow_id:
            raise InvalidInputError("recorded appends need the expected version and the flow's own records")
        return await self._write_recorded(replace(batch, records=records), recorder, tx)

    async def append_with_job(
        self,
        flow_id: UUID,
        kinds: Sequence[FlowEventKind],
        job: JobWrite,
        *,
        queue: WorkQueuePort,
        expected_version: int,
        records: FlowProjection | None = None,
        recorder: FlowRecorder | None = None,
        artifacts: Iterable[Artifact] = (),
    ) -> builtins.list[FlowEvent]:
        """``append_many`` with ``job`` (and ``records``) in the same commit
        (``QueueCarryingEventStore``). ``queue`` must be one this store ``carries_queue``, and
        ``recorder``, with ``records``, one it ``carries``."""
        if not self.carries_queue(queue):
            raise InvalidInputError(f"{self!r} cannot write the jobs of {queue!r} in its appends")
        if records is not None and (recorder is None or not self.carries(recorder)):
            raise InvalidInputError(f"{self!r} cannot write the records of {recorder!r} in its appends")
        if not isinstance(job, JobWrite):
            raise InvalidInputError(f"expected a JobWrite, got {type(job).__name__}")
        batch = self._prepare(flow_id, kinds, artifacts, expected_version, None)
        if not batch.events:
            raise InvalidInputError("an append with a job write needs at least one event")
        if batch.expected_version is None or (records is not None and records.run.run_id != batch.flow_id):
            raise InvalidInputError(
                "appends with a job write need the expected version and the flow's own records"
            )
        return await self._write_with_job(replace(batch, records=records, job=job), recorder, queue)

    def carries(self, recorder: FlowRecorder) -> bool:
        return False

    def carries_queue(self, queue: WorkQueuePort) -> bool:
        return False

    async def _write_with_job(
        self, batch: AppendBatch, recorder: FlowRecorder | None, queue: WorkQueuePort
    ) -> builtins.list[FlowEvent]:
        """Write ``batch`` with ``batch.job`` (and ``batch.records``), both or neither."""
        raise NotImplementedError

    async def _write_recorded(
        self, batch: AppendBatch, recorder: FlowRecorder, tx: Transaction | None
    ) -> builtins.list[FlowEvent]:
        """Write ``batch`` and, if it wrote the events, ``batch.records`` into ``recorder``."""
        raise NotImplementedError

    async def _write(self, batch: AppendBatch, tx: Transaction | None) -> builtins.list[FlowEvent]:
        raise NotImplementedError
