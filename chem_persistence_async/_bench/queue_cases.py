"""The work queue and the workers (SPEC 8.6): each next to raw asyncpg, the peers, and the
queue-less engine, in the same run. See benchmarks/README.md, "The work queue and the workers"."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import asyncpg

from chem_persistence_async._bench import flows, processes
from chem_persistence_async._bench import queue_raw as raw
from chem_persistence_async._bench.config import WORKER_PROCESSES, SuiteConfig
from chem_persistence_async._bench.queue_peers import DbosPeer, PgQueuerPeer
from chem_persistence_async._bench.runner import BenchmarkError, Case, Timed, Variant
from chem_persistence_async.backends.postgres.database import Database
from chem_persistence_async.backends.postgres.event_store import PgEventStore
from chem_persistence_async.backends.postgres.work_queue import WorkQueue
from chem_persistence_async.domain.jobs import Job, JobSpec
from chem_persistence_async.engine.engine import FlowEngine
from chem_persistence_async.engine.repository import FlowRepository
from chem_persistence_async.worker.worker import Worker

SUBMITTERS = 8
"""Tasks of this process that submit the flows of a ``flows_workers_<n>`` sample."""

PRODUCE_BATCH = 10
CONSUMERS = 5


@dataclass
class QueueContext:
    config: SuiteConfig
    db: Database
    store: PgEventStore
    conn: asyncpg.Connection
    """A raw connection of its own (asyncpg defaults): the raw baselines and the untimed setup."""
    url: str
    """The benchmark database (for worker processes and the raw produce/consume connections)."""
    pgqueuer: PgQueuerPeer | None = None
    dbos: DbosPeer | None = None

    @property
    def queue(self) -> WorkQueue:
        return WorkQueue(self.db)


def _variant(
    key: str,
    label: str,
    prepare: Callable[[bool], Awaitable[Any]],
    run: Callable[[Any], Awaitable[int | Timed]],
    *,
    cleanup: Callable[[Any], Awaitable[None]] | None = None,
    items: int | None = None,
    goal: float | None = None,
) -> Variant:
    return Variant(key=key, label=label, prepare=prepare, run=run, cleanup=cleanup, items=items, goal=goal)


def _size(n: int, warm: bool, small: int = 10) -> int:
    return min(n, small) if warm else n


def _queue_name(prefix: str) -> str:
    """A queue of the sample's own: nothing left by another sample or case is counted."""
    return f"{prefix}_{uuid4().hex[:8]}"


def build_queue_cases(ctx: QueueContext, only: Sequence[str] = ()) -> list[Case]:
    builders: list[tuple[str, Callable[[], Case]]] = [
        ("queue_enqueue", lambda: _enqueue(ctx)),
        ("queue_enqueue_many", lambda: _enqueue_many(ctx)),
        ("queue_claim_complete_1", lambda: _claim_complete(ctx, 1)),
        ("queue_claim_complete_10", lambda: _claim_complete(ctx, 10)),
        ("queue_produce_consume", lambda: _produce_consume(ctx)),
        *((f"flows_workers_{n}", _bind_flows(ctx, n)) for n in WORKER_PROCESSES),
    ]
    return [build() for name, build in builders if not only or name in only]


def _bind_flows(ctx: QueueContext, processes_count: int) -> Callable[[], Case]:
    return lambda: _flows_workers(ctx, processes_count)


async def _delete_queue(conn: asyncpg.Connection, queue: str) -> None:
    await conn.execute("DELETE FROM work_queue WHERE queue = $1", queue)


# --- enqueue --------------------------------------------------------------------------------------


def _enqueue(ctx: QueueContext) -> Case:
    n = ctx.config.queue_jobs
    conn = ctx.conn

    async def lib_prepare(warm: bool) -> tuple[str, list[dict[str, Any]]]:
        return _queue_name("enqueue"), raw.payloads(_size(n, warm))

    async def lib_run(arg: tuple[str, list[dict[str, Any]]]) -> int:
        queue, payloads = arg
        work = ctx.queue
        for payload in payloads:
            await work.enqueue("bench", payload, queue=queue)
        return len(payloads)

    async def raw_run(arg: tuple[str, list[dict[str, Any]]]) -> int:
        return await raw.insert_each(conn, *arg)

    async def cleanup(arg: tuple[str, list[dict[str, Any]]]) -> None:
        await _delete_queue(conn, arg[0])

    return Case(
        name="queue_enqueue",
        title="WorkQueue.enqueue, one job per call, one after the other",
        unit="jobs/s",
        items=n,
        library=_variant("library", "WorkQueue.enqueue", lib_prepare, lib_run, cleanup=cleanup),
        baselines=[
            _variant("insert", "raw autocommit INSERT … RETURNING id", lib_prepare, raw_run, cleanup=cleanup)
        ],
        goal=0.80,
    )


def _enqueue_many(ctx: QueueContext) -> Case:
    cfg = ctx.config
    size, count = cfg.queue_batch_size, cfg.queue_batches
    conn = ctx.conn

    async def lib_prepare(warm: bool) -> tuple[str, list[list[JobSpec]]]:
        queue = _queue_name("enqueue_many")
        batches = [
            [JobSpec("bench", payload, queue=queue) for payload in raw.payloads(size, b * size)]
            for b in range(_size(count, warm, 1))
        ]
        return queue, batches

    async def lib_run(arg: tuple[str, list[list[JobSpec]]]) -> int:
        work = ctx.queue
        return sum([len(await work.enqueue_many(batch)) for batch in arg[1]])

    async def raw_prepare(warm: bool) -> tuple[str, list[list[dict[str, Any]]]]:
        return _queue_name("enqueue_many"), [
            raw.payloads(size, b * size) for b in range(_size(count, warm, 1))
        ]

    async def raw_run(arg: tuple[str, list[list[dict[str, Any]]]]) -> int:
        return await raw.insert_batches(conn, *arg)

    async def cleanup(arg: tuple[str, Any]) -> None:
        await _delete_queue(conn, arg[0])

    return Case(
        name="queue_enqueue_many",
        title=f"WorkQueue.enqueue_many of {size:,} jobs per call",
        unit="jobs/s",
        items=size * count,
        library=_variant("library", f"WorkQueue.enqueue_many({size})", lib_prepare, lib_run, cleanup=cleanup),
        baselines=[
            _variant(
                "insert_unnest",
                f"raw one INSERT … SELECT unnest … RETURNING id of {size}",
                raw_prepare,
                raw_run,
                cleanup=cleanup,
            )
        ],
        goal=0.80,
    )


# --- claim and complete ---------------------------------------------------------------------------


def _claim_complete(ctx: QueueContext, batch: int) -> Case:
    n = ctx.config.claim_jobs
    conn = ctx.conn

    async def prepare(warm: bool) -> str:
        queue = _queue_name(f"claim{batch}")
        await raw.fill(conn, queue, _size(n, warm, 2 * batch))
        await conn.execute("VACUUM ANALYZE work_queue")
        return queue

    async def each(queue: str) -> int:
        work, done = ctx.queue, 0
        while jobs := await work.claim("bench", limit=batch, queues=(queue,)):
            for job in jobs:
                await work.complete(job)
            done += len(jobs)
        return done

    async def many(queue: str) -> int:
        work, done = ctx.queue, 0
        while jobs := await work.claim("bench", limit=batch, queues=(queue,)):
            await work.complete_many(jobs)
            done += len(jobs)
        return done

    async def bundled(queue: str) -> int:
        work, done, jobs = ctx.queue, 0, list[Job]()
        while True:
            done += len(jobs)
            jobs = await work.claim("bench", limit=batch, queues=(queue,), complete=jobs)
            if not jobs:
                return done

    async def one_unit(queue: str) -> int:
        work, done = ctx.queue, 0
        while jobs := await work.claim("bench", limit=batch, queues=(queue,)):
            async with work.transaction() as tx:
                for job in jobs:
                    await work.complete(job, tx=tx)
            done += len(jobs)
        return done

    async def raw_delete(queue: str) -> int:
        return await raw.claim_and_finish(conn, queue, batch, raw.DELETE_JOBS)

    async def raw_move(queue: str) -> int:
        return await raw.claim_and_finish(conn, queue, batch, raw.MOVE_JOBS)

    async def cleanup(queue: str) -> None:
        await _delete_queue(conn, queue)

    baselines = [
        _variant("claim_delete", "raw same claim + one DELETE", prepare, raw_delete, cleanup=cleanup),
        _variant(
            "claim_move",
            "raw same claim + one DELETE … INSERT INTO history",
            prepare,
            raw_move,
            cleanup=cleanup,
        ),
    ]
    # The library's row is its consumer loop (the README's, and the one ``queue_produce_consume``
    # runs): each claim finishes the batch before it in the same statement. The two-call forms
    # are rows of their own.
    library = _variant(
        "library",
        f"claim(limit={batch}, complete=previous batch): one statement per batch",
        prepare,
        bundled,
        cleanup=cleanup,
    )
    if batch == 1:
        baselines.append(
            _variant("each", "(library, claim(limit=1) + complete())", prepare, each, cleanup=cleanup)
        )
    else:
        baselines += [
            _variant(
                "many", f"(library, claim(limit={batch}) + complete_many())", prepare, many, cleanup=cleanup
            ),
            _variant("each", "(library, complete() per job)", prepare, each, cleanup=cleanup),
            _variant(
                "one_unit",
                f"(library, the {batch} complete() in one unit of work)",
                prepare,
                one_unit,
                cleanup=cleanup,
            ),
        ]
    return Case(
        name=f"queue_claim_complete_{batch}",
        title=f"WorkQueue.claim(limit={batch}) + completing what it claimed, draining {n:,} jobs",
        unit="jobs/s",
        items=n,
        library=library,
        baselines=baselines,
        goal=0.80,
    )


# --- PgQueuer's benchmark shape -------------------------------------------------------------------


async def _library_produce_consume(work: WorkQueue, queue: str, total: int, *, bundled: bool = True) -> Timed:
    """One enqueuer task (``enqueue_many`` of 10), five consumer tasks (``claim(limit=10,
    complete=previous batch)``: each batch is finished by the claim of the next, one statement per
    batch; without ``bundled``, ``claim`` then ``complete_many``), woken by the queue's own local
    wake-up when they find nothing."""
    loop = asyncio.get_running_loop()
    more = asyncio.Event()
    finished = asyncio.Event()
    done = 0
    specs = [
        [JobSpec("bench", payload, queue=queue) for payload in raw.payloads(PRODUCE_BATCH, low)]
        for low in range(0, total, PRODUCE_BATCH)
    ]
    unsubscribe = work.on_enqueue(lambda name: more.set() if name == queue else None)

    async def enqueuer() -> None:
        for batch in specs:
            await work.enqueue_many(batch)

    async def consumer() -> None:
        nonlocal done
        held: list[Job] = []
        while not finished.is_set():
            more.clear()
            if bundled:
                claimed = await work.claim("bench", limit=PRODUCE_BATCH, queues=(queue,), complete=held)
            else:
                if held:
                    await work.complete_many(held)
                claimed = await work.claim("bench", limit=PRODUCE_BATCH, queues=(queue,))
            done += len(held)
            held = claimed
            if done >= total:
                finished.set()
            if not held:
                await raw.wait_either(more, finished, 0.05)

    try:
        start = loop.time()
        tasks = [loop.create_task(consumer()) for _ in range(CONSUMERS)]
        await enqueuer()
        await finished.wait()
        seconds = loop.time() - start
        await asyncio.gather(*tasks)
    finally:
        unsubscribe()
    return Timed(done, seconds)


def _produce_consume(ctx: QueueContext) -> Case:
    n = ctx.config.produce_consume_jobs
    conn = ctx.conn

    async def prepare(warm: bool) -> tuple[str, int]:
        return _queue_name("produce"), _size(n, warm, 100)

    async def lib_run(arg: tuple[str, int]) -> Timed:
        return await _library_produce_consume(ctx.queue, *arg)

    async def lib_two_run(arg: tuple[str, int]) -> Timed:
        return await _library_produce_consume(ctx.queue, *arg, bundled=False)

    async def raw_run(arg: tuple[str, int]) -> Timed:
        done, seconds = await raw.produce_consume(ctx.url, *arg, consumers=CONSUMERS, batch=PRODUCE_BATCH)
        return Timed(done, seconds)

    async def raw_bundled_run(arg: tuple[str, int]) -> Timed:
        done, seconds = await raw.produce_consume(
            ctx.url, *arg, consumers=CONSUMERS, batch=PRODUCE_BATCH, bundled=True
        )
        return Timed(done, seconds)

    async def cleanup(arg: tuple[str, int]) -> None:
        await _delete_queue(conn, arg[0])

    baselines = [
        _variant(
            "raw_claim_delete",
            "raw 1 enqueuer (INSERT of 10) + 5 consumers (same claim of 10 + DELETE)",
            prepare,
            raw_run,
            cleanup=cleanup,
        ),
        _variant(
            "raw_claim_completing",
            "raw 1 enqueuer (INSERT of 10) + 5 consumers (the library's claim-that-completes statement)",
            prepare,
            raw_bundled_run,
            cleanup=cleanup,
        ),
        _variant(
            "two_statements",
            "(library, claim(limit=10) then complete_many: two statements per batch)",
            prepare,
            lib_two_run,
            cleanup=cleanup,
        ),
    ]
    if ctx.pgqueuer is not None:
        peer = ctx.pgqueuer

        async def peer_prepare(warm: bool) -> Any:
            return await peer.start(_size(n, warm, 100), consumers=CONSUMERS, batch=PRODUCE_BATCH)

        async def peer_run(run: Any) -> Timed:
            return await peer.produce(run, batch=PRODUCE_BATCH)

        async def peer_cleanup(run: Any) -> None:
            await peer.stop(run)

        baselines.append(
            _variant(
                "peer_pgqueuer",
                "(peer) PgQueuer, 1 enqueuer (batches of 10) + 5 consumers (batch_size=10)",
                peer_prepare,
                peer_run,
                cleanup=peer_cleanup,
                goal=2.0,
            )
        )
    return Case(
        name="queue_produce_consume",
        title=f"1 enqueuer (enqueue_many of 10) + 5 consumers (claim 10, completing the last 10), {n:,} jobs",
        unit="jobs/s",
        items=n,
        library=_variant(
            "library",
            "WorkQueue: 1 enqueuer task + 5 consumer tasks",
            prepare,
            lib_run,
            cleanup=cleanup,
        ),
        baselines=baselines,
        note="PgQueuer's benchmark shape (tools/benchmark.py: 1 enqueuer, 5 consumers, batch 10)",
    )


# --- whole flows on worker processes --------------------------------------------------------------


@dataclass
class _Workers:
    queue: str
    count: int
    workers: processes.Processes | None = None


async def _submit_all(engine: FlowEngine, queue: str, count: int) -> None:
    """``count`` submits from ``SUBMITTERS`` tasks."""
    numbers = iter(range(count))

    async def submitter() -> None:
        for n in numbers:
            await engine.submit(inputs={"n": n}, queue=queue)

    await asyncio.gather(*(submitter() for _ in range(SUBMITTERS)))


async def _drained(conn: asyncpg.Connection, queue: str) -> None:
    while True:
        if not await conn.fetchval("SELECT count(*) FROM work_queue WHERE queue = $1", queue):
            return
        await asyncio.sleep(0.005)


async def _check_completed(conn: asyncpg.Connection, queue: str, count: int) -> None:
    done = await conn.fetchval(
        "SELECT count(*) FROM work_queue_history WHERE queue = $1 AND state = 'completed'", queue
    )
    if done != count:
        raise BenchmarkError(f"queue {queue}: {done} flow jobs completed, expected {count}")


def _flows_workers(ctx: QueueContext, count: int) -> Case:
    cfg = ctx.config
    n = cfg.worker_flows
    conn = ctx.conn
    target = "chem_persistence_async._bench.flows:NOOP3"

    async def lib_prepare(warm: bool) -> _Workers:
        state = _Workers(_queue_name(f"flows{count}"), _size(n, warm))
        state.workers = await processes.start_workers(
            conn,
            ctx.url,
            target,
            count,
            queue=state.queue,
            concurrency=cfg.worker_concurrency,
            poll_interval=1.0,
            records=False,  # as run_to_end below: what is compared is what the queue costs
        )
        await conn.execute("ANALYZE event_log")
        return state

    async def lib_run(state: _Workers) -> Timed:
        engine = FlowEngine(ctx.store, FlowRepository(), flows.NOOP3, queue=ctx.queue)
        start = time.perf_counter()
        await _submit_all(engine, state.queue, state.count)
        await _drained(conn, state.queue)
        seconds = time.perf_counter() - start
        await _check_completed(conn, state.queue, state.count)
        return Timed(state.count, seconds)

    async def lib_cleanup(state: _Workers) -> None:
        if state.workers is not None:
            await processes.stop(state.workers)

    async def r2e_prepare(warm: bool) -> int:
        await conn.execute("ANALYZE event_log")
        return _size(n, warm)

    async def r2e_run(total: int) -> int:
        engine = FlowEngine(ctx.store, FlowRepository(), flows.NOOP3)
        numbers = iter(range(total))

        async def runner() -> int:
            ran = 0
            for number in numbers:
                await engine.run_to_end(inputs={"n": number})
                ran += 1
            return ran

        return sum(await asyncio.gather(*(runner() for _ in range(cfg.run_to_end_tasks))))

    baselines = [
        _variant(
            "run_to_end",
            f"(library, no queue) run_to_end from {cfg.run_to_end_tasks} tasks",
            r2e_prepare,
            r2e_run,
        )
    ]
    if ctx.dbos is not None:
        dbos = ctx.dbos
        dbos_n = cfg.dbos_flows

        async def dbos_prepare(warm: bool) -> _Workers:
            state = _Workers(_queue_name(f"dbos{count}"), _size(dbos_n, warm))
            state.workers = await dbos.start_workers(count, state.queue, cfg.dbos_polling_interval)
            return state

        async def dbos_run(state: _Workers) -> Timed:
            return await dbos.enqueue_and_wait(state.queue, state.count)

        baselines.append(
            _variant(
                "peer_dbos",
                f"(peer) DBOS Transact, queued workflow, {count} worker process(es)",
                dbos_prepare,
                dbos_run,
                cleanup=lib_cleanup,
                items=dbos_n,
                goal=5.0,
            )
        )
    return Case(
        name=f"flows_workers_{count}",
        title=(
            f"3 no-op steps: submit → {count} `chem-persist worker` process(es) "
            f"(concurrency {cfg.worker_concurrency}) → completed"
        ),
        unit="flows/s",
        items=n,
        library=_variant(
            "library",
            f"submit + {count} worker process(es) x concurrency {cfg.worker_concurrency}",
            lib_prepare,
            lib_run,
            cleanup=lib_cleanup,
        ),
        baselines=baselines,
        goal=0.50,
        warm_up=False,
        rounds=1 if cfg.quick else None,
        note="timed from the first submit to the last completion; event_log analyzed before each sample",
    )


# --- wake-up latency ------------------------------------------------------------------------------


def _percentiles(values_ms: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values_ms)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "median_ms": statistics.median(ordered),
        "p99_ms": p99,
        "min_ms": ordered[0],
        "max_ms": ordered[-1],
        "samples": len(ordered),
    }


async def _stamps(conn: asyncpg.Connection, first: int, count: int) -> dict[int, float]:
    """The start times the ``StampStart`` steps recorded, by flow input ``n``."""
    rows = await conn.fetch(
        "SELECT (payload->>'n')::int, (payload->>'t')::float8 FROM workflow_step_artifacts "
        "WHERE kind = 'started' AND (payload->>'n')::int BETWEEN $1 AND $2",
        first,
        first + count - 1,
    )
    return {int(row[0]): float(row[1]) for row in rows}


async def _submit_spaced(
    engine: FlowEngine, queue: str, first: int, count: int, gap: float
) -> tuple[dict[int, float], list[float]]:
    """Submit one flow every ``gap`` seconds; returns when each submit was called, and how long
    each submit took (its own unit of work: the ``FlowInitialized`` and the job), in ms."""
    called: dict[int, float] = {}
    took: list[float] = []
    for n in range(first, first + count):
        called[n] = time.monotonic()
        await engine.submit(inputs={"n": n}, queue=queue)
        took.append((time.monotonic() - called[n]) * 1000)
        await asyncio.sleep(gap)
    return called, took


async def _latencies(conn: asyncpg.Connection, queue: str, called: dict[int, float]) -> list[float]:
    await asyncio.wait_for(_drained(conn, queue), 60)
    first = min(called)
    stamps = await _stamps(conn, first, len(called))
    if len(stamps) != len(called):
        raise BenchmarkError(f"wake-up: {len(stamps)} steps stamped their start, expected {len(called)}")
    return [(stamps[n] - t) * 1000 for n, t in called.items()]


async def _raw_notify(url: str, count: int, gap: float) -> list[float]:
    """The floor: raw asyncpg ``NOTIFY`` (autocommit) to another connection's LISTEN callback."""
    listener = await asyncpg.connect(url)
    sender = await asyncpg.connect(url)
    arrived: asyncio.Queue[float] = asyncio.Queue()
    try:
        await listener.add_listener("chem_bench_floor", lambda *_: arrived.put_nowait(time.monotonic()))
        out = []
        for _ in range(count):
            sent = time.monotonic()
            await sender.execute("NOTIFY chem_bench_floor")
            out.append((await asyncio.wait_for(arrived.get(), 10) - sent) * 1000)
            await asyncio.sleep(gap)
        return out
    finally:
        await listener.close()
        await sender.close()


async def wake_latency(ctx: QueueContext) -> dict[str, Any]:
    """Submit to step start on an idle worker whose poll interval (30 s) never fires: (a) a
    ``Worker`` in this process (the local wake), (b) a ``chem-persist worker`` process (NOTIFY →
    LISTEN). The step stamps its own start; the clock starts when ``submit`` is called."""
    cfg = ctx.config
    count, gap = cfg.wake_jobs, cfg.wake_gap
    conn = ctx.conn
    engine = FlowEngine(ctx.store, FlowRepository(), flows.WAKE, queue=ctx.queue)

    local_queue = _queue_name("wake_local")
    async with Worker(ctx.db, flows.WAKE, queues=(local_queue,), concurrency=4, poll_interval=30.0) as worker:
        await asyncio.sleep(0.2)  # its first claim found nothing: it waits for a wake-up
        called, local_submit = await _submit_spaced(engine, local_queue, 0, count, gap)
        local = await _latencies(conn, local_queue, called)
        if worker.stats.completed != count:
            raise BenchmarkError(f"wake-up: the local worker completed {worker.stats.completed} of {count}")

    remote_queue = _queue_name("wake_remote")
    workers = await processes.start_workers(
        conn,
        ctx.url,
        "chem_persistence_async._bench.flows:WAKE",
        1,
        queue=remote_queue,
        concurrency=4,
        poll_interval=30.0,
    )
    try:
        await asyncio.sleep(0.2)
        called, remote_submit = await _submit_spaced(engine, remote_queue, count, count, gap)
        remote = await _latencies(conn, remote_queue, called)
    finally:
        await processes.stop(workers)

    floor = await _raw_notify(ctx.url, count, gap / 5)
    with contextlib.suppress(Exception):
        await conn.execute("ANALYZE work_queue")
    return {
        "poll_interval_s": 30.0,
        "gap_s": gap,
        "local": {
            "label": "Worker in the submitting process (local wake)",
            **_percentiles(local),
            "submit_median_ms": statistics.median(local_submit),
        },
        "remote": {
            "label": "chem-persist worker process (NOTIFY → LISTEN)",
            **_percentiles(remote),
            "submit_median_ms": statistics.median(remote_submit),
        },
        "raw_notify": {
            "label": "floor: raw asyncpg NOTIFY → another connection's LISTEN callback",
            **_percentiles(floor),
        },
    }
