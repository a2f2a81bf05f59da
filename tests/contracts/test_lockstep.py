"""The in-memory and PostgreSQL stores driven in lockstep by a hypothesis state machine (SPEC 3, 6, 11).

Every rule makes the same call, with the same arguments, on ``InMemoryEventStore`` and on
``PgEventStore``: appends with ``expected_version`` right, wrong, ``None`` or out of range, with fresh
or reused event ids, with artifacts listed, unlisted, forged or already stored, kinds holding JSON
edge values (the classes of ``test_jsonb_parity``, unstorable ones included), out-of-range integers,
NUL and lone surrogates; and every read. After each rule both stores returned equal results (events
compared by kind, flow version, event id and the order of their ``seq``: the values differ between
backends) or raised the same exception, always one of the package's own; a refused call wrote
nothing; and the whole stored state of every flow reads back equal.

Appends that carry a job write (``append_with_job``: a flow's job enqueued with its events, a
claimed job completed or suspended with them, or a stale lease) run the same way against
``InMemoryWorkQueue`` and ``WorkQueue``, and the jobs of every flow (state, attempt) read back equal.

One database for the whole run; each example works on fresh flow ids, artifacts salted with its own
id and a queue of its own, so examples never see each other's rows. Events of different flows are not compared by their
``seq`` order: concurrent appends (one rule makes them, for PostgreSQL's group commit) commit in an
order no caller chooses.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import os
import struct
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from enum import Enum
from typing import Any, ClassVar, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test
from pydantic import BaseModel

from chem_persistence_async import (
    Artifact,
    ChemPersistError,
    Database,
    ErrorClass,
    FlowCompleted,
    FlowEvent,
    FlowInitialized,
    InMemoryEventStore,
    InMemoryWorkQueue,
    Job,
    JobSpec,
    PgEventStore,
    PropertyPreferenceAssigned,
    RetryScheduled,
    StepErrorInfo,
    StepExecutionError,
    StepFailed,
    StepFinished,
    StepSignal,
    StepStarted,
    WorkQueue,
)
from chem_persistence_async.domain.canonical import MAX_INT_DIGITS, MAX_JSON_DEPTH
from chem_persistence_async.domain.ids import INT_MAX, MAX_BATCH_SIZE
from chem_persistence_async.domain.jobs import JobWrite

T = TypeVar("T")
H = "a" * 64
STEPS = ("s0", "s1")

# --- JSON edge values: every class of tests/contracts/test_jsonb_parity.py, storable or not -----------


def _deep(levels: int) -> Any:
    value: Any = []
    for i in range(levels - 1):
        value = [value] if i % 2 else {"k": value}
    return value


EDGE_TEXT = [
    "",
    "é",
    "😀\U0010ffff",
    '\n"\\/',
    "\x1f\x7f\u2028",
    "e\u0301",
    "a\x00b",
    "\x00",
    "\ud800",
    "x\udfffy",
]
EDGE_NUMBERS: list[Any] = [
    0,
    -1,
    2**31 - 1,
    2**31,
    2**63,
    -(2**63) - 1,
    10**30,
    "§long",
    "§too long",
    -0.0,
    0.0,
    0.1,
    100000.0,
    9999999999999998.0,
    1e16,
    -1e16,
    1e23,
    -1.2345e22,
    1.7976931348623157e308,
    1e-7,
    5e-324,
    -5e-324,
    math.nan,
    math.inf,
    -math.inf,
    True,
    False,
    None,
]
edge_text = st.sampled_from(EDGE_TEXT) | st.text(st.characters(exclude_categories=()), max_size=4)
json_scalars = (
    st.sampled_from(EDGE_NUMBERS)
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | edge_text
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(edge_text, children, max_size=3),
    max_leaves=6,
) | st.sampled_from([_deep(MAX_JSON_DEPTH), _deep(MAX_JSON_DEPTH + 1), {"x": [{"y": -0.0}]}])
json_objects = st.dictionaries(edge_text, json_values, max_size=3)

LONG = {"§long": -int("9" * MAX_INT_DIGITS), "§too long": 10**MAX_INT_DIGITS}
"""Integers too long for ``repr`` (which hypothesis needs for what it draws): drawn as these markers
and put in place by ``materialise`` when a kind or an artifact is built."""


def materialise(value: Any) -> Any:
    if isinstance(value, str):
        return LONG.get(value, value)
    if isinstance(value, dict):
        return {key: materialise(item) for key, item in value.items()}
    if isinstance(value, list):
        return [materialise(item) for item in value]
    return value


kind_step_ids = st.sampled_from([*STEPS, "a\x00"])  # pydantic itself refuses "" and lone surrogates
step_ids = kind_step_ids | st.sampled_from(["\ud800", ""])
ints = st.integers(min_value=0, max_value=3) | st.sampled_from([INT_MAX, INT_MAX + 1, 2**63, -1])


# --- comparing what the two backends give -----------------------------------------------------------


def typed(value: Any) -> Any:
    """``value`` with each scalar tagged by its type (floats by their bits): ``1 == 1.0 == True``
    and ``-0.0 == 0.0`` in Python, not in JSON."""
    if isinstance(value, BaseModel):
        return (type(value).__name__, typed(value.model_dump()))
    if isinstance(value, Enum):
        return ("enum", value.value)
    if isinstance(value, bool) or value is None:
        return ("const", value)
    if isinstance(value, int):
        return ("int", hex(value))  # ``hex`` has no digit limit
    if isinstance(value, float):
        return ("float", struct.pack(">d", value))
    if isinstance(value, str | uuid.UUID | datetime):
        return (type(value).__name__, value)
    if isinstance(value, dict):
        return ("dict", sorted((typed(k), typed(v)) for k, v in value.items()))
    assert isinstance(value, list | tuple), type(value)
    return ("list", [typed(item) for item in value])


def events_view(events: list[FlowEvent], supplied: set[uuid.UUID]) -> Any:
    """Kind, flow, version and id of each event, and the order of their ``seq`` (not its values).
    An event id the store made itself differs between the stores: only the caller's are compared."""
    order = sorted(range(len(events)), key=lambda i: events[i].seq)
    assert len({e.seq for e in events}) == len(events)
    return (
        [
            (e.flow_id, e.flow_version, e.event_id if e.event_id in supplied else "minted", typed(e.kind))
            for e in events
        ],
        order,
    )


def errors_view(errors: list[StepExecutionError], version_of: dict[int, int]) -> Any:
    """Error rows without their times; ``event_seq`` as the version of the event it belongs to."""
    return [
        (
            e.flow_id,
            e.step_id,
            e.attempt_number,
            e.error_class,
            e.error_message,
            typed(e.details),
            e.retry_count,
            e.max_retries,
            version_of.get(e.event_seq, "missing") if e.event_seq is not None else None,
        )
        for e in errors
    ]


def artifacts_view(found: dict[str, Artifact]) -> Any:
    return sorted((h, a.hash, a.kind, typed(a.payload), typed(a.metadata)) for h, a in found.items())


MEMORY, POSTGRES = 0, 1
"""The two sides of a ``DatabaseMachine``, as its rules index them."""


def as_is(side: int, result: Any) -> Any:
    """A ``DatabaseMachine.both`` view that compares the results themselves (by ``==``)."""
    return result


class DatabaseMachine(RuleBasedStateMachine):
    """A state machine that drives an in-memory backend and PostgreSQL in lockstep on one database
    for its whole run: ``run_lockstep`` sets ``loop`` and ``db`` on a subclass. Each example starts
    with the tables in ``EMPTIED`` emptied (those the machine reads whole, such as a queue's jobs)."""

    loop: ClassVar[asyncio.AbstractEventLoop]
    db: ClassVar[Database]
    EMPTIED: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        super().__init__()
        if self.EMPTIED:
            self.run(self._empty())
        self.paired: dict[Any, Any] = {}
        """PostgreSQL's minted id -> memory's, for every id a call minted on both sides."""

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    async def _empty(self) -> None:
        async with self.db.acquire() as conn:
            await conn.execute("; ".join(f"DELETE FROM {table}" for table in self.EMPTIED))

    def pair(self, memory: Any, postgres: Any) -> None:
        """Note that ``postgres`` is ``memory``'s id on the other side: each id pairs with one id."""
        known = self.paired.get(postgres)
        assert known in (None, memory), ("paired twice", postgres, known, memory)
        if known is None:
            assert memory == postgres or memory not in self.paired.values(), ("paired twice", memory)
            self.paired[postgres] = memory

    def both(
        self,
        call: Callable[[int], Any],
        view: Callable[[int, Any], Any] | None = None,
        *,
        state: Callable[[int], Coroutine[Any, Any, Any]] | None = None,
    ) -> list[Any]:
        """Make ``call(side)`` on memory's side, then PostgreSQL's (awaited if it gives an
        awaitable); assert equal views of the results (``view(side, result)``, else ``typed``) or
        the same typed error: any other exception is a bug. With ``state``, a refused call must
        leave ``state(side)`` as it was. Returns each side's result, or its exception's type."""
        outcomes, results = [], []
        for side in (MEMORY, POSTGRES):
            before = self.run(state(side)) if state is not None else None
            try:
                result = call(side)
                if inspect.isawaitable(result):
                    result = self.run(result)  # type: ignore[arg-type]
                outcome: Any = ("ok", typed(result) if view is None else view(side, result))
            except ChemPersistError as exc:
                result, outcome = type(exc), ("error", type(exc))
            except Exception as exc:
                side_name = ("memory", "postgres")[side]
                raise AssertionError(f"{side_name} raised {exc!r}, not a ChemPersistError") from exc
            if state is not None and outcome[0] == "error":  # a refused call changes nothing
                assert self.run(state(side)) == before, (side, outcome)
            outcomes.append(outcome)
            results.append(result)
        assert outcomes[0] == outcomes[1], outcomes
        return results


class Lockstep(DatabaseMachine):
    """The event stores (and, for appends that carry a job write, the work queues)."""

    def __init__(self) -> None:
        super().__init__()
        self.memory = InMemoryEventStore()
        self.postgres = PgEventStore(self.db)
        self.flows = [uuid.uuid4() for _ in range(3)]
        self.salt = uuid.uuid4().hex[:12]
        self.supplied: set[uuid.UUID] = set()  # every event id the machine passed
        self.used_ids: list[uuid.UUID] = []  # the ones both stores stored
        self.artifacts: list[Artifact] = [self._artifact({"n": i}) for i in range(2)]
        self.queues = {id(self.memory): InMemoryWorkQueue(), id(self.postgres): WorkQueue(self.db)}
        self.queue_name = f"q-{self.salt}"
        self.held: dict[int, dict[uuid.UUID, Job]] = {id(self.memory): {}, id(self.postgres): {}}
        """Per store: the flow jobs its queue's claims hold, by flow."""

    @initialize(
        store_artifacts=st.sampled_from([True, True, True, False]),
        max_payload_bytes=st.sampled_from([None, None, None, 600]),
    )
    def options(self, store_artifacts: bool, max_payload_bytes: int | None) -> None:
        """The stores' options, the same on both (``no-artifact-insert``, a small payload limit)."""
        self.memory = InMemoryEventStore(store_artifacts=store_artifacts, max_payload_bytes=max_payload_bytes)
        self.postgres = PgEventStore(
            self.db, store_artifacts=store_artifacts, max_payload_bytes=max_payload_bytes
        )
        self.queues = {id(self.memory): InMemoryWorkQueue(), id(self.postgres): WorkQueue(self.db)}
        self.held = {id(self.memory): {}, id(self.postgres): {}}

    # --- running one call on both stores ---------------------------------------------------------

    def _artifact(self, payload: Any, metadata: Any = None) -> Artifact:
        return Artifact.of(f"k-{self.salt}", payload, metadata)

    async def _written(self, store: Any) -> Any:
        if store is self.memory:
            return (store._seq, len(store._artifacts), len(store._errors))
        async with self.db.acquire() as conn:
            return tuple(
                await conn.fetchrow(
                    "SELECT (SELECT count(*) FROM event_log), (SELECT count(*) FROM workflow_step_artifacts),"
                    " (SELECT count(*) FROM step_execution_errors)"
                )
            )

    def both(  # type: ignore[override]
        self,
        call: Callable[[Any], Awaitable[Any]],
        view: Callable[[Any], Any] = lambda r: r,
        *,
        writes: bool = False,
    ) -> Any:
        """``DatabaseMachine.both`` with ``call(store)`` and ``view(result)`` (with nothing written,
        when ``call`` writes). Returns the view, or the exception type."""
        stores = (self.memory, self.postgres)
        views: list[Any] = []

        def seen(side: int, result: Any) -> Any:
            views.append(view(result))
            return views[-1]

        results = super().both(
            lambda side: call(stores[side]),
            seen,
            state=(lambda side: self._written(stores[side])) if writes else None,
        )
        return results[0] if isinstance(results[0], type) else views[0]

    def _version(self, flow: Any) -> int:
        return self.run(self.memory.flow_version(flow)) if isinstance(flow, uuid.UUID) else 0

    # --- drawing arguments -----------------------------------------------------------------------

    def _flow(self, data: st.DataObject) -> Any:
        return data.draw(st.sampled_from([*self.flows, *self.flows, *self.flows, "not-a-uuid"]), label="flow")

    def _expected(self, data: st.DataObject, flow: Any, count: int) -> Any:
        current = self._version(flow)
        return data.draw(
            st.sampled_from(
                ["none"] * 3 + ["right"] * 4 + ["behind", "ahead", "out of range", "bad"]
            ).flatmap(
                lambda mode: {
                    "none": st.none(),
                    "right": st.just(current),
                    "behind": st.just(max(current - 1, 0)),
                    "ahead": st.integers(current + 1, current + 3),
                    "out of range": st.sampled_from([INT_MAX, INT_MAX - count + 1, INT_MAX + 1, 2**63]),
                    "bad": st.sampled_from([-1, True, "1", 1.0]),
                }[mode]
            ),
            label="expected_version",
        )

    def _event_ids(self, data: st.DataObject, count: int) -> list[uuid.UUID] | None:
        mode = data.draw(st.sampled_from(["none", "fresh", "reuse"]), label="event ids")
        if mode == "none" or (mode == "reuse" and not self.used_ids):
            return None
        if mode == "fresh":
            return [uuid.uuid4() for _ in range(count)]
        reused = data.draw(st.lists(st.sampled_from(self.used_ids), min_size=1, max_size=count, unique=True))
        fresh = [uuid.uuid4() for _ in range(count - len(reused))]
        return data.draw(st.permutations(reused + fresh))

    def _kind(self, data: st.DataObject) -> Any:
        variant = data.draw(
            st.sampled_from(
                ["I", "S", "F", "F", "X", "X", "G", "G", "P", "R", "C", "out of range", "not a kind", "nul"]
            ),
            label="variant",
        )
        step_index, step_id = data.draw(st.integers(0, 1)), data.draw(kind_step_ids)
        if variant == "I":
            return FlowInitialized(
                definition_name="d", definition_hash=H, step_count=data.draw(st.integers(0, 3))
            )
        if variant == "S":
            return StepStarted(step_index=step_index, step_id=step_id, attempt=data.draw(st.integers(1, 3)))
        if variant == "F":
            outputs = data.draw(st.lists(st.sampled_from([a.hash for a in self.artifacts]), max_size=2))
            return StepFinished(step_index=step_index, step_id=step_id, outputs=tuple(outputs), fingerprint=H)
        if variant == "X":
            details = materialise(data.draw(st.none() | json_objects, label="details"))
            error = StepErrorInfo(
                error_class=data.draw(st.sampled_from(list(ErrorClass))),
                message=data.draw(st.sampled_from(["boom", "a\x00", ""])),
                details=details,
            )
            return StepFailed(
                step_index=step_index,
                step_id=step_id,
                attempt=data.draw(st.integers(1, 3)),
                error=error,
                retry_count=data.draw(st.integers(0, 3)),
                max_retries=3,
                fingerprint=H,
            )
        if variant == "G":
            return StepSignal(
                step_index=step_index,
                step_id=step_id,
                signal="sig",
                data=data.draw(json_values, label="data"),
            )
        if variant == "P":
            return PropertyPreferenceAssigned(property_key="k", policy_id="p", params_hash=H, rationale=None)
        if variant == "R":
            return RetryScheduled(
                step_index=step_index,
                step_id=step_id,
                retry_index=1,
                reason="r",
                not_before=datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=UTC),
            )
        if variant == "C":
            return FlowCompleted(flow_fingerprint=H)
        if variant == "out of range":  # only ``model_construct`` gets past the models' own bounds
            field = data.draw(st.sampled_from(["attempt", "retry_count", "max_retries", "step_index"]))
            value = data.draw(ints)
            base = dict(step_index=0, step_id="s0", attempt=1, retry_count=0, max_retries=3, fingerprint=H)
            error = StepErrorInfo(error_class=ErrorClass.RUNTIME, message="m")
            return StepFailed.model_construct(**{**base, "error": error, field: value})
        if variant == "nul":
            return StepStarted.model_construct(step_index=0, step_id="s\x00", attempt=1)
        return data.draw(st.sampled_from([None, {"event_type": "stepstarted"}, "stepstarted"]))

    def _artifacts(self, data: st.DataObject, kinds: list[Any]) -> list[Any]:
        listed = [h for k in kinds if isinstance(k, StepFinished) for h in k.outputs]
        chosen: list[Any] = [a for a in self.artifacts if a.hash in listed and data.draw(st.booleans())]
        extra = data.draw(
            st.lists(
                st.sampled_from(["unlisted", "forged", "raw", "unstorable", "not an artifact"]), max_size=1
            ),
            label="extra artifacts",
        )
        for what in extra:
            if what == "unlisted":
                chosen.append(self._artifact({"unlisted": self.salt}))
            elif what == "forged" and listed:
                chosen.append(Artifact(hash=listed[0], kind=f"k-{self.salt}", payload={"forged": True}))
            elif what == "raw" and listed:  # the hash of the raw value: the store normalises the payload
                for artifact in self.artifacts:
                    if artifact.hash == listed[0]:
                        chosen.append(artifact.model_copy(update={"metadata": {"m": -0.0}}))
            elif what == "unstorable":
                chosen.append(Artifact(hash="0" * 64, kind="k", payload=materialise(data.draw(json_values))))
            elif what == "not an artifact":
                chosen.append({"hash": H})
        return chosen

    # --- rules: writes ---------------------------------------------------------------------------

    @rule(data=st.data())
    def new_artifact(self, data: st.DataObject) -> None:
        """A new artifact for the pool, its payload an edge value (it may not be storable)."""
        payload = materialise(data.draw(json_values, label="payload"))
        metadata = materialise(data.draw(st.none() | json_values, label="metadata"))
        try:
            artifact = self._artifact({"v": payload, "salt": self.salt, "i": len(self.artifacts)}, metadata)
        except ChemPersistError:
            return  # refused by Artifact.of itself: nothing to store
        self.artifacts.append(artifact)

    @rule(data=st.data())
    def append_kind(self, data: st.DataObject) -> None:
        flow, kind = self._flow(data), self._kind(data)
        expected = self._expected(data, flow, 1)
        event_ids = self._event_ids(data, 1)
        self.supplied.update(event_ids or ())
        artifacts = self._artifacts(data, [kind])
        result = self.both(
            lambda s: s.append_kind(
                flow,
                kind,
                artifacts=artifacts,
                expected_version=expected,
                event_id=None if event_ids is None else event_ids[0],
            ),
            lambda event: self.events_view([event]),
            writes=True,
        )
        self._note_ids(result, event_ids)

    @rule(data=st.data())
    def append_many(self, data: st.DataObject) -> None:
        flow = self._flow(data)
        kinds = [self._kind(data) for _ in range(data.draw(st.integers(0, 4), label="count"))]
        expected = self._expected(data, flow, len(kinds))
        event_ids = self._event_ids(data, len(kinds)) if kinds else None
        self.supplied.update(event_ids or ())
        artifacts = self._artifacts(data, kinds)
        result = self.both(
            lambda s: s.append_many(
                flow, kinds, artifacts=artifacts, expected_version=expected, event_ids=event_ids
            ),
            self.events_view,
            writes=True,
        )
        self._note_ids(result, event_ids)

    @rule(data=st.data())
    def concurrent_appends(self, data: st.DataObject) -> None:
        """One append per flow at once: PostgreSQL's group commit writes them in one statement."""
        calls = []
        for flow in self.flows:
            kinds = [self._kind(data) for _ in range(data.draw(st.integers(1, 2)))]
            expected = self._expected(data, flow, len(kinds))
            # Every listed artifact passed, as the pool holds it: what one call stores must not decide
            # another's fate, since the order of concurrent commits is nobody's to choose.
            listed = {h for k in kinds if isinstance(k, StepFinished) for h in k.outputs}
            calls.append((flow, kinds, expected, [a for a in self.artifacts if a.hash in listed]))

        async def each(store: Any, flow: uuid.UUID, kinds: list[Any], expected: Any, arts: list[Any]) -> Any:
            try:
                return (
                    "ok",
                    self.events_view(
                        await store.append_many(flow, kinds, artifacts=arts, expected_version=expected)
                    ),
                )
            except ChemPersistError as exc:
                return ("error", type(exc))

        async def all_at_once(store: Any) -> list[Any]:
            return list(await asyncio.gather(*(each(store, *call) for call in calls)))

        self.both(all_at_once)  # (each call is judged on its own: some may be refused, others not)

    def events_view(self, events: list[FlowEvent]) -> Any:
        return events_view(events, self.supplied)

    def _note_ids(self, view: Any, event_ids: list[uuid.UUID] | None) -> None:
        """Remember the caller's event ids both stores now hold (for rules that reuse them)."""
        if event_ids is not None:
            self.supplied.update(event_ids)
        if isinstance(view, tuple):
            self.used_ids.extend(
                event_id
                for _, _, event_id, _ in view[0]
                if event_id != "minted" and event_id not in self.used_ids
            )

    # --- rules: appends that carry a job write ------------------------------------------------------

    @rule(data=st.data())
    def append_with_job(self, data: st.DataObject) -> None:
        """Events with a job write: the flow's job enqueued, or a claimed job (held, or with a lease
        another claim took: a stale token) completed or suspended, both or neither."""
        flow = self._flow(data)
        kinds = [self._kind(data) for _ in range(data.draw(st.integers(0, 3), label="count"))]
        expected = self._expected(data, flow, len(kinds))
        artifacts = self._artifacts(data, kinds)
        mode = data.draw(st.sampled_from(["enqueue", "complete", "suspend", "stale"]), label="job")
        if mode != "enqueue" and not (
            isinstance(flow, uuid.UUID) and all(flow in held for held in self.held.values())
        ):
            mode = "enqueue"
        until = datetime(2099, 1, 1, tzinfo=UTC)

        def write(store: Any) -> Any:
            if mode == "enqueue":
                fid = flow if isinstance(flow, uuid.UUID) else None
                spec = JobSpec("flow", None, self.queue_name, str(flow), max_attempts=None, flow_id=fid)
                return JobWrite.enqueue(spec.checked())
            job = self.held[id(store)][flow]
            if mode == "stale":
                job = Job(
                    **{**{f: getattr(job, f) for f in job.__dataclass_fields__}, "lease_token": uuid.uuid4()}
                )
                return JobWrite.complete(job)
            return JobWrite.complete(job) if mode == "complete" else JobWrite.suspend(job, until)

        async def call(store: Any) -> Any:
            return await store.append_with_job(
                flow,
                kinds,
                write(store),
                queue=self.queues[id(store)],
                expected_version=expected,
                artifacts=artifacts,
            )

        result = self.both(call, self.events_view, writes=True)
        if mode in ("complete", "suspend") and not isinstance(result, type):
            for held in self.held.values():
                del held[flow]

    @rule(data=st.data())
    def claim_jobs(self, data: st.DataObject) -> None:
        """Both queues claim this example's ready flow jobs: the same flows, the same attempts."""
        limit = data.draw(st.integers(1, 3), label="limit")

        async def claim(store: Any) -> Any:
            jobs = await self.queues[id(store)].claim("w", limit=limit, queues=[self.queue_name])
            self.held[id(store)].update({job.flow_id: job for job in jobs})
            return [(job.flow_id, job.attempt) for job in jobs]

        self.both(claim)

    # --- rules: reads ----------------------------------------------------------------------------

    @rule(data=st.data())
    def list_and_stream(self, data: st.DataObject) -> None:
        flow = self._flow(data)
        listed = self.both(lambda s: s.list(flow), self.events_view)
        batch_size = data.draw(
            st.integers(1, 4) | st.sampled_from([0, -1, "2", 1.5, True, None, MAX_BATCH_SIZE + 1]),
            label="batch_size",
        )

        async def streamed(store: Any) -> list[FlowEvent]:
            return [event async for event in store.stream(flow, batch_size=batch_size)]

        result = self.both(streamed, self.events_view)
        if not isinstance(result, type) and not isinstance(listed, type):
            assert result == listed

    @rule(data=st.data())
    def read_all(self, data: st.DataObject) -> None:
        """The global order, paged by any limit: pages follow each other, positions ascend, no
        version of a flow is missing or twice; both stores read the same events (of this example's
        flows: the log keeps earlier examples' events on PostgreSQL). Their orders across flows are
        not compared: concurrent appends commit in an order of their own on PostgreSQL."""
        limit = data.draw(
            mostly([1, 2, 3, 5, 1000], [0, -1, "2", 1.5, True, None, MAX_BATCH_SIZE + 1]), label="limit"
        )
        after = data.draw(mostly([None], ["", "1.2", "0" * 41, 5, b"x"]), label="after")
        mine = set(self.flows)

        async def paged(store: Any) -> list[FlowEvent]:
            first = await store.read_all(after, limit=limit)  # (the edges are refused here)
            pages, page = list(first), first
            while page:
                assert len(page) <= limit
                last = page[-1].position
                page = await store.read_all(last, limit=limit)
                assert all(e.position > last for e in page)  # (else the paging would never end)
                pages += page
            full = await store.read_all(limit=MAX_BATCH_SIZE)
            assert pages == full
            positions = [e.position for e in full]
            assert positions == sorted(positions)
            assert len(set(positions)) == len(positions)
            ours = [e for e in full if e.flow_id in mine]
            for flow in mine:  # (each flow's events, in version order unless a unit of work wrote first)
                versions = sorted(e.flow_version for e in ours if e.flow_id == flow)
                assert versions == list(range(1, len(versions) + 1))
            return ours

        def view(events: list[FlowEvent]) -> Any:
            return sorted(self.events_view(events)[0], key=lambda row: (str(row[0]), row[1]))

        self.both(paged, view)

    @rule(data=st.data())
    def flow_version(self, data: st.DataObject) -> None:
        flow = self._flow(data)
        self.both(lambda s: s.flow_version(flow))

    @rule(data=st.data())
    def errors(self, data: st.DataObject) -> None:
        flow = self._flow(data)
        step_id = data.draw(st.none() | step_ids | st.sampled_from([5, b"s0"]), label="step_id")
        versions = {
            store: self._versions_of(store, flow) if isinstance(flow, uuid.UUID) else {}
            for store in (self.memory, self.postgres)
        }

        async def listed(store: Any) -> Any:
            return errors_view(await store.list_errors(flow, step_id), versions[store])

        async def timeline(store: Any) -> Any:
            return errors_view(await store.get_error_timeline(flow, step_id), versions[store])

        self.both(listed)
        self.both(timeline)
        self.both(lambda s: s.count_errors_by_flow(flow))

    @rule(data=st.data())
    def get_artifacts(self, data: st.DataObject) -> None:
        known = [a.hash for a in self.artifacts]
        hashes = data.draw(
            st.lists(st.sampled_from([*known, "", "x" * 64, "0" * 63 + "\x00", "\ud800"]), max_size=4)
            | st.sampled_from([None, known[0], [5]]),
            label="hashes",
        )
        self.both(lambda s: s.get_artifacts(hashes), artifacts_view)

    # --- the stored state reads back equal -------------------------------------------------------

    def _versions_of(self, store: Any, flow: uuid.UUID) -> dict[int, int]:
        return {e.seq: e.flow_version for e in self.run(store.list(flow))}

    @invariant()
    def stored_state_reads_back_equal(self) -> None:
        """Every flow's events and error rows, and every artifact of the example, read back equal."""
        for flow in self.flows:
            views = []
            for store in (self.memory, self.postgres):
                events = self.run(store.list(flow))
                version_of = {e.seq: e.flow_version for e in events}
                errors = errors_view(self.run(store.list_errors(flow)), version_of)
                assert all(row[-1] != "missing" for row in errors), errors
                views.append((self.events_view(events), errors))
            assert views[0] == views[1]
        hashes = [a.hash for a in self.artifacts]
        self.both(lambda s: s.get_artifacts(hashes), artifacts_view)

        async def jobs(store: Any) -> Any:
            listed = await self.queues[id(store)].list_jobs(queue=self.queue_name, limit=1000)
            return sorted((str(j.flow_id), j.state.value, j.attempt) for j in listed)

        self.both(jobs)


LOCKSTEP_SETTINGS = settings(
    # 150 runs of up to 10 rules take ~20 s here (the slow run below takes 300);
    # CHEM_LOCKSTEP_EXAMPLES=5000 hunts for longer.
    max_examples=int(os.environ.get("CHEM_LOCKSTEP_EXAMPLES", "150")),
    stateful_step_count=10,
    deadline=None,  # a rule is several round trips to PostgreSQL: its time says nothing
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)


def mostly(valid: list[Any], edges: list[Any], *, one_in: int = 8) -> st.SearchStrategy[Any]:
    """One of ``valid`` but one time in ``one_in``, then one of ``edges`` (which may be valid too):
    each argument mostly valid, so the rows a call makes exist for the rules after it to meet."""
    return st.integers(1, one_in).flatmap(lambda i: st.sampled_from(edges if i == 1 else valid))


def machine_settings(steps: int, *, longer: bool = False) -> settings:
    """A lockstep machine's settings: ``steps`` rules per example, ``CHEM_LOCKSTEP_EXAMPLES``
    examples (100 by default; 400 for the slow run, ``longer``)."""
    examples = 400 if longer else int(os.environ.get("CHEM_LOCKSTEP_EXAMPLES", "100"))
    return settings(LOCKSTEP_SETTINGS, max_examples=examples, stateful_step_count=steps)


def run_lockstep(machine: type[Any], db_url: str, run_settings: settings) -> None:
    """Run ``machine`` (a state machine with ``loop`` and ``db`` class attributes): every call runs
    to completion on its own event loop, with one ``Database`` built on that loop for the whole run
    (so the tests are plain, not async)."""
    loop = asyncio.new_event_loop()
    try:
        db = loop.run_until_complete(Database.open(db_url, min_connections=1, max_connections=4))
        try:
            bound = type(f"{machine.__name__}Run", (machine,), {"loop": loop, "db": db})
            run_state_machine_as_test(bound, settings=run_settings)
        finally:
            loop.run_until_complete(db.close())
    finally:
        loop.close()


def test_stores_in_lockstep(db_url: str) -> None:
    run_lockstep(Lockstep, db_url, LOCKSTEP_SETTINGS)


@pytest.mark.slow
def test_stores_in_lockstep_for_longer(db_url: str) -> None:
    run_lockstep(Lockstep, db_url, settings(LOCKSTEP_SETTINGS, max_examples=300))
