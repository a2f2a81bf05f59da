"""Fault tests against a real PostgreSQL: each one checks that nothing was lost and nothing duplicated.

* connections terminated (``pg_terminate_backend``) every few milliseconds during thousands of appends;
* a commit whose acknowledgement is lost (a TCP proxy drops the connection after the server committed
  and before the client read the reply);
* a private server stopped and restarted in the middle of a running flow, which the engine then finishes;
* genuine serialization failures and a deadlock between concurrent transactions;
* statement timeouts (server side and client side);
* a pool exhausted by callers: a clear ``PoolTimeoutError``, then recovery.

Races are never "fixed" by sleeping: events, barriers and bounded waits decide what happens when.
The only sleeps are the fault injector's pace (the fault rate) and polling under a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest

from chem_persistence_async import (
    Artifact,
    BackoffPolicy,
    Database,
    ErrorClass,
    FlowDefinition,
    FlowEngine,
    InMemoryEventStore,
    InMemoryFlowRepository,
    JobSpec,
    PgEventStore,
    PgFlowRepository,
    PoolTimeoutError,
    RetryMetrics,
    RetryScheduled,
    StepContext,
    StepErrorInfo,
    StepFailed,
    StepFinished,
    StepOutput,
    StepStarted,
    TransientDatabaseError,
    WorkQueue,
    content_hash,
    retry_transient,
)
from chem_persistence_async.backends.postgres.retry import is_lost_connection
from chem_persistence_async.domain.jobs import JobWrite
from tests.support.faults import (
    Ledger,
    LostAckProxy,
    PrivateServer,
    _withheld_event_id,
    _withheld_seq,
    assert_log_exact,
)

# --- event builders -----------------------------------------------------------------------------


def _started(n: int) -> StepStarted:
    return StepStarted(step_index=n % 7, step_id=f"step-{n % 7}", attempt=1 + n % 3)


def _finished(n: int, artifacts: tuple[Artifact, ...]) -> StepFinished:
    return StepFinished(
        step_index=n % 7,
        step_id=f"step-{n % 7}",
        outputs=tuple(a.hash for a in artifacts),
        fingerprint=content_hash({"finished": n}),
    )


def _failed(n: int) -> StepFailed:
    return StepFailed(
        step_index=n % 7,
        step_id=f"step-{n % 7}",
        attempt=1 + n % 3,
        error=StepErrorInfo(
            error_class=ErrorClass.TRANSIENT,
            message=f"boom {n}",
            details={"stack_trace": f"trace {n}", "input_hash": content_hash(n), "params": {"n": n}},
        ),
        retry_count=n % 3,
        max_retries=3,
        fingerprint=content_hash({"failed": n}),
    )


def _retry(n: int) -> RetryScheduled:
    return RetryScheduled(
        step_index=n % 7, step_id=f"step-{n % 7}", retry_index=1 + n % 3, reason="transient"
    )


def _artifacts(token: str, n: int, count: int) -> tuple[Artifact, ...]:
    return tuple(Artifact.of("fault", {"token": token, "n": n, "part": part}) for part in range(count))


def _report(label: str, **counts: Any) -> None:
    print(f"\n[faults] {label}: " + " ".join(f"{k}={v}" for k, v in counts.items()))


# --- a. connections terminated during thousands of appends --------------------------------------

WRITERS = 8
FLOWS = 4
APPENDS_PER_WRITER = 300
"""Each writer appends at least this many times, and goes on until ``TERMINATIONS`` backends were
killed (or ``MAX_APPENDS_PER_WRITER``): group commit made the appends fast enough that a fixed count
would finish before many faults were injected."""
TERMINATIONS = 400
MAX_APPENDS_PER_WRITER = 6000
TERMINATE_EVERY_S = 0.004
MIN_BACKEND_AGE_S = 0.1
"""A backend is killed every few ms, but never one younger than this: every retry gets a window in
which it can make progress (without it, the last writer standing can be starved by chance). At
0.05 s, on a machine loaded to 3x its cores, a fresh connection's first append did not always fit
in the window and one writer spent its 40 retries."""


async def _terminator(
    admin: asyncpg.Connection, application_name: str, stop: asyncio.Event, counts: Counter[str]
) -> None:
    """Terminate one of the Database's backends every few milliseconds until ``stop`` is set.

    The pace is per writer (``TERMINATE_EVERY_S`` with all writers running, slower as they finish),
    so the last writers standing are not hit by the faults meant for all of them.
    """
    while not stop.is_set():
        # Mostly a backend in the middle of a statement (an append in flight), else an idle pooled one.
        pid = await admin.fetchval(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = $1 AND pid <> pg_backend_pid()"
            " AND backend_start < clock_timestamp() - make_interval(secs => $2)"
            " ORDER BY (state = 'active') DESC, random() LIMIT 1",
            application_name,
            MIN_BACKEND_AGE_S,
        )
        if pid is not None and await admin.fetchval("SELECT pg_terminate_backend($1)", pid):
            counts["terminated"] += 1
        pace = TERMINATE_EVERY_S * WRITERS / max(1, counts["writers_running"])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), pace)


async def _writer(
    store: PgEventStore, writer: int, flows: list[uuid.UUID], ledger: Ledger, counts: Counter[str]
) -> None:
    counts["writers_running"] += 1
    try:
        await _write(store, writer, flows, ledger, counts)
    finally:
        counts["writers_running"] -= 1


async def _write(
    store: PgEventStore, writer: int, flows: list[uuid.UUID], ledger: Ledger, counts: Counter[str]
) -> None:
    token = uuid.uuid4().hex
    flow = flows[writer % len(flows)]
    for i in range(MAX_APPENDS_PER_WRITER):
        if i >= APPENDS_PER_WRITER and counts["terminated"] >= TERMINATIONS:
            break
        n = writer * MAX_APPENDS_PER_WRITER + i
        shape = i % 5
        if shape == 0:
            ledger.record([await store.append_kind(flow, _started(n))])
        elif shape == 1:
            arts = _artifacts(token, n, 1 + n % 3)
            ledger.record([await store.append_kind(flow, _finished(n, arts), artifacts=arts)], arts)
        elif shape == 2:
            ledger.record([await store.append_kind(flow, _failed(n))])
        elif shape == 3:
            ledger.record(await store.append_many(flow, [_failed(n), _retry(n)]))
        else:
            arts = _artifacts(token, n, 2)
            ledger.record(
                await store.append_many(flow, [_started(n), _finished(n, arts)], artifacts=arts), arts
            )


async def test_terminated_connections_lose_and_duplicate_nothing(
    db_url: str, conn: asyncpg.Connection
) -> None:
    application_name = f"chem-fault-{uuid.uuid4().hex[:10]}"
    db = await Database.open(
        db_url,
        application_name=application_name,
        min_connections=2,
        max_connections=WRITERS,
        # Enough attempts to outlast a backend killed every few ms: 1 + 40 attempts, ~1.5 s in all.
        retry_delays_ms=(1, 2, 4, 8, 16, *([40] * 35)),
    )
    admin = await asyncpg.connect(db_url)
    counts: Counter[str] = Counter()
    stop = asyncio.Event()
    ledger = Ledger()
    started_at = time.perf_counter()
    try:
        store = PgEventStore(db)
        flows = [uuid.uuid4() for _ in range(FLOWS)]
        injector = asyncio.create_task(_terminator(admin, application_name, stop, counts))
        try:
            async with asyncio.timeout(90):
                await asyncio.gather(*(_writer(store, w, flows, ledger, counts) for w in range(WRITERS)))
        finally:
            stop.set()
            await injector
        metrics = db.metrics.snapshot()
        group_commit = store.group_commit_stats
        # Every flow still reads back, through the store, exactly as it was written.
        for flow in flows:
            mine = [e for e in ledger.events if e.flow_id == flow]
            listed = await store.list(flow)
            assert [(e.event_id, e.seq, e.flow_version) for e in listed] == sorted(
                ((e.event_id, e.seq, e.flow_version) for e in mine), key=lambda t: t[1]
            )
    finally:
        await admin.close()
        await db.close()
    checked = await assert_log_exact(conn, ledger)
    assert counts["terminated"] > 0
    assert metrics["retries_total"] > 0
    assert metrics["exhausted"] == {}
    assert group_commit is not None
    assert group_commit["grouped"] > 0  # 8 writers, 2 in flight: groups formed, under the same faults
    _report(
        "pg_terminate_backend",
        terminations=counts["terminated"],
        retries=metrics["retries_total"],
        retry_reasons=metrics["retries"],
        group_commit=group_commit,
        seconds=round(time.perf_counter() - started_at, 1),
        **checked,
    )


async def test_lost_commit_acknowledgement_is_retried_without_duplicates(
    db_url: str, conn: asyncpg.Connection
) -> None:
    async with LostAckProxy(db_url, marker=b"INSERT INTO event_log") as proxy:
        db = await Database.open(
            proxy.url, min_connections=1, max_connections=2, retry_delays_ms=(5, 10, 20, 40)
        )
        try:
            store = PgEventStore(db)
            flow = uuid.uuid4()
            ledger = Ledger()
            ledger.record([await store.append_kind(flow, _started(1))])  # no fault: prepares APPEND
            assert proxy.cuts == 0

            arts = _artifacts(uuid.uuid4().hex, 2, 3)
            proxy.arm()
            finished = await store.append_kind(flow, _finished(2, arts), artifacts=arts)
            ledger.record([finished], arts)
            assert proxy.cuts == 1
            # The server's own answer, which the client never saw, named the event the retry returned.
            assert [_withheld_event_id(row) for row in proxy.withheld_rows] == [finished.event_id]

            proxy.arm()
            failed_batch = await store.append_many(flow, [_failed(3), _retry(3)])
            ledger.record(failed_batch)
            assert proxy.cuts == 2
            # (a batch's answer names its events by seq: the ids are the caller's already)
            assert [_withheld_seq(row) for row in proxy.withheld_rows[1:]] == [e.seq for e in failed_batch]

            proxy.arm()
            failed_alone = await store.append_kind(flow, _failed(4))
            ledger.record([failed_alone])
            assert proxy.cuts == 3

            metrics = db.metrics.snapshot()
            assert sum(metrics["retries"].values()) == 3
            assert all(is_lost_connection(reason) for reason in metrics["retries"])
            assert [e.flow_version for e in await store.list(flow)] == [1, 2, 3, 4, 5]
            assert [e.event_id for e in await store.list(flow)] == [e.event_id for e in ledger.events]
            assert [e.event_seq for e in await store.list_errors(flow)] == [
                failed_batch[0].seq,
                failed_alone.seq,
            ]
            assert set(await store.get_artifacts([a.hash for a in arts])) == {a.hash for a in arts}
        finally:
            await db.close()
    checked = await assert_log_exact(conn, ledger)
    assert checked == {"events": 5, "flows": 1, "artifacts": 3, "errors": 2}
    _report("lost commit acknowledgement", cuts=proxy.cuts, **checked)


async def test_lost_acknowledgement_of_an_append_with_its_job_is_retried_without_duplicates(
    db_url: str, conn: asyncpg.Connection
) -> None:
    """The submit's and the last unit's one statement (events + job) commits, its answer is lost:
    the retry finds the events stored and writes neither them nor the job again."""
    async with LostAckProxy(db_url, marker=b"job_") as proxy:
        db = await Database.open(
            proxy.url, min_connections=1, max_connections=2, retry_delays_ms=(5, 10, 20, 40)
        )
        try:
            store, queue = PgEventStore(db), WorkQueue(db)
            flow = uuid.uuid4()
            spec = JobSpec("flow", None, key=str(flow), max_attempts=None, flow_id=flow).checked()
            proxy.arm()
            first = await store.append_with_job(
                flow, [_started(1)], JobWrite.enqueue(spec), queue=queue, expected_version=0
            )
            assert proxy.cuts == 1
            (job,) = await queue.claim("w1")
            assert job.flow_id == flow

            proxy.arm()
            last = await store.append_with_job(
                flow,
                [_failed(2), _retry(2)],
                JobWrite.complete(job),
                queue=queue,
                expected_version=1,
            )
            assert proxy.cuts == 2
            assert sum(db.metrics.snapshot()["retries"].values()) == 2
            assert [e.event_id for e in await store.list(flow)] == [e.event_id for e in first + last]
        finally:
            await db.close()
    assert await conn.fetchval("SELECT count(*) FROM event_log WHERE flow_id = $1", flow) == 3
    assert await conn.fetchval("SELECT count(*) FROM step_execution_errors WHERE flow_id = $1", flow) == 1
    assert await conn.fetchval("SELECT count(*) FROM work_queue") == 0
    rows = await conn.fetch("SELECT id, state FROM work_queue_history WHERE flow_id = $1", flow)
    assert [(r["id"], r["state"]) for r in rows] == [(job.id, "completed")]


async def test_lost_acknowledgement_of_a_group_commit_is_retried_without_duplicates(
    db_url: str, conn: asyncpg.Connection
) -> None:
    """The group statement commits, its answer is lost: the retry finds every member's events."""
    async with LostAckProxy(db_url, marker=b"WITH items AS") as proxy:
        db = await Database.open(
            proxy.url,
            min_connections=1,
            max_connections=4,
            retry_delays_ms=(5, 10, 20, 40),
            group_commit_writers=1,
        )
        try:
            store = PgEventStore(db)
            flows = [uuid.uuid4() for _ in range(4)]
            proxy.arm()
            # The first append is written alone; the other three arrive while it is in flight and
            # leave together as one group, whose answer the proxy withholds.
            events = await asyncio.gather(*(store.append_kind(f, _started(1)) for f in flows))
            assert proxy.cuts == 1
            grouped = events[1:]
            assert sorted(uuid.UUID(bytes=row[1]) for row in proxy.withheld_rows if row[1]) == sorted(
                e.event_id for e in grouped
            )
            assert store.group_commit_stats == {
                "alone": 1,
                "groups": 1,
                "grouped": 3,
                "largest_group": 3,
                "fallbacks": 0,
                "failed_groups": 0,
            }
            metrics = db.metrics.snapshot()
            assert sum(metrics["retries"].values()) == 1
            assert all(is_lost_connection(reason) for reason in metrics["retries"])
            ledger = Ledger()
            for event in events:
                ledger.record([event])
                assert [e.event_id for e in await store.list(event.flow_id)] == [event.event_id]
        finally:
            await db.close()
    checked = await assert_log_exact(conn, ledger)
    assert checked == {"events": 4, "flows": 4, "artifacts": 0, "errors": 0}
    _report("lost group commit acknowledgement", cuts=proxy.cuts, **checked)


# --- c. a private server stopped and restarted in the middle of a running flow ----------------------


@dataclass(frozen=True)
class ProduceStep:
    id: str = "produce"

    async def run(self, ctx: StepContext) -> StepOutput:
        return StepOutput(artifacts=(Artifact.of("numbers", {"values": [1, 2, 3]}),))


@dataclass(frozen=True)
class GateStep:
    """Says it is running, then waits for the test to open the gate; runs once per attempt."""

    entered: asyncio.Event = field(compare=False)
    gate: asyncio.Event = field(compare=False)
    runs: list[int] = field(compare=False, default_factory=list)
    id: str = "gate"

    async def run(self, ctx: StepContext) -> StepOutput:
        self.runs.append(ctx.attempt)
        self.entered.set()
        await self.gate.wait()
        values = [v for a in ctx.inputs for v in a.payload["values"]]  # type: ignore[index]
        return StepOutput(artifacts=(Artifact.of("numbers", {"values": [v * 10 for v in values]}),))


@dataclass(frozen=True)
class SumStep:
    id: str = "sum"

    async def run(self, ctx: StepContext) -> StepOutput:
        values = [v for a in ctx.inputs for v in a.payload["values"]]  # type: ignore[index]
        return StepOutput(artifacts=(Artifact.of("summary", {"sum": sum(values)}),))


def _gated_definition(gate_step: GateStep) -> FlowDefinition:
    return FlowDefinition("restart", [ProduceStep(), gate_step, SumStep()])


async def _wait_until(condition: Callable[[], bool], deadline_s: float, what: str) -> None:
    deadline = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_server_restart_mid_flow_then_engine_finishes(private_server: PrivateServer, mode: str) -> None:
    # Backoff long enough (about 10 s in all) to outlast a restart, crash recovery included.
    db = await Database.open(
        private_server.url,
        min_connections=1,
        max_connections=4,
        retry_delays_ms=(20, 50, 100, 200, 400, *([1000] * 10)),
    )
    gate_step = GateStep(entered=asyncio.Event(), gate=asyncio.Event())
    definition = _gated_definition(gate_step)
    try:
        store = PgEventStore(db)
        engine = FlowEngine(store, PgFlowRepository(), definition)
        flow_id = await engine.start()
        run = asyncio.create_task(engine.run_to_end(flow_id))
        async with asyncio.timeout(60):
            await gate_step.entered.wait()  # StepStarted of the gate step is committed; the step is running
            await asyncio.to_thread(private_server.stop, mode)
            gate_step.gate.set()  # the step finishes while the server is down: its append must wait it out
            await _wait_until(lambda: db.metrics.snapshot()["retries_total"] > 0, 30, "a retried append")
            assert not run.done()
            await asyncio.to_thread(private_server.start)
            assert await run == flow_id

        instance = await engine.load(flow_id)
        events = await store.list(flow_id)
        metrics = db.metrics.snapshot()
    finally:
        await db.close()

    assert instance.completed
    assert not instance.failed
    assert [e.code for e in events] == ["I", "S", "F", "S", "F", "S", "F", "C"]
    assert [e.flow_version for e in events] == list(range(1, 9))
    assert len({e.seq for e in events}) == len(events)
    assert gate_step.runs == [1]  # the step was not run again: its outcome was committed once
    assert instance.errors == ()
    assert metrics["exhausted"] == {}

    # Exactly the flow an undisturbed run produces (same fingerprint as the in-memory backend).
    calm_gate = GateStep(entered=asyncio.Event(), gate=asyncio.Event())
    calm_gate.gate.set()
    memory = FlowEngine(InMemoryEventStore(), InMemoryFlowRepository(), _gated_definition(calm_gate))
    reference = await memory.load(await memory.run_to_end())
    assert instance.fingerprint == reference.fingerprint
    assert [s.outputs for s in instance.steps] == [s.outputs for s in reference.steps]

    async with Database.connect(private_server.url) as check, check.acquire() as raw:
        counts = await raw.fetchrow(
            "SELECT (SELECT count(*) FROM event_log) AS events,"
            " (SELECT count(*) FROM workflow_step_artifacts) AS artifacts,"
            " (SELECT count(*) FROM step_execution_errors) AS errors"
        )
    assert dict(counts) == {"events": 8, "artifacts": 3, "errors": 0}
    _report(f"server restart ({mode})", retries=metrics["retries"], **dict(counts))


# --- d. serialization failures and a deadlock -----------------------------------------------------

FAST_RETRIES = BackoffPolicy(delays=(0.002,) * 30)


async def test_serialization_failures_on_a_read_modify_write_are_retried(
    db: Database, conn: asyncpg.Connection
) -> None:
    await conn.execute(
        "CREATE TABLE scratch_counter (id int PRIMARY KEY, n int NOT NULL);"
        " INSERT INTO scratch_counter VALUES (1, 0)"
    )
    tasks = 6
    metrics = RetryMetrics()
    everyone_read = asyncio.Barrier(tasks)
    attempts: Counter[int] = Counter()

    @retry_transient(policy=FAST_RETRIES, metrics=metrics)
    async def increment(worker: int) -> int:
        attempts[worker] += 1
        async with db.acquire() as c, c.transaction(isolation="serializable"):
            n = await c.fetchval("SELECT n FROM scratch_counter WHERE id = 1")
            if attempts[worker] == 1:  # first attempts all read the same value before anyone writes
                async with asyncio.timeout(10):
                    await everyone_read.wait()
            await c.execute("UPDATE scratch_counter SET n = $1 WHERE id = 1", n + 1)
            return int(n) + 1

    results = await asyncio.gather(*(increment(w) for w in range(tasks)))
    assert sorted(results) == list(range(1, tasks + 1))  # every increment saw a distinct value
    assert await conn.fetchval("SELECT n FROM scratch_counter WHERE id = 1") == tasks
    snapshot = metrics.snapshot()
    assert set(snapshot["retries"]) == {"40001"}
    assert snapshot["retries"]["40001"] >= tasks - 1  # only one of the first round could commit
    assert snapshot["retries_total"] == sum(attempts.values()) - tasks
    _report("serialization (update)", retries=snapshot["retries"])


async def test_serialization_failures_on_write_skew_are_retried(
    db: Database, conn: asyncpg.Connection
) -> None:
    """No unique constraint protects the numbering: only SERIALIZABLE (and its retries) does."""
    await conn.execute("CREATE TABLE scratch_ticket (n int NOT NULL)")
    tasks = 6
    metrics = RetryMetrics()
    everyone_read = asyncio.Barrier(tasks)
    attempts: Counter[int] = Counter()

    @retry_transient(policy=FAST_RETRIES, metrics=metrics)
    async def take_next(worker: int) -> int:
        attempts[worker] += 1
        async with db.acquire() as c, c.transaction(isolation="serializable"):
            n = await c.fetchval("SELECT coalesce(max(n), 0) + 1 FROM scratch_ticket")
            if attempts[worker] == 1:
                async with asyncio.timeout(10):
                    await everyone_read.wait()
            await c.execute("INSERT INTO scratch_ticket (n) VALUES ($1)", n)
            return int(n)

    results = await asyncio.gather(*(take_next(w) for w in range(tasks)))
    assert sorted(results) == list(range(1, tasks + 1))
    assert [r["n"] for r in await conn.fetch("SELECT n FROM scratch_ticket ORDER BY n")] == list(
        range(1, tasks + 1)
    )
    snapshot = metrics.snapshot()
    assert set(snapshot["retries"]) == {"40001"}
    assert snapshot["retries"]["40001"] >= tasks - 1
    _report("serialization (write skew)", retries=snapshot["retries"])


async def test_deadlock_is_retried(db: Database, conn: asyncpg.Connection) -> None:
    await conn.execute(
        "CREATE TABLE scratch_pair (id int PRIMARY KEY, n int NOT NULL);"
        " INSERT INTO scratch_pair VALUES (1, 0), (2, 0)"
    )
    metrics = RetryMetrics()
    both_hold_one = asyncio.Barrier(2)
    attempts: Counter[int] = Counter()

    @retry_transient(policy=BackoffPolicy(delays=(0.01, 0.02, 0.05)), metrics=metrics)
    async def bump_both(first: int, second: int) -> None:
        attempts[first] += 1
        async with db.acquire() as c, c.transaction():
            await c.execute("SET LOCAL deadlock_timeout = '50ms'")
            await c.execute("UPDATE scratch_pair SET n = n + 1 WHERE id = $1", first)
            if attempts[first] == 1:  # each holds one row and then wants the other's
                async with asyncio.timeout(10):
                    await both_hold_one.wait()
            await c.execute("UPDATE scratch_pair SET n = n + 1 WHERE id = $1", second)

    await asyncio.gather(bump_both(1, 2), bump_both(2, 1))
    assert metrics.snapshot()["retries"] == {"40P01": 1}
    assert sorted(attempts.values()) == [1, 2]
    assert [tuple(r) for r in await conn.fetch("SELECT id, n FROM scratch_pair ORDER BY id")] == [
        (1, 2),
        (2, 2),
    ]


# --- e. statement timeouts -----------------------------------------------------------------------


async def test_server_statement_timeout_is_retried(db: Database) -> None:
    metrics = RetryMetrics()
    attempts: list[float] = []

    @retry_transient(policy=BackoffPolicy(delays=(0.005, 0.01)), metrics=metrics)
    async def slow_then_fast() -> int:
        sleep_s = 30.0 if not attempts else 0.0
        attempts.append(sleep_s)
        async with db.acquire() as c, c.transaction():
            await c.execute("SET LOCAL statement_timeout = '100ms'")
            await c.execute("SELECT pg_sleep($1)", sleep_s)
            return int(await c.fetchval("SELECT 42"))

    assert await slow_then_fast() == 42
    assert metrics.snapshot()["retries"] == {"57014": 1}
    assert attempts == [30.0, 0.0]

    @retry_transient(policy=BackoffPolicy(delays=(0.005, 0.01)), metrics=metrics)
    async def always_slow() -> None:
        async with db.acquire() as c, c.transaction():
            await c.execute("SET LOCAL statement_timeout = '50ms'")
            await c.execute("SELECT pg_sleep(30)")

    with pytest.raises(TransientDatabaseError, match="statement timeout") as exhausted:
        await always_slow()
    assert exhausted.value.sqlstate == "57014"
    assert isinstance(exhausted.value.__cause__, asyncpg.QueryCanceledError)
    assert metrics.snapshot()["exhausted"] == {"57014": 1}
    assert metrics.snapshot()["retries"] == {"57014": 3}
    async with db.acquire() as c:  # the pool is healthy afterwards
        assert await c.fetchval("SELECT 1") == 1


async def test_client_command_timeout_is_retried(db_url: str) -> None:
    db = await Database.open(
        db_url, min_connections=1, max_connections=2, command_timeout=0.2, retry_delays_ms=(5, 10)
    )
    try:
        calls: list[float] = []

        async def slow_then_fast(c: asyncpg.Connection) -> int:
            sleep_s = 30.0 if not calls else 0.0
            calls.append(sleep_s)
            await c.execute("SELECT pg_sleep($1)", sleep_s)
            return int(await c.fetchval("SELECT 7"))

        assert await db.run(slow_then_fast, operation="slow") == 7
        assert db.metrics.snapshot()["retries"] == {"timeout": 1}
        assert db.metrics.snapshot()["calls"] == 1  # a call, whichever attempt succeeds

        async def always_slow(c: asyncpg.Connection) -> None:
            await c.execute("SELECT pg_sleep(30)")

        with pytest.raises(TransientDatabaseError) as exhausted:
            await db.run(always_slow, operation="always_slow")
        assert exhausted.value.reason == "timeout"
        assert isinstance(exhausted.value.__cause__, TimeoutError)
        assert db.metrics.snapshot()["exhausted"] == {"timeout": 1}
        assert db.metrics.snapshot()["calls"] == 2
        assert db.metrics.snapshot()["retries"] == {"timeout": 3}
        store = PgEventStore(db)
        flow = uuid.uuid4()
        await store.append_kind(flow, _started(0))  # the pool recovered
        assert [e.flow_version for e in await store.list(flow)] == [1]
    finally:
        await db.close()


# --- f. a pool exhausted by callers ---------------------------------------------------------------


async def test_exhausted_pool_gives_clear_timeout_then_recovers(
    db_url: str, conn: asyncpg.Connection
) -> None:
    db = await Database.open(db_url, min_connections=0, max_connections=2, acquire_timeout=0.2)
    try:
        store = PgEventStore(db)
        flow = uuid.uuid4()
        async with contextlib.AsyncExitStack() as held:
            for _ in range(2):
                await held.enter_async_context(db.acquire())
            with pytest.raises(PoolTimeoutError, match=r"no connection free within 0\.2s \(pool max 2\)"):
                await store.append_kind(flow, _started(0))
            with pytest.raises(PoolTimeoutError):
                await store.list(flow)
            assert db.metrics.snapshot()["retries_total"] == 0  # not a transient fault: not retried

            # A caller willing to wait gets the first connection given back.
            async def patient() -> int:
                async with db.acquire(timeout=30) as c:
                    return int(await c.fetchval("SELECT 1"))

            waiting = asyncio.create_task(patient())
            await asyncio.sleep(0)
            assert not waiting.done()
        # every held connection is released here
        async with asyncio.timeout(10):
            assert await waiting == 1
        first = await store.append_kind(flow, _started(1))
        assert first.flow_version == 1
        appended = await asyncio.gather(*(store.append_kind(flow, _started(n)) for n in range(2, 8)))
        assert sorted(e.flow_version for e in appended) == list(range(2, 8))
    finally:
        await db.close()
    assert await conn.fetchval("SELECT count(*) FROM event_log") == 7
