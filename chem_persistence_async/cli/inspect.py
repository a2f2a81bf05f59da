"""``timeline`` and ``replay``: look at one flow."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from chem_persistence_async.backends.postgres.database import Database
from chem_persistence_async.backends.postgres.event_store import PgEventStore
from chem_persistence_async.cli.output import table
from chem_persistence_async.domain.events import FlowEvent, FlowInitialized, StepFailed, StepFinished
from chem_persistence_async.domain.flow import FlowDefinition, FlowInstance
from chem_persistence_async.domain.ids import to_flow_id
from chem_persistence_async.engine.demo import demo_definition
from chem_persistence_async.errors import DefinitionMismatchError, FlowNotFoundError
from chem_persistence_async.replay import replay


async def _require_flow(store: PgEventStore, flow_id: UUID) -> None:
    if await store.flow_version(flow_id) == 0:
        raise FlowNotFoundError(f"flow {flow_id} does not exist in this database (it has no events)")


async def timeline(args: argparse.Namespace) -> int:
    flow_id = to_flow_id(args.flow_id)
    async with Database.connect(args.url) as db:
        store = PgEventStore(db)
        await _require_flow(store, flow_id)
        errors = await store.get_error_timeline(flow_id, args.step)
        if not errors:
            if args.step is not None:
                events = await store.list(flow_id)
                ran = {str(step) for e in events if (step := getattr(e.kind, "step_id", None))}
                if args.step not in ran:
                    names = ", ".join(sorted(ran)) or "none yet"
                    raise FlowNotFoundError(
                        f"flow {flow_id} has run no step {args.step!r} (steps it ran: {names})"
                    )
            scope = f" of step {args.step!r}" if args.step is not None else ""
            print(f"flow {flow_id}: no failed attempts{scope}")
            return 0
        rows = [
            (
                e.ts.isoformat(timespec="milliseconds"),
                e.step_id,
                e.attempt_number,
                e.error_class.value,
                f"{e.retry_count}/{e.max_retries}",
                (e.error_message or "").splitlines()[0][:60] if e.error_message else "",
            )
            for e in errors
        ]
        print(f"flow {flow_id}: {len(errors)} failed attempt(s)")
        print(table(("time", "step", "attempt", "class", "retries", "message"), rows))
        counts = await store.count_errors_by_flow(flow_id)
        print()
        print(
            table(
                ("step", "class", "count"), [(s, c, n) for s, per in counts.items() for c, n in per.items()]
            )
        )
    return 0


async def replay_flow(args: argparse.Namespace) -> int:
    flow_id = to_flow_id(args.flow_id)
    async with Database.connect(args.url) as db:
        store = PgEventStore(db)
        events = await store.list(flow_id)
        if not events:
            raise FlowNotFoundError(f"flow {flow_id} does not exist in this database (it has no events)")
        print(
            table(
                ("seq", "version", "time", "code", "event"),
                [
                    (e.seq, e.flow_version, e.ts.isoformat(timespec="milliseconds"), e.code, e.event_type)
                    for e in events
                ],
            )
        )
        if args.demo:
            definition = demo_definition(count=args.count)
            try:
                instance = replay(flow_id, events, definition)
            except DefinitionMismatchError:
                raise DefinitionMismatchError(
                    await _demo_mismatch(store, flow_id, events, args.count, definition)
                ) from None
            print()
            print(json.dumps(_instance_summary(instance), indent=2))
    return 0


async def _demo_mismatch(
    store: PgEventStore, flow_id: UUID, events: Sequence[FlowEvent], count: int, definition: FlowDefinition
) -> str:
    """Say how the flow's definition differs from the demo's with ``--count count``, and what to pass."""
    init = events[0].kind
    if not isinstance(init, FlowInitialized):
        return f"flow {flow_id} does not begin with FlowInitialized: its events are not a flow's"
    if init.definition_name != definition.name:
        return (
            f"flow {flow_id} was started with definition {init.definition_name!r} "
            f"({init.step_count} steps), not the demo: replay it without --demo"
        )
    for start, candidate in await _demo_params_seen(store, events):
        if demo_definition(start=start, count=candidate).hash == init.definition_hash:
            if start != 1:
                return f"flow {flow_id} was started with the demo for start={start}, count={candidate}"
            return (
                f"flow {flow_id} was started with the demo for --count {candidate}, not --count {count}: "
                f"run 'chem-persist replay {flow_id} --demo --count {candidate}'"
            )
    return (
        f"flow {flow_id} was started with another demo definition (hash {init.definition_hash[:12]}…; "
        f"--count {count} gives {definition.hash[:12]}…): pass the --count the demo ran with"
    )


async def _demo_params_seen(store: PgEventStore, events: Sequence[FlowEvent]) -> list[tuple[int, int]]:
    """The demo's seed parameters as the flow recorded them: in a failure's details, or in the
    numbers the seed step produced."""
    seen: list[tuple[int, int]] = []
    for event in events:
        kind = event.kind
        if isinstance(kind, StepFailed) and kind.step_id == "seed" and kind.error.details:
            params = kind.error.details.get("params")
            if isinstance(params, dict):
                start, count = params.get("start"), params.get("count")
                if isinstance(start, int) and isinstance(count, int):
                    seen.append((start, count))
        if isinstance(kind, StepFinished) and kind.step_id == "seed" and kind.outputs:
            for artifact in (await store.get_artifacts(kind.outputs)).values():
                payload = artifact.payload
                values = payload.get("values") if isinstance(payload, dict) else None
                if isinstance(values, list) and all(isinstance(v, int) for v in values):
                    first = values[0] if values else 1
                    seen.append((int(first), len(values)))  # type: ignore[arg-type]
    return seen


def _instance_summary(instance: FlowInstance) -> dict[str, Any]:
    return {
        "flow_id": str(instance.flow_id),
        "completed": instance.completed,
        "failed": instance.failed,
        "cursor": instance.cursor,
        "version": instance.version,
        "fingerprint": instance.fingerprint,
        "steps": [
            {
                "step_id": s.step_id,
                "status": s.status.value,
                "attempts": s.attempts,
                "retry_count": s.retry_count,
                "errors": len(s.errors),
                "outputs": len(s.outputs),
            }
            for s in instance.steps
        ],
    }
