"""The in-memory and PostgreSQL workflow records driven in lockstep by a hypothesis state machine
(SPEC 9.1).

Every rule makes the same call on ``InMemoryWorkflowRecords`` and ``WorkflowRecords``: runs, stages,
logs and artifacts made, changed and deleted by hand with every argument class the records check
(statuses in any case or unknown, names empty or too long, NUL and lone surrogates, JSON edge values,
times naive, offset or at the calendar's ends, negative or overflowing numbers, ids malformed or
unknown), and every read. Beside them, engine flows run on each backend's event store with that
backend's records, so the projection of the log (SPEC 9.1's runs and stages of the engine's own
flows) meets hand edits of the same rows, and ``rebuild_records`` rebuilds them.

After each rule both backends returned equal results or raised the same exception, always one of
the package's own; a refused call changed nothing; and every run with its stages, logs and
artifacts reads back equal. Ids a backend mints are paired as they are returned (one id on one side
is always the same id on the other); ``created_at`` and ``updated_at`` are the backend's clock and
are not compared; a time the projection takes from an event is compared as "the time of event v of
flow f", since each backend stamps its own events.

One database for the whole run; every example starts with the records tables emptied and works on
flow ids of its own, so the tables' global reads (runs by status, suspended stages) compare whole.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import fields
from datetime import UTC, datetime, timedelta, timezone
from functools import partial
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, rule

from chem_persistence_async import (
    ChemPersistError,
    FlowDefinition,
    FlowEngine,
    FlowRepository,
    InMemoryBackend,
    InMemoryEventStore,
    InMemoryWorkflowRecords,
    InMemoryWorkQueue,
    PgEventStore,
    RetryPolicy,
    WorkflowRecords,
    WorkQueue,
    rebuild_records,
)
from chem_persistence_async.domain.ids import BIGINT_MAX, INT_MAX, MAX_NAME_LENGTH
from chem_persistence_async.domain.projection import stage_record_id
from chem_persistence_async.domain.records import (
    MAX_ARTIFACT_KEY_LENGTH,
    STAGE_UPDATE_FIELDS,
    duration_ms,
)
from chem_persistence_async.engine.engine import FLOW_JOB, SIGNAL_JOB
from chem_persistence_async.worker.flow_runner import FlowRunner, Holding
from tests.contracts.test_lockstep import (
    MEMORY,
    POSTGRES,
    DatabaseMachine,
    json_values,
    machine_settings,
    materialise,
    run_lockstep,
    typed,
)
from tests.contracts.test_lockstep import mostly as mostly_one_in
from tests.engine.flows import FailUntil, Produce
from tests.worker.signal_flows import Approve, Seed, Ship

FIXED_CLOCK = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
"""Both engines' clock: a retry's ``not_before`` (a stage's ``next_poll_at``) is the same on both."""

DEFINITIONS = (
    FlowDefinition(
        "lockstep-flaky", [Produce("first"), FailUntil("flaky", {"failures": 1, "kind": "transient"})]
    ),
    FlowDefinition(
        "lockstep-doomed", [Produce("first"), FailUntil("doomed", {"failures": 1, "kind": "permanent"})]
    ),
    FlowDefinition("lockstep-approval", [Seed(), Approve(), Ship()]),
)
"""A step that retries once, one that fails for good, one that suspends until it is sent a signal."""

# --- argument classes: mostly valid (so the rows exist for later rules to meet), else an edge ----


mostly = partial(mostly_one_in, one_in=16)
"""A records call has many arguments, each with its edges: one edge in sixteen leaves most calls
valid, so the rows they make are there for the rules after them."""

names = mostly(
    ["n", "Orders"], ["", "x" * MAX_NAME_LENGTH, "x" * (MAX_NAME_LENGTH + 1), "a\x00", "\ud800", 5]
)
workflow_ids = mostly(["wf"], ["w" * 500, "w" * 501, "", "a\x00", None])
statuses = mostly(
    ["PENDING", "running", "Suspended", "COMPLETED", "failed", "CANCELLED", "skipped"], ["bogus", "", 5, None]
)
times = mostly(
    [
        datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
        datetime(2030, 1, 2, 3, 4, 5, 678001, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        datetime(1999, 12, 31, tzinfo=UTC),
        None,
    ],
    [
        datetime(2030, 1, 2),  # naive
        datetime.max.replace(tzinfo=timezone(timedelta(hours=-14))),  # past 9999 in UTC
        datetime.min.replace(tzinfo=timezone(timedelta(hours=14))),  # before year 1 in UTC
        datetime.max.replace(tzinfo=UTC),  # the driver's infinity
        datetime.min.replace(tzinfo=UTC),
        (datetime.max - timedelta(microseconds=1)).replace(tzinfo=UTC),
        "2030-01-02T00:00:00+00:00",
    ],
)
ints = mostly(
    [0, 1, 7, None],
    [-1, INT_MAX, INT_MAX + 1, BIGINT_MAX, BIGINT_MAX + 1, -INT_MAX - 1, -INT_MAX - 2, True, 1.5],
)
costs = mostly([0, 1.25, 3], [0.0, 10**30, -0.5, float("nan"), float("inf"), True, "1", 1e308])
jsons = st.integers(0, 4).flatmap(
    lambda i: (
        st.dictionaries(st.sampled_from(["a", "b"]), st.integers(-5, 5) | st.text(max_size=3), max_size=2)
        if i
        else json_values.map(materialise)
    )
)
optional_jsons = st.none() | jsons
stage_ids = mostly(["first", "flaky", "s"], ["", "x" * (MAX_NAME_LENGTH + 1), "a\x00"])
keys = mostly(["k0", "k1"], ["", "k" * MAX_ARTIFACT_KEY_LENGTH, "k" * (MAX_ARTIFACT_KEY_LENGTH + 1), "a\x00"])
levels = mostly(["INFO", "warn", "Error", "DEBUG"], ["TRACE", 3])
artifact_types = mostly(["ARTIFACT", "stage_output", "METADATA"], ["blob", None])
messages = mostly(["m", "é" * 50], ["", "a\x00", "\ud800", None, 7])


def _difference(a: Any, b: Any) -> Any:
    """Where two views differ: the first differing item of two lists, the differing keys of two
    dicts (memory's value, PostgreSQL's), else both whole."""
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return next((i, _difference(x, y)) for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y)
    if isinstance(a, dict) and isinstance(b, dict):
        return {k: (a.get(k), b.get(k)) for k in a.keys() | b.keys() if a.get(k) != b.get(k)}
    return (a, b)


Ref = tuple[Any, Any]
"""The same record's id on each backend (memory's, PostgreSQL's); a malformed one is the same on both."""


class RecordsLockstep(DatabaseMachine):
    """The workflow records, with engine flows projected into them (``test_records_in_lockstep``)."""

    EMPTIED = ("workflow_logs", "workflow_runs", "work_queue", "work_queue_history")

    def __init__(self) -> None:
        super().__init__()
        self.records: tuple[Any, Any] = (InMemoryWorkflowRecords(), WorkflowRecords(self.db))
        self.stores: tuple[Any, Any] = (InMemoryEventStore(), PgEventStore(self.db))
        self.queues: tuple[Any, Any] = (InMemoryWorkQueue(), WorkQueue(self.db))
        policy = RetryPolicy(max_retries=3, initial_delay=0.0)
        self.engines = tuple(
            {
                d.name: FlowEngine(
                    store,
                    FlowRepository(),
                    d,
                    records=records,
                    retry_policy=policy,
                    clock=lambda: FIXED_CLOCK,
                    queue=queue,
                )
                for d in DEFINITIONS
            }
            for store, records, queue in zip(self.stores, self.records, self.queues, strict=True)
        )
        backends: tuple[Any, Any] = (InMemoryBackend(), self.db)
        self.runners = tuple(
            FlowRunner(
                backend, {e.definition_ref: e for e in engines.values()}, queue, lease=timedelta(minutes=5)
            )
            for backend, engines, queue in zip(backends, self.engines, self.queues, strict=True)
        )
        """What a worker runs for each job it claims, per backend (the ``work`` rule claims)."""
        self.pool = [uuid.uuid4() for _ in range(3)]
        """Ids the machine gives runs and flows (both backends get the same one)."""
        self.runs: list[Ref] = []
        """Runs made on both backends (by hand or by a flow's start), deleted or not."""
        self.stages: list[Ref] = []
        self.flows: dict[uuid.UUID, str] = {}
        """Flows started on both backends, by id, in the order they started (drawn by position: the
        ids are new each time hypothesis replays an example): their definition's name."""
        self._minted: uuid.UUID | None = None
        self.event_times: tuple[dict[datetime, dict[uuid.UUID, int]], ...] = ({}, {})
        """Per backend: each event time, with the flows that have it and the first version there."""

    # --- comparing ---------------------------------------------------------------------------

    def label(self, side: int, value: uuid.UUID | None) -> Any:
        if value is None or side == MEMORY:
            return value
        return self.paired.get(value, value)  # an id both sides share (given, or derived) is itself

    def when(self, side: int, value: datetime | None, run: Any) -> Any:
        """A time as itself, or as the append of ``run``'s flow it was taken from (the flow's
        first version at that time: an append's events share their time on both backends, and
        on PostgreSQL so do the appends one group commit writes)."""
        flows = self.event_times[side].get(value) if value is not None else None
        if not flows:
            return value
        if run in flows:
            return ("event", run, flows[run])
        return ("event", sorted(flows.items()))

    def view(self, side: int, record: Any) -> Any:
        """A record as comparable across backends: ids paired, the backend's own clock left out,
        times taken from events named by their event, a flow's duration computed from such times
        marked as derived, JSON values typed."""
        if record is None:
            return None
        out: dict[str, Any] = {"type": type(record).__name__}
        run_id = record.workflow_run_id if hasattr(record, "workflow_run_id") else record.id
        run = self.label(side, run_id)
        for f in fields(record):
            value = getattr(record, f.name)
            if f.name in ("created_at", "updated_at"):
                continue
            if isinstance(value, uuid.UUID) or (value is None and f.name.endswith("id")):
                out[f.name] = self.label(side, value)
            elif isinstance(value, datetime):
                out[f.name] = self.when(side, value, run)
            elif f.name == "key":  # a stage output's key holds its run's id
                run_id = record.workflow_run_id
                out[f.name] = value.replace(str(run_id), str(self.label(side, run_id)))
            else:
                out[f.name] = typed(value)
        if "duration" in out and run in self.flows:
            # A flow's row: its duration may come from times each backend stamped itself (its
            # events'), though a time was set by hand since; it is compared as such.
            started, completed = record.started_at, record.completed_at
            from_events = isinstance(out["started_at"], tuple) or isinstance(out["completed_at"], tuple)
            if from_events or record.duration != duration_ms(started, completed):
                out["duration"] = "derived" if record.duration is not None else None
        return out

    def _unkeyed_view(self, side: int, record: Any) -> Any:
        """A log or an artifact without its own id: ``create_log`` and ``save_stage_output`` do
        not return the record they make, so its minted id cannot be paired (an artifact is known
        by its run and key)."""
        return {k: v for k, v in self.view(side, record).items() if k != "id"}

    def views(self, side: int, records: Any) -> Any:
        return [self.view(side, r) for r in records]

    async def _state(self, side: int) -> Any:
        records = self.records[side]
        runs: list[Any] = []
        for ref in self.runs:
            rid = ref[side]
            if not isinstance(rid, uuid.UUID):
                continue
            run = await records.get_run(rid)
            if run is None:
                runs.append((self.label(side, rid), None))
                continue
            runs.append(
                (
                    self.view(side, run),
                    self.views(side, await records.get_stages_by_run(rid)),
                    [self._unkeyed_view(side, log) for log in await records.get_logs(rid)],
                    [self._unkeyed_view(side, a) for a in await records.list_artifacts(rid)],
                )
            )
        return runs, self.views(side, await records.list_runs(limit=1000))

    # --- drawing references --------------------------------------------------------------------

    def _run_ref(self, data: st.DataObject) -> Ref:
        unknown = (uuid.uuid4(),) * 2
        ref: Ref = data.draw(mostly(self.runs or [unknown], [unknown, ("not-a-uuid",) * 2]), label="run")
        if data.draw(st.booleans(), label="as text") and isinstance(ref[0], uuid.UUID):
            return (str(ref[0]), str(ref[1]))
        return ref

    def _stage_ref(self, data: st.DataObject) -> Ref:
        unknown = (uuid.uuid4(),) * 2
        ref: Ref = data.draw(mostly(self.stages or [unknown], [unknown, (5, 5)]), label="stage")
        return ref

    def _maybe_stage(self, data: st.DataObject) -> Ref:
        return data.draw(st.just((None, None)) | st.just(self._stage_ref(data)), label="stage or none")

    @staticmethod
    def _note(refs: list[Ref], results: list[Any]) -> None:
        """Keep the ids a successful create returned (paired by ``_paired_view``) for later rules."""
        if not isinstance(results[0], type) and (results[0].id, results[1].id) not in refs:
            refs.append((results[0].id, results[1].id))

    @staticmethod
    def _changes(data: st.DataObject, draws: dict[str, Any]) -> dict[str, Any]:
        """Up to three of the fields ``draws`` names, each with a value drawn by its strategy."""
        chosen = data.draw(st.lists(st.sampled_from(sorted(draws)), unique=True, max_size=3), label="fields")
        return {name: data.draw(draws[name], label=name) for name in chosen}

    # --- runs ------------------------------------------------------------------------------------

    @initialize(definition=st.sampled_from([d.name for d in DEFINITIONS]), stages=st.integers(0, 2))
    def first_rows(self, definition: str, stages: int) -> None:
        """A run by hand with ``stages`` stages, and a flow's run, for the rules to meet."""
        made = self.both(
            lambda s: self.records[s].create_run(
                workflow_id="wf", workflow_name="Orders", workflow_type="n", input={"a": 1}
            ),
            self._paired_view,
        )
        self._note(self.runs, made)
        for number in range(stages):
            stage = self.both(
                lambda s: self.records[s].create_stage(
                    workflow_run_id=made[s].id,
                    stage_id=("first", "s")[number],  # noqa: B023 - called at once
                    stage_name="S",
                    stage_number=number,  # noqa: B023
                    execution_group=0,
                ),
                self._paired_view,
            )
            self._note(self.stages, stage)
        fid = self.pool[0]
        self.both(lambda s: self.engines[s][definition].start(flow_id=fid))
        self.flows[fid] = definition
        self.runs.append((fid, fid))
        self._note_event_times()

    @rule(data=st.data())
    def create_run(self, data: st.DataObject) -> None:
        rid = data.draw(st.sampled_from([*self.pool, None, None, "not-a-uuid"]), label="id")
        args = dict(
            workflow_id=data.draw(workflow_ids, label="workflow_id"),
            workflow_name=data.draw(names, label="workflow_name"),
            workflow_type=data.draw(names, label="workflow_type"),
            input=data.draw(jsons, label="input"),
            config=data.draw(optional_jsons, label="config"),
            priority=data.draw(
                mostly([5, 0, 9], [-1, INT_MAX + 1, -INT_MAX - 2, True, 1.5]), label="priority"
            ),
        )
        self._note(
            self.runs,
            self.both(
                lambda s: self.records[s].create_run(id=rid, **args), self._paired_view, state=self._state
            ),
        )

    @rule(data=st.data())
    def update_run(self, data: st.DataObject) -> None:
        ref = self._run_ref(data)
        draws = {
            "status": statuses,
            "started_at": times,
            "completed_at": times,
            "duration": ints,
            "output": optional_jsons,
            "total_cost": costs,
            "total_tokens": ints,
        }
        changes = self._changes(data, draws)
        self.both(lambda s: self.records[s].update_run(ref[s], **changes), state=self._state)

    @rule(data=st.data(), what=st.sampled_from(["run", "stage"]), really=st.integers(0, 3))
    def delete(self, data: st.DataObject, what: str, really: int) -> None:
        """A run (with its stages, logs and artifacts) or a stage, one time in four: a row deleted
        is no longer there for the other rules to meet."""
        if really:
            return
        ref = self._run_ref(data) if what == "run" else self._stage_ref(data)
        self.both(lambda s: getattr(self.records[s], f"delete_{what}")(ref[s]), state=self._state)

    # --- stages ----------------------------------------------------------------------------------

    @rule(data=st.data(), upsert=st.booleans())
    def create_stage(self, data: st.DataObject, upsert: bool) -> None:
        ref = self._run_ref(data)
        args: dict[str, Any] = dict(
            stage_id=data.draw(stage_ids, label="stage_id"),
            stage_name=data.draw(names, label="stage_name"),
            stage_number=data.draw(mostly([0, 1, 2], [-1, INT_MAX + 1]), label="stage_number"),
            execution_group=data.draw(mostly([0, 1, 2], [-1, "1"]), label="execution_group"),
        )
        for name, values in (
            ("status", statuses),
            ("started_at", times),
            ("config", jsons),
            ("input_data", jsons),
        ):
            if data.draw(st.booleans(), label=f"{name} given"):
                args[name] = data.draw(values, label=name)

        async def call(s: int) -> Any:
            method = self.records[s].upsert_stage if upsert else self.records[s].create_stage
            return await method(workflow_run_id=ref[s], **args)

        self._note(self.stages, self.both(call, self._paired_view, state=self._state))

    @rule(data=st.data(), by_key=st.booleans())
    def update_stage(self, data: st.DataObject, by_key: bool) -> None:
        draws: dict[str, Any] = {
            "status": statuses,
            "started_at": times,
            "completed_at": times,
            "duration": ints,
            "next_poll_at": times,
            "max_wait_until": times,
            "poll_interval": ints,
            "error_message": messages,
            "bogus": st.just(1),
        }
        for name in STAGE_UPDATE_FIELDS:
            draws.setdefault(name, optional_jsons)
        changes = self._changes(data, draws)
        if by_key:
            ref, stage_id = self._run_ref(data), data.draw(stage_ids, label="stage_id")
            self.both(
                lambda s: self.records[s].update_stage_by_run_and_stage_id(ref[s], stage_id, **changes),
                state=self._state,
            )
        else:
            stage = self._stage_ref(data)
            self.both(lambda s: self.records[s].update_stage(stage[s], **changes), state=self._state)

    # --- logs and artifacts ----------------------------------------------------------------------

    @rule(data=st.data())
    def create_log(self, data: st.DataObject) -> None:
        run = data.draw(st.just((None, None)) | st.just(self._run_ref(data)), label="run or none")
        stage = self._maybe_stage(data)
        level, message = data.draw(levels, label="level"), data.draw(messages, label="message")
        metadata = data.draw(optional_jsons, label="metadata")
        self.both(
            lambda s: self.records[s].create_log(
                level=level,
                message=message,
                workflow_run_id=run[s],
                workflow_stage_id=stage[s],
                metadata=metadata,
            ),
            state=self._state,
        )

    @rule(data=st.data())
    def save_artifact(self, data: st.DataObject) -> None:
        run, stage = self._run_ref(data), self._maybe_stage(data)
        key, kind = data.draw(keys, label="key"), data.draw(artifact_types, label="type")
        payload, metadata = data.draw(jsons, label="data"), data.draw(optional_jsons, label="metadata")
        self.both(
            lambda s: self.records[s].save_artifact(
                run[s], key, kind, payload, workflow_stage_id=stage[s], metadata=metadata
            ),
            self._paired_view,
            state=self._state,
        )

    def _paired_view(self, side: int, record: Any) -> Any:
        """The view of a record whose id the call may have minted: memory's side runs first, and
        PostgreSQL's id is paired with its id before its view is made."""
        if side == MEMORY:
            self._minted = record.id
        else:
            minted, self._minted = self._minted, None
            if minted is not None:  # (None: memory refused what PostgreSQL took; ``both`` says so)
                self.pair(minted, record.id)
        return self.view(side, record)

    @rule(data=st.data())
    def artifact_by_key(self, data: st.DataObject) -> None:
        run, key = self._run_ref(data), data.draw(keys, label="key")
        call = data.draw(st.sampled_from(["load_artifact", "has_artifact", "delete_artifact"]), label="call")
        self.both(
            lambda s: getattr(self.records[s], call)(run[s], key),
            state=self._state if call == "delete_artifact" else None,
        )

    @rule(data=st.data())
    def save_stage_output(self, data: st.DataObject) -> None:
        run = self._run_ref(data)
        kind, stage_id = data.draw(names, label="workflow_type"), data.draw(stage_ids, label="stage_id")
        output = data.draw(jsons, label="output")

        def key_view(side: int, key: str) -> str:  # the key holds the run's id
            return key.replace(str(run[side]), str(run[MEMORY]))

        self.both(
            lambda s: self.records[s].save_stage_output(run[s], kind, stage_id, output),
            key_view,
            state=self._state,
        )

    # --- units of work -------------------------------------------------------------------------

    @rule(data=st.data(), commit=st.booleans())
    def unit_of_work(self, data: st.DataObject, commit: bool) -> None:
        """One to three writes in one unit of work (``tx=``), some of them refused, then committed or
        rolled back: what each returned, and what is stored after, are the same on both backends
        (the in-memory journal undoes exactly what the database's rollback does)."""
        ops: list[tuple[str, Any]] = []
        for _ in range(data.draw(st.integers(1, 3), label="writes")):
            op = data.draw(
                st.sampled_from(["create_run", "update_run", "create_stage", "create_log", "save_artifact"])
            )
            if op == "create_run":
                args: Any = dict(
                    id=data.draw(st.sampled_from([*self.pool, uuid.uuid4()]), label="id"),
                    workflow_id="wf",
                    workflow_name=data.draw(names, label="workflow_name"),
                    workflow_type="n",
                    input=data.draw(jsons, label="input"),
                )
            elif op == "update_run":
                args = (
                    self._run_ref(data),
                    {"status": data.draw(statuses), "output": data.draw(optional_jsons)},
                )
            elif op == "create_stage":  # (numbered by position: the stages of one unit of work share
                # their created_at, and a tie in number too would leave their order to their ids,
                # which each backend mints at random)
                args = (self._run_ref(data), data.draw(stage_ids, label="stage_id"), len(ops))
            elif op == "create_log":
                args = (self._run_ref(data), data.draw(levels, label="level"))
            else:
                args = (self._run_ref(data), data.draw(keys, label="key"), data.draw(jsons, label="data"))
            ops.append((op, args))
        minted: dict[int, uuid.UUID] = {}
        """The ids memory's side minted, by the write's position."""

        async def write(s: int, op: str, args: Any, tx: Any) -> Any:
            records = self.records[s]
            if op == "create_run":
                return await records.create_run(**args, tx=tx)
            if op == "update_run":
                return await records.update_run(args[0][s], **args[1], tx=tx)
            if op == "create_stage":
                return await records.create_stage(
                    workflow_run_id=args[0][s],
                    stage_id=args[1],
                    stage_name="S",
                    stage_number=10 + args[2],
                    execution_group=0,
                    tx=tx,
                )
            if op == "create_log":
                return await records.create_log(level=args[1], message="m", workflow_run_id=args[0][s], tx=tx)
            return await records.save_artifact(args[0][s], args[1], "ARTIFACT", args[2], tx=tx)

        class RolledBack(Exception):
            pass

        async def unit(s: int) -> Any:
            outcomes: list[Any] = []
            try:
                async with self.records[s].transaction() as tx:
                    for index, (op, args) in enumerate(ops):
                        try:
                            result = await write(s, op, args, tx)
                        except ChemPersistError as exc:
                            outcomes.append(("error", type(exc)))
                            continue
                        if hasattr(result, "id"):  # a record: its minted id paired by position
                            if s == MEMORY:
                                minted[index] = result.id
                            else:
                                self.pair(minted[index], result.id)
                                if op == "create_stage":  # (a stage rolled back is a ref to nothing)
                                    self.stages.append((minted[index], result.id))
                            result = self.view(s, result)
                        outcomes.append(typed(result) if result is None else result)
                    if not commit:
                        raise RolledBack
            except RolledBack:
                outcomes.append("rolled back")
            return outcomes

        self.both(unit, lambda side, outcomes: outcomes)
        for op, args in ops:
            if op == "create_run" and (args["id"], args["id"]) not in self.runs:
                self.runs.append((args["id"], args["id"]))

    # --- reads -----------------------------------------------------------------------------------

    @rule(data=st.data())
    def read(self, data: st.DataObject) -> None:
        run = self._run_ref(data)
        what = data.draw(
            st.sampled_from(
                [
                    "get_run",
                    "get_run_status",
                    "get_runs_by_status",
                    "list_runs",
                    "get_stage",
                    "get_stage_by_id",
                    "get_stages_by_run",
                    "get_suspended_stages",
                    "get_first_suspended_stage_ready_to_resume",
                    "get_first_failed_stage",
                    "get_last_completed_stage",
                    "get_last_completed_stage_before",
                    "get_logs",
                    "list_artifacts",
                    "get_stage_id_for_artifact",
                ]
            ),
            label="read",
        )
        status = data.draw(statuses, label="status")
        limit = data.draw(st.sampled_from([None, 1, 2, 0, -1, "2"]), label="limit")
        stage_id, group = data.draw(stage_ids, label="stage_id"), data.draw(st.sampled_from([0, 1, 2, -1]))
        before = data.draw(times, label="before")
        stage = self._stage_ref(data)
        kind = data.draw(st.sampled_from([None, "Orders", "n"]), label="workflow_type")
        in_group = data.draw(st.sampled_from([None, 0, 1, "1"]), label="execution_group")
        calls: dict[str, Callable[[Any, int], Coroutine[Any, Any, Any]]] = {
            "get_run": lambda r, s: r.get_run(run[s]),
            "get_run_status": lambda r, s: r.get_run_status(run[s]),
            "get_runs_by_status": lambda r, s: r.get_runs_by_status(status, limit=limit),
            "list_runs": lambda r, s: r.list_runs(status=status, workflow_type=kind, limit=limit or 100),
            "get_stage": lambda r, s: r.get_stage(run[s], stage_id),
            "get_stage_by_id": lambda r, s: r.get_stage_by_id(stage[s]),
            "get_stages_by_run": lambda r, s: r.get_stages_by_run(
                run[s], status=status, execution_group=in_group
            ),
            "get_suspended_stages": lambda r, s: r.get_suspended_stages(before),
            "get_first_suspended_stage_ready_to_resume": lambda r, s: (
                r.get_first_suspended_stage_ready_to_resume(run[s])
            ),
            "get_first_failed_stage": lambda r, s: r.get_first_failed_stage(run[s]),
            "get_last_completed_stage": lambda r, s: r.get_last_completed_stage(run[s]),
            "get_last_completed_stage_before": lambda r, s: r.get_last_completed_stage_before(run[s], group),
            "get_logs": lambda r, s: r.get_logs(run[s], limit=limit if limit is not None else 1000),
            "list_artifacts": lambda r, s: r.list_artifacts(run[s]),
            "get_stage_id_for_artifact": lambda r, s: r.get_stage_id_for_artifact(run[s], stage_id),
        }

        def result_view(side: int, result: Any) -> Any:
            if what in ("get_logs", "list_artifacts") and isinstance(result, list):
                return [self._unkeyed_view(side, log) for log in result]
            if isinstance(result, list):
                return self.views(side, result)
            if isinstance(result, uuid.UUID):
                return self.label(side, result)
            if result is None or hasattr(result, "__dataclass_fields__"):
                return self.view(side, result)
            return typed(result)

        self.both(lambda s: calls[what](self.records[s], s), result_view)

    # --- engine flows: the projection meets the hand edits ------------------------------------

    @rule(data=st.data())
    def start_flow(self, data: st.DataObject) -> None:
        fid = data.draw(st.sampled_from([*self.pool, uuid.uuid4(), uuid.uuid4()]), label="flow")
        name = data.draw(st.sampled_from([d.name for d in DEFINITIONS]), label="definition")
        inputs = data.draw(st.none() | st.dictionaries(st.sampled_from(["a", "b"]), jsons, max_size=2))
        results = self.both(
            lambda s: self.engines[s][name].start(flow_id=fid, inputs=inputs), state=self._state
        )
        if not isinstance(results[0], type):
            self.flows.setdefault(fid, name)
            if (fid, fid) not in self.runs:
                self.runs.append((fid, fid))
        self._note_event_times()

    @rule(data=st.data())
    def run_next(self, data: st.DataObject) -> None:
        """One flow's next step, by its engine or another definition's; or, at once, every flow's
        next step by its own engine (PostgreSQL's group commit writes them in one statement)."""
        if not self.flows:
            return
        if data.draw(st.booleans(), label="every flow at once"):
            calls = [(fid, name) for fid, name in self.flows.items()]
        else:
            fid = data.draw(st.sampled_from(list(self.flows)), label="flow")
            calls = [(fid, self._engine_for(data, fid))]

        async def step(s: int, fid: uuid.UUID, name: str) -> Any:
            try:
                instance = await self.engines[s][name].run_next(fid)
            except ChemPersistError as exc:  # (each flow is judged on its own)
                return ("error", type(exc))
            return (instance.version, instance.completed, instance.cursor)

        async def steps(s: int) -> Any:
            return await asyncio.gather(*(step(s, fid, name) for fid, name in calls))

        self.both(steps, lambda side, results: [typed(r) if r[0] != "error" else r for r in results])
        self._note_event_times()
        self._note_projected_stages([fid for fid, _ in calls])

    def _note_projected_stages(self, flows: list[uuid.UUID]) -> None:
        """The flows' projected stages, for later rules: their ids are derived, the same on both."""
        for fid in flows:
            for stage in self.run(self.records[MEMORY].get_stages_by_run(fid)):
                if (
                    stage.id == stage_record_id(fid, stage.stage_id)
                    and (stage.id, stage.id) not in self.stages
                ):
                    self.stages.append((stage.id, stage.id))

    @rule(data=st.data())
    def submit_flow(self, data: st.DataObject) -> None:
        """A flow started for the workers: its first event and its job in one commit (carried by
        PostgreSQL's append statement with the records)."""
        fid = data.draw(st.sampled_from([*self.pool, uuid.uuid4()]), label="flow")
        name = data.draw(st.sampled_from([d.name for d in DEFINITIONS]), label="definition")
        self.both(lambda s: self.engines[s][name].submit(flow_id=fid, inputs={"order": 7}), state=self._state)
        if self.run(self.stores[MEMORY].list(fid)):
            self.flows.setdefault(fid, name)
            if (fid, fid) not in self.runs:
                self.runs.append((fid, fid))
        self._note_event_times()

    @rule(limit=st.integers(1, 3))
    def work(self, limit: int) -> None:
        """What a worker does: claim up to ``limit`` jobs (flows, signals) and run each as far as
        it goes now (its step outcome, next move and job end commit together, records with them)."""

        async def claim_and_run(s: int) -> Any:
            jobs = await self.queues[s].claim("w", limit=limit, kinds=(FLOW_JOB, SIGNAL_JOB))
            outcomes = []
            for job in jobs:
                holding = Holding(job)
                try:
                    if job.kind == SIGNAL_JOB:
                        ended = await self.runners[s].deliver_signal(holding)
                    else:
                        ended = await self.runners[s].run(holding, lambda _: {})
                except ChemPersistError as exc:
                    ended = type(exc).__name__
                outcomes.append((str(job.flow_id), job.kind, job.attempt, ended))
            return sorted(outcomes)

        self.both(claim_and_run)
        self._note_event_times()
        self._note_projected_stages(list(self.flows))

    def _engine_for(self, data: st.DataObject, fid: uuid.UUID) -> str:
        """The flow's own engine most often, else any (another definition's refuses the flow)."""
        own = self.flows[fid]
        return str(
            data.draw(st.sampled_from([own, own, own, *(d.name for d in DEFINITIONS)]), label="engine")
        )

    @rule(data=st.data())
    def send_signal(self, data: st.DataObject) -> None:
        """An ``approve`` signal to a flow (delivered by its next ``run_next``), by a send id that
        may repeat (delivered once), through the flow's engine or another definition's."""
        if not self.flows:
            return
        fid = data.draw(st.sampled_from(list(self.flows)), label="flow")
        name = self._engine_for(data, fid)
        send_id = data.draw(st.sampled_from(["s1", "s2"]), label="send_id")
        payload = data.draw(jsons, label="data")
        self.both(lambda s: self.engines[s][name].signal(fid, "approve", payload, send_id=send_id))

    @rule(data=st.data())
    def rebuild(self, data: st.DataObject) -> None:
        if not self.flows:
            return
        chosen = data.draw(
            st.lists(st.sampled_from(list(self.flows)), min_size=1, unique=True), label="flows"
        )

        async def rebuilt(s: int) -> Any:
            report = await rebuild_records(
                self.stores[s], self.records[s], definitions=DEFINITIONS, flow_ids=chosen
            )
            skipped, unknown = sorted(report.skipped.items()), sorted(report.unknown_definitions)
            return (report.flows, report.rebuilt, report.newer, skipped, unknown)

        self.both(rebuilt)

    def _note_event_times(self) -> None:
        """Each backend's event times of every flow, as (flow, version): what the projection's
        times are compared by."""
        for side in (MEMORY, POSTGRES):
            times_of = self.event_times[side]
            for fid in self.flows:
                for event in self.run(self.stores[side].list(fid)):
                    first = times_of.setdefault(event.ts, {}).setdefault(fid, event.flow_version)
                    times_of[event.ts][fid] = min(first, event.flow_version)

    # --- the stored state reads back equal -------------------------------------------------------

    @invariant()
    def records_read_back_equal(self) -> None:
        """Every run the machine knows, with its stages, logs and artifacts, and the list of runs."""
        memory, postgres = self.run(self._state(MEMORY)), self.run(self._state(POSTGRES))
        for one, other in zip(memory[0], postgres[0], strict=True):
            for part, (a, b) in enumerate(zip(one, other, strict=True)):
                assert a == b, (("run", "stages", "logs", "artifacts")[part], _difference(a, b))
        assert memory[1] == postgres[1]


def test_records_in_lockstep(db_url: str) -> None:
    run_lockstep(RecordsLockstep, db_url, machine_settings(12))


@pytest.mark.slow
def test_records_in_lockstep_for_longer(db_url: str) -> None:
    run_lockstep(RecordsLockstep, db_url, machine_settings(12, longer=True))
