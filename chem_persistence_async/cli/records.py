"""``flows``, ``flow`` and ``records rebuild``: the workflow records (SPEC 9.1) from the shell."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from chem_persistence_async.backends.postgres.database import Database
from chem_persistence_async.cli.output import progress, table
from chem_persistence_async.cli.workers import load_definitions, stopped_by_signals
from chem_persistence_async.domain.ids import to_flow_id
from chem_persistence_async.domain.records import Status, WorkflowRunRecord, check_status
from chem_persistence_async.engine.records import RebuildReport, RecordsFollower, rebuild_records
from chem_persistence_async.errors import RunNotFoundError
from chem_persistence_async.worker.subscriptions import Subscriptions

Command = Callable[[str, str, str], argparse.ArgumentParser]

STATUSES = ", ".join(status.value for status in Status)

FOLLOWER = "workflow-records"
"""The subscription ``records follow`` runs by default."""


def add_commands(command: Command) -> None:
    """Add ``flows``, ``flow`` and ``records`` to the parser through main's ``command``."""
    flows_parser = command(
        "flows",
        "list workflow runs as a table, newest first",
        "List the workflow runs (a run per flow the engine or a worker ran with records, and runs "
        "made through WorkflowRecords), newest first: id, type, status, times and duration.",
    )
    flows_parser.add_argument(
        "--status", default=None, metavar="S", help=f"only runs in this status ({STATUSES}; any case)"
    )
    flows_parser.add_argument("--type", default=None, metavar="T", help="only runs of this workflow type")
    flows_parser.add_argument(
        "--limit", type=int, default=50, metavar="N", help="at most N runs (default 50)"
    )
    flows_parser.set_defaults(handler=flows)

    flow_parser = command(
        "flow",
        "show one run with its stages, logs and artifacts",
        "Show a workflow run (for an engine flow, its id is the flow id): its status and times, "
        "then its stages in order with attempts and the last error, its logs and its artifacts.",
    )
    flow_parser.add_argument("flow_id", metavar="FLOW_ID", help="the run's id (a flow id, a UUID)")
    flow_parser.set_defaults(handler=flow)

    records_parser = command(
        "records",
        "maintain the workflow records (records rebuild, records follow)",
        "Maintain the workflow records. 'records rebuild' recomputes every engine flow's run and "
        "stages from the event log; 'records follow' keeps them current from it as a subscription.",
    )
    actions = records_parser.add_subparsers(dest="records_command", required=True, metavar="ACTION")
    rebuild = actions.add_parser(
        "rebuild",
        help="recompute the runs and stages of every flow from the event log",
        description="Replay every flow in the event log with its definition and replace its run "
        "and stage records with what the log says (logs and artifacts are kept). Definitions come "
        "from the definition registry (every worker registers its own) and from MODULE:ATTR "
        "arguments. Flows appended to meanwhile are left as the newer records have them. Exits 1 "
        "if some flows could not be rebuilt (an unknown definition: pass it as MODULE:ATTR).",
    )
    rebuild.add_argument(
        "targets",
        nargs="*",
        metavar="MODULE:ATTR",
        help="definitions to use besides the registered ones (a FlowDefinition, an iterable of "
        "them, or a callable returning either)",
    )
    rebuild.add_argument("--url", default=argparse.SUPPRESS, help="PostgreSQL URL (as before the command)")
    rebuild.set_defaults(handler=rebuild_command)

    follow = actions.add_parser(
        "follow",
        help="keep the records current from the event log, as a subscription",
        description="Keep every engine flow's run and stages current by following the event log "
        "(a RecordsFollower subscription), for workers that keep none in their appends "
        "(worker --no-records). It starts where the subscription NAME stopped (the start of the "
        "log, the first time), then follows until SIGTERM or Ctrl-C; with --once it exits when "
        "caught up. Definitions as for 'records rebuild'.",
    )
    follow.add_argument(
        "targets", nargs="*", metavar="MODULE:ATTR", help="definitions besides the registered"
    )
    follow.add_argument("--name", default=FOLLOWER, help=f"the subscription's name (default {FOLLOWER})")
    follow.add_argument(
        "--poll", type=float, default=0.5, metavar="S", help="seconds between looks once caught up (0.5)"
    )
    follow.add_argument("--batch", type=int, default=1000, metavar="N", help="events per batch (1000)")
    follow.add_argument("--once", action="store_true", help="catch up, then exit")
    follow.add_argument("--url", default=argparse.SUPPRESS, help="PostgreSQL URL (as before the command)")
    follow.set_defaults(handler=follow_command)


def _time(value: datetime | None) -> str:
    return "-" if value is None else value.isoformat(timespec="seconds")


def _duration(ms: int | None) -> str:
    return "-" if ms is None else f"{ms / 1000:.3f}s"


def _run_rows(runs: list[WorkflowRunRecord]) -> list[tuple[Any, ...]]:
    return [
        (
            str(run.id),
            run.workflow_type,
            run.status.value,
            _time(run.created_at),
            _time(run.started_at),
            _duration(run.duration),
        )
        for run in runs
    ]


async def flows(args: argparse.Namespace) -> int:
    status = None if args.status is None else check_status(args.status, "--status")
    async with Database.connect(args.url) as db:
        runs = await db.workflow_records().list_runs(status=status, workflow_type=args.type, limit=args.limit)
        if not runs:
            what = " ".join(
                part
                for part in (
                    None if status is None else status.value,
                    None if args.type is None else f"of type {args.type!r}",
                )
                if part
            )
            print(f"{db.describe()}: no runs{' ' + what if what else ''}")
            return 0
        print(table(("run", "type", "status", "created", "started", "duration"), _run_rows(runs)))
        waiting = [run for run in runs if run.status is Status.SUSPENDED]
        if waiting:
            rows = []
            for run in waiting:
                for stage in await db.workflow_records().get_stages_by_run(run.id, status=Status.SUSPENDED):
                    rows.append((run.id, stage.stage_id, _waits_for(stage), _time(stage.next_poll_at)))
            print()
            print(table(("suspended run", "stage", "waits for signal", "until"), rows))
    return 0


def _waits_for(stage: Any) -> str:
    """The signal a suspended stage waits for (``-``: only its time)."""
    metrics = stage.metrics if isinstance(stage.metrics, dict) else {}
    return str(metrics.get("waiting_for") or "-")


async def flow(args: argparse.Namespace) -> int:
    run_id = to_flow_id(args.flow_id)
    async with Database.connect(args.url) as db:
        records = db.workflow_records()
        run = await records.get_run(run_id)
        if run is None:
            has_events = await db.event_store().flow_version(run_id) > 0
            hint = (
                ": the flow has events but no records (run 'chem-persist records rebuild')"
                if has_events
                else ""
            )
            raise RunNotFoundError(f"no workflow run {run_id}{hint}")
        print(f"run:       {run.id}")
        print(f"workflow:  {run.workflow_name} ({run.workflow_id})")
        print(f"status:    {run.status.value}")
        print(f"created:   {_time(run.created_at)}")
        print(f"started:   {_time(run.started_at)}")
        print(f"completed: {_time(run.completed_at)}")
        print(f"duration:  {_duration(run.duration)}")
        print(f"input:     {json.dumps(run.input, sort_keys=True)[:200]}")
        if run.output is not None:
            print(f"output:    {json.dumps(run.output, sort_keys=True)[:200]}")
        stages = await records.get_stages_by_run(run_id)
        print()
        if stages:
            print(
                table(
                    ("#", "stage", "status", "attempts", "started", "duration", "waits for", "last error"),
                    [
                        (
                            s.stage_number,
                            s.stage_id,
                            s.status.value,
                            (s.metrics or {}).get("attempts", "-") if isinstance(s.metrics, dict) else "-",
                            _time(s.started_at),
                            _duration(s.duration),
                            (
                                f"{_waits_for(s)} until {_time(s.next_poll_at)}"
                                if s.status is Status.SUSPENDED
                                else ""
                            ),
                            (s.error_message or "").splitlines()[0][:60] if s.error_message else "",
                        )
                        for s in stages
                    ],
                )
            )
        else:
            print("no stages")
        logs = await records.get_logs(run_id)
        if logs:
            print()
            print(
                table(
                    ("time", "level", "message"),
                    [(_time(log.created_at), log.level.value, log.message[:100]) for log in logs],
                )
            )
        artifacts = await records.list_artifacts(run_id)
        if artifacts:
            print()
            print(table(("artifact", "type", "bytes"), [(a.key, a.type.value, a.size) for a in artifacts]))
    return 0


async def rebuild_command(args: argparse.Namespace) -> int:
    definitions = [d for target in args.targets for d in load_definitions(target)]
    async with Database.connect(args.url) as db:
        progress(f"rebuilding the records of {db.describe()} from its event log…")

        def report_progress(report: RebuildReport) -> None:
            progress(f"  {report.flows} flows read, {report.rebuilt} rebuilt")

        report = await rebuild_records(
            db.event_store(),
            db.workflow_records(),
            definitions=definitions,
            registry=db.definition_registry(),
            progress=report_progress,
        )
    print(f"rebuilt the records of {report.rebuilt} of {report.flows} flow(s)")
    if report.newer:
        print(f"{report.newer} flow(s) moved on during the rebuild: their newer records were kept")
    return _skipped(report, "flow(s)")


async def follow_command(args: argparse.Namespace) -> int:
    definitions = [d for target in args.targets for d in load_definitions(target)]
    async with Database.connect(args.url) as db:
        follower = RecordsFollower(
            db.event_store(),
            db.workflow_records(),
            definitions=definitions,
            registry=db.definition_registry(),
        )
        subscriptions = Subscriptions(db, poll_interval=args.poll)
        if args.once:
            handled = await subscriptions.catch_up(args.name, follower, batch_size=args.batch)
        else:
            stop = asyncio.Event()
            progress(
                f"following {db.describe()} as {args.name!r} from {await subscriptions.position(args.name)}; "
                "SIGTERM or Ctrl-C stops it"
            )
            with stopped_by_signals(stop.set):
                await subscriptions.run(args.name, follower, batch_size=args.batch, stop=stop)
            handled = None
        position = await subscriptions.position(args.name)
    report = follower.report
    done = "stopped" if handled is None else f"caught up: {handled} event(s) read"
    current = f"{report.rebuilt} flow projection(s) written or found current"
    print(f"{done}; {current}; {args.name!r} is at {position}")
    return _skipped(report, "flow projection(s)")


def _skipped(report: RebuildReport, what: str) -> int:
    """Print what was skipped and why, and the definitions to pass; the exit status (1: some)."""
    for reason, count in sorted(report.skipped.items()):
        print(f"skipped {count} {what}: {reason}")
    for ref in sorted(report.unknown_definitions):
        print(f"unknown definition: {ref} (pass it as MODULE:ATTR)")
    return 1 if report.skipped else 0
