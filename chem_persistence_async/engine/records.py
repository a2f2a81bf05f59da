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
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol
from uuid import UUID

from chem_persistence_async.domain.events import FlowInitialized
from chem_persistence_async.domain.flow import FlowDefinition
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
                instance = replay(fid, events, definition)
            except ReplayError as exc:
                logger.warning("flow %s does not replay: %s", fid, exc)
                return "does not replay"
            written = await records.rebuild_flow(instance, definition, events, tx=tx)
            return "rebuilt" if written else "newer"

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
