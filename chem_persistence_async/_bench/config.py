"""How big each benchmark is: the full suite and the quick smoke run."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any

SERIAL_OPERATIONS = ("single_append", "append_with_artifacts", "append_many", "list", "stream", "replay")
"""The operations measured one call after the other, in the table's order."""

WORKER_PROCESSES = (1, 2, 4)
"""Worker processes of the whole-flow benchmarks (``flows_workers_<n>``)."""

QUEUE_OPERATIONS = (
    "queue_enqueue",
    "queue_enqueue_many",
    "queue_claim_complete_1",
    "queue_claim_complete_10",
    "queue_produce_consume",
    *(f"flows_workers_{n}" for n in WORKER_PROCESSES),
    "wake_latency",
)
"""The work queue and the workers (SPEC 8.6), after the store's operations in the table."""

QUEUE_GROUP = "queue"
"""``--only queue``: every operation of ``QUEUE_OPERATIONS`` (results written as ``queue.*``)."""


GROWTH_OPERATION = "log_growth"
"""Flows per second as ``event_log`` grows, never analyzed (issue 10): a table of its own."""

SHAPE_FLOW_SIZES = (10, 100, 1000, 10_000)
"""Flow sizes of the shapes' reads (issue 15); a quick run reads only the first two."""

SHAPE_APPEND_KINDS = ("started", "signal", "failure", "artifact_1k", "artifact_100k")
"""The single appends of the shapes: a fixed-shape event, then events carrying free-form JSON."""

SHAPE_READS = ("list", "list_cold", "stream", "load", "load_cold")
"""The reads of each flow size (``_cold``: through a second ``Database`` opened for the read)."""

SHAPES_OPERATIONS = (
    *(f"shape_append_{kind}" for kind in SHAPE_APPEND_KINDS),
    "shape_append_many",
    "shape_concurrent_32",
    "shape_engine_step",
    *(f"shape_{read}_{size}" for size in SHAPE_FLOW_SIZES for read in SHAPE_READS),
)
"""The shapes users have (issue 15): free-form JSON, flows of 10 to 10,000 events, cold reads."""

SHAPES_GROUP = "shapes"
"""``--only shapes``: every operation of ``SHAPES_OPERATIONS`` (results written as ``shapes.*``)."""

GROUPS = {QUEUE_GROUP: QUEUE_OPERATIONS, SHAPES_GROUP: SHAPES_OPERATIONS}


def operation_names(concurrency: Iterable[int] = (8, 32)) -> tuple[str, ...]:
    """Every operation name ``--only`` accepts, in the table's order."""
    return (
        *SERIAL_OPERATIONS,
        *(f"concurrent_{tasks}" for tasks in concurrency),
        "demo_flow",
        *QUEUE_OPERATIONS,
        GROWTH_OPERATION,
        *SHAPES_OPERATIONS,
    )


def check_operations(only: Iterable[str], concurrency: Iterable[int] = (8, 32)) -> tuple[str, ...]:
    """``only`` as a tuple (``queue`` and ``shapes`` expanded to their operations), or
    ``ValueError`` naming the unknown ones and listing the valid names."""
    names: list[str] = []
    for name in only:
        for one in GROUPS.get(name, (name,)):
            if one not in names:
                names.append(one)
    valid = operation_names(concurrency)
    unknown = [name for name in names if name not in valid]
    if unknown:
        raise ValueError(
            f"unknown benchmark operation(s): {', '.join(unknown)}; valid: {', '.join(valid)}, "
            f"or {QUEUE_GROUP} for all of {QUEUE_OPERATIONS[0]}..{QUEUE_OPERATIONS[-1]}, "
            f"or {SHAPES_GROUP} for all of {SHAPES_OPERATIONS[0]}..{SHAPES_OPERATIONS[-1]}"
        )
    return tuple(names)


@dataclass(frozen=True)
class SuiteConfig:
    """Sizes of one run. Every figure is a throughput over one *sample* (this many items, timed)."""

    quick: bool
    repetitions: int
    """Timed rounds; every operation and baseline runs once per round, interleaved."""
    warmup: bool
    """One untimed round first (statement caches, pools, buffers)."""
    single_appends: int
    """Events per sample of ``single_append`` (one event per commit, one after the other)."""
    artifact_appends: int
    """Events (each with 2 new artifacts) per sample of ``append_with_artifacts``."""
    batch_size: int
    """Events per ``append_many`` call (one transaction)."""
    batches: int
    """``append_many`` calls per sample."""
    read_events: int
    """Events in the flow that ``list``, ``stream`` and ``replay`` read."""
    stream_batch_size: int
    concurrency: tuple[int, ...]
    """Concurrent tasks for the pool benchmarks."""
    concurrent_events: int
    """Events per sample of each concurrent benchmark (split evenly over the tasks)."""
    pool_size: int
    """``max_connections`` of the library's pool and ``max_size`` of the raw asyncpg pool."""
    demo_flows: int
    """Whole demo flows per sample."""
    rss_events: int
    """Events in the large flow streamed in a subprocess to measure peak RSS."""
    memory: bool = True
    """Measure peak RSS (seeds the large flow: the slowest part of a full run)."""
    synchronous_commit: str | None = None
    """``None``: the server's setting (durable commits, the default). ``"off"`` sets it on the
    dedicated database, so write figures show the client's cost rather than the disk's flush."""
    only: tuple[str, ...] = ()
    """Run only these operations (names as in the table); empty: all. Written as ``partial``
    (``queue`` when they are exactly the queue operations)."""
    queue_jobs: int = 1000
    """Jobs per sample of ``queue_enqueue`` (one ``enqueue`` per job, one after the other)."""
    queue_batch_size: int = 1000
    """Jobs per ``enqueue_many`` call."""
    queue_batches: int = 20
    """``enqueue_many`` calls per sample."""
    claim_jobs: int = 4000
    """Jobs drained per sample of ``queue_claim_complete_<batch>``."""
    produce_consume_jobs: int = 10_000
    """Jobs per sample of ``queue_produce_consume`` (1 enqueuer in batches of 10, 5 consumers
    claiming 10 at a time: PgQueuer's benchmark shape)."""
    worker_flows: int = 1000
    """Flows per sample of ``flows_workers_<n>`` and of its queue-less ``run_to_end`` baseline."""
    worker_concurrency: int = 32
    """``--concurrency`` of each ``chem-persist worker`` process: as many flows in flight as the
    ``run_to_end`` baseline's tasks (and DBOS's queue, which has no limit, takes what it polls).
    At 8, one process runs a third of the flows at once that the baseline does, and each claim,
    read and group commit carries fewer of them: measured in one process, 2.44 statements per
    flow at 8 against 0.79 at 32, about half the flows per second."""
    run_to_end_tasks: int = 32
    """Tasks of the queue-less ``run_to_end`` baseline."""
    dbos_flows: int = 200
    """Workflows per sample of the DBOS peer (it runs about 130 per second here)."""
    dbos_polling_interval: float = 0.01
    """The DBOS queue's ``polling_interval_sec`` (its default, 1 s, caps a worker near 14/s)."""
    wake_jobs: int = 300
    """Flows submitted one at a time, per side, for the wake-up latency."""
    wake_gap: float = 0.025
    """Seconds between two of those submits (the worker is idle again by then)."""
    growth_sizes: tuple[int, ...] = (0, 250_000, 500_000, 1_000_000)
    """Sizes of ``event_log`` at which ``log_growth`` measures flows per second."""
    growth_flows: int = 640
    """Flows per ``log_growth`` sample (32 tasks)."""
    shape_flow_sizes: tuple[int, ...] = SHAPE_FLOW_SIZES
    """Flow sizes the shapes read (each a prefix of one generated flow)."""
    shape_read_events: int = 20_000
    """Events per warm read sample of the shapes: a small flow is read ``this // size`` times."""
    shape_cold_reads: int = 6
    """Cold reads per sample at most (each through a ``Database`` opened, untimed, for it)."""
    shape_appends: int = 300
    """Events per sample of each ``shape_append_<kind>`` (one per commit, one after the other)."""
    shape_big_appends: int = 60
    """Events per sample of ``shape_append_artifact_100k``."""
    shape_batches: int = 10
    """``append_many`` calls of ``batch_size`` mixed events per ``shape_append_many`` sample."""
    shape_background_flows: int = 2000
    """Other flows (20 events each) in ``event_log`` when it is analysed: a table of many flows."""
    shape_steps: int = 200
    """Engine steps per ``shape_engine_step`` sample (flows of ``SHAPE_STEPS_PER_FLOW`` steps)."""

    @classmethod
    def full(cls) -> SuiteConfig:
        return cls(
            quick=False,
            repetitions=3,
            warmup=True,
            single_appends=600,
            artifact_appends=400,
            batch_size=1000,
            batches=20,
            read_events=100_000,
            stream_batch_size=1000,
            concurrency=(8, 32),
            concurrent_events=2048,
            pool_size=16,
            demo_flows=30,
            rss_events=1_000_000,
        )

    @classmethod
    def quick_run(cls) -> SuiteConfig:
        """A smoke run of a few hundred events: checks that every benchmark still works."""
        return cls(
            quick=True,
            repetitions=2,
            warmup=False,
            single_appends=20,
            artifact_appends=10,
            batch_size=100,
            batches=1,
            read_events=300,
            stream_batch_size=100,
            concurrency=(8, 32),
            concurrent_events=64,
            pool_size=8,
            demo_flows=1,
            rss_events=2000,
            queue_jobs=20,
            queue_batch_size=100,
            queue_batches=1,
            claim_jobs=40,
            produce_consume_jobs=200,
            worker_flows=20,
            worker_concurrency=4,
            run_to_end_tasks=8,
            dbos_flows=10,
            wake_jobs=10,
            wake_gap=0.02,
            growth_sizes=(0, 5_000),
            growth_flows=32,
            shape_flow_sizes=SHAPE_FLOW_SIZES[:2],
            shape_read_events=200,
            shape_cold_reads=2,
            shape_appends=10,
            shape_big_appends=2,
            shape_batches=1,
            shape_steps=10,
            shape_background_flows=50,
        )

    def with_options(
        self,
        *,
        repetitions: int | None = None,
        memory: bool | None = None,
        synchronous_commit: str | None = None,
        only: tuple[str, ...] | None = None,
    ) -> SuiteConfig:
        config = self
        if repetitions is not None:
            if repetitions < 1:
                raise ValueError("repetitions must be >= 1")
            config = replace(config, repetitions=repetitions)
        if memory is not None:
            config = replace(config, memory=memory)
        if synchronous_commit is not None:
            if synchronous_commit not in ("on", "off"):
                raise ValueError("synchronous_commit must be 'on' or 'off'")
            config = replace(config, synchronous_commit=synchronous_commit)
        if only:
            config = replace(config, only=check_operations(only, config.concurrency), memory=False)
        return config

    @property
    def stem(self) -> str:
        """File name stem of the results: ``latest`` (full run), ``quick``; ``-sync-off`` appended
        when commits were not waited for."""
        stem = "quick" if self.quick else "latest"
        if self.only:
            stem = "partial"
            for group, operations in GROUPS.items():
                if set(self.only) == set(operations):
                    stem = group if not self.quick else (f"{group}-quick" if group == SHAPES_GROUP else stem)
        return stem + ("-sync-off" if self.synchronous_commit == "off" else "")

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["concurrency"] = list(self.concurrency)
        data["only"] = list(self.only)
        data["shape_flow_sizes"] = list(self.shape_flow_sizes)
        return data
