"""``rebuild_records``: recompute the runs and stages of engine flows from the event log.

The records are a projection of the log (``domain.projection``); this replays every flow (or the
ones named) with its definition and replaces its run and stage rows with the projection of all
its events, flow by flow, each in its own unit of work that reads the events and writes the rows.
A flow appended to meanwhile is left alone when its records already reflect a later version, so a
rebuild can run while workers run. Definitions come from the caller and from the definition
registry (a registered definition is rebuilt from its record: enough to replay, never to run).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol
from uuid import UUID

from chem_persistence_async.domain.events import FlowEvent, FlowInitialized
from chem_persistence_async.domain.flow import FlowDefinition, FlowInstance
from chem_persistence_async.domain.ids import to_flow_id
from chem_persistence_async.domain.projection import definition_from_record
from chem_persistence_async.errors import DefinitionError, ReplayError
from chem_persistence_async.ports.definitions import DefinitionRegistryPort
from chem_persistence_async.ports.event_store import AsyncEventStore
from chem_persistence_async.ports.records import FlowLister, WorkflowRecordsPort
from chem_persistence_async.ports.unit_of_work import Transaction
from chem_persistence_async.replay import replay

logger = logging.getLogger("chem_persistence_async.records")

_PAGE = 500


class ListingEventStore(AsyncEventStore, FlowLister, Protocol):
    """An event store that can also list its flows (both built-in stores can)."""


@dataclass
class RebuildReport:
    """What a rebuild did. ``skipped`` counts flows left as they were, by reason."""

    flows: int = 0
    rebuilt: int = 0
    newer: int = 0
    """Flows whose records already reflected a later version (appended to during the rebuild)."""
    skipped: dict[str, int] = field(default_factory=dict)
    unknown_definitions: set[str] = field(default_factory=set)
    """``name@hash`` of definitions neither given nor registered."""

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


async def known_definitions(
    definitions: Iterable[FlowDefinition] = (), registry: DefinitionRegistryPort | None = None
) -> dict[tuple[str, str], FlowDefinition]:
    """Definitions by (name, hash): those given, then the registry's (rebuilt from their records)."""
    known = {(d.name, d.hash): d for d in definitions}
    if registry is not None:
        for record in await registry.list():
            if (record.name, record.hash) in known:
                continue
            try:
                known[(record.name, record.hash)] = definition_from_record(record)
            except DefinitionError as exc:
                logger.warning("registered definition %s@%s is unusable: %s", record.name, record.hash, exc)
    return known


async def rebuild_records(
    store: ListingEventStore,
    records: WorkflowRecordsPort,
    *,
    definitions: Iterable[FlowDefinition] = (),
    registry: DefinitionRegistryPort | None = None,
    flow_ids: Iterable[UUID | str] | None = None,
    progress: Callable[[RebuildReport], None] | None = None,
    progress_every: int = 1000,
) -> RebuildReport:
    """Replace every flow's run and stage records (or those of ``flow_ids``) with the projection
    of its whole event log; returns what was done. Calls ``progress`` every ``progress_every``
    flows and at the end."""
    known = await known_definitions(definitions, registry)
    report = RebuildReport()
    async for fid in _flows(store, flow_ids):
        report.flows += 1

        async def one(tx: Transaction, fid: UUID = fid) -> str:
            events = (await store.read_flow(fid, tx=tx)).events
            return await _project(records, known, report, fid, events, tx)

        outcome = await store.run_in_transaction(one)
        if outcome == "rebuilt":
            report.rebuilt += 1
        elif outcome == "newer":
            report.newer += 1
        else:
            report.skip(outcome)
        if progress is not None and report.flows % progress_every == 0:
            progress(report)
    if progress is not None:
        progress(report)
    return report


async def _project(
    records: WorkflowRecordsPort,
    known: dict[tuple[str, str], FlowDefinition],
    report: RebuildReport,
    fid: UUID,
    events: Sequence[FlowEvent],
    tx: Transaction,
) -> str:
    """Replace one flow's records with the projection of ``events`` (its whole log); what came of
    it: ``rebuilt``, ``newer`` (the records reflect a later version), or why it was skipped."""
    replayed = _replayed(known, report, fid, events)
    if isinstance(replayed, str):
        return replayed
    written = await records.rebuild_flow(*replayed, tx=tx)
    return "rebuilt" if written else "newer"


def _replayed(
    known: dict[tuple[str, str], FlowDefinition],
    report: RebuildReport,
    fid: UUID,
    events: Sequence[FlowEvent],
) -> tuple[FlowInstance, FlowDefinition, Sequence[FlowEvent]] | str:
    """The flow replayed with its definition, ready to project, or why it cannot be."""
    if not events:
        return "no events"
    init = events[0].kind
    if not isinstance(init, FlowInitialized):
        return "no flowinitialized"
    definition = known.get((init.definition_name, init.definition_hash))
    if definition is None:
        report.unknown_definitions.add(f"{init.definition_name}@{init.definition_hash}")
        return "unknown definition"
    try:
        return replay(fid, events, definition), definition, events
    except ReplayError as exc:
        logger.warning("flow %s does not replay: %s", fid, exc)
        return "does not replay"


class RecordsFollower:
    """A subscription handler (``Subscriptions(backend).run(name, follower)``) that keeps the
    records of engine flows caught up with the event log, instead of the appends writing them.

    For each batch it takes the flows the batch's events belong to (a flow whose batch events are
    not its whole log so far is read whole, all such flows in one statement) and replaces their
    records with the projection of their logs (``rebuild_flows``: on PostgreSQL one
    statement for the batch, which leaves a run that already equals its projection as it is), in
    the batch's unit of work, so the records move with the subscription's checkpoint: exactly once
    per batch, caught up a poll behind the appends rather than in their transaction. A flow
    appended to several times between two batches is written once. Flows of a definition neither
    given nor registered are left as they are (``unknown_definitions`` names them; ``records
    rebuild`` with the definition brings them up to date); the registry is read again (once) when a
    flow names a definition not seen yet.
    """

    def __init__(
        self,
        store: AsyncEventStore,
        records: WorkflowRecordsPort,
        *,
        definitions: Iterable[FlowDefinition] = (),
        registry: DefinitionRegistryPort | None = None,
    ) -> None:
        self._store = store
        self._records = records
        self._given = list(definitions)
        self._registry = registry
        self._known: dict[tuple[str, str], FlowDefinition] | None = None
        self._looked_for: set[tuple[str, str]] = set()
        """Definitions the registry was read again for (once each: it did not have them then)."""
        self.report = RebuildReport()
        """What the follower has done since it was made: a flow counts once per batch its events
        are in (``rebuilt``: written, or found equal to its projection; ``newer``: left at a later
        version)."""

    async def __call__(self, events: Sequence[FlowEvent], tx: Transaction) -> None:
        by_flow: dict[UUID, list[FlowEvent]] = {}
        for event in events:
            by_flow.setdefault(event.flow_id, []).append(event)
        logs = {fid: flow for fid, flow in by_flow.items() if _whole_so_far(flow)}
        missing = [fid for fid in by_flow if fid not in logs]
        if missing:
            read = await self._store.read_flows(missing, tx=tx)
            logs.update((fid, record.events) for fid, record in read.items())
        known = await self._definitions(logs.values())
        replayed = []
        for fid in by_flow:
            self.report.flows += 1
            one = _replayed(known, self.report, fid, logs[fid])
            if isinstance(one, str):
                self.report.skip(one)
            else:
                replayed.append(one)
        written = await self._records.rebuild_flows(replayed, tx=tx)
        self.report.rebuilt += sum(written)
        self.report.newer += len(written) - sum(written)

    async def _definitions(
        self, logs: Iterable[Sequence[FlowEvent]]
    ) -> dict[tuple[str, str], FlowDefinition]:
        """The definitions known, read again from the registry when a flow names one not seen."""
        if self._known is None:
            self._known = await known_definitions(self._given, self._registry)
        if self._registry is not None:
            for log in logs:
                init = log[0].kind if log else None
                if not isinstance(init, FlowInitialized):
                    continue
                ref = (init.definition_name, init.definition_hash)
                if ref not in self._known and ref not in self._looked_for:
                    self._looked_for.add(ref)
                    self._known = await known_definitions(self._given, self._registry)
        return self._known


def _whole_so_far(events: list[FlowEvent]) -> bool:
    """Whether a batch's events of one flow are all of its log up to the last of them (versions 1,
    2, ... n, sorted in place): then the batch itself is what a projection needs, and the flow is
    not read again. (A flow's events come in version order but for a unit of work that took its
    commit group before the previous version's: the sort covers that.)"""
    events.sort(key=_version)
    return all(event.flow_version == n for n, event in enumerate(events, start=1))


def _version(event: FlowEvent) -> int:
    return event.flow_version


async def _flows(store: ListingEventStore, flow_ids: Iterable[UUID | str] | None) -> AsyncIterator[UUID]:
    if flow_ids is not None:
        for fid in flow_ids:
            yield to_flow_id(fid)
        return
    after: UUID | None = None
    while True:
        page = await store.flow_ids(after=after, limit=_PAGE)
        for fid in page:
            yield fid
        if len(page) < _PAGE:
            return
        after = page[-1]
