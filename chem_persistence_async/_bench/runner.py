"""Run benchmark cases round-robin and summarise them (median, min, max, paired ratios)."""

from __future__ import annotations

import gc
import math
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


class BenchmarkError(RuntimeError):
    """A benchmark did not do the work it claims to measure."""


class Progress:
    """One line per step on stderr: elapsed time, step count, what just ran."""

    def __init__(self, total: int = 0, *, stream: Any = None) -> None:
        self._start = time.perf_counter()
        self.total = total
        self.done = 0
        self._stream = stream if stream is not None else sys.stderr

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self._start

    def note(self, message: str) -> None:
        print(f"[{self.elapsed:7.1f}s] {message}", file=self._stream, flush=True)

    def step(self, message: str) -> None:
        self.done += 1
        width = len(str(self.total))
        self.note(f"[{self.done:>{width}}/{self.total}] {message}")


@dataclass(frozen=True)
class Timed:
    """What a ``run`` that timed itself returns: work done in a worker thread (a synchronous peer)
    is timed there, so the event loop's hand-off to the thread is not counted."""

    items: int
    seconds: float


@dataclass
class Variant:
    """One way of doing a case's work: ``prepare(warm)`` (untimed) builds the input of ``run``
    (timed), which returns how many items (events or flows) it processed, or a ``Timed`` when it
    timed itself. With ``warm`` true, ``prepare`` may build a smaller input (the warm-up round is
    not timed)."""

    key: str
    label: str
    prepare: Callable[[bool], Awaitable[Any]]
    run: Callable[[Any], Awaitable[int | Timed]]
    cleanup: Callable[[Any], Awaitable[None]] | None = None
    """Untimed, after ``run`` (also after a failure): stop what ``prepare`` started (processes)."""
    items: int | None = None
    """Items per sample when they differ from the case's (a peer too slow for the full sample)."""
    goal: float | None = None
    """A goal for the ratio against this baseline when it is not the primary one (a peer's)."""


@dataclass
class Case:
    """An operation of the library next to its raw-asyncpg baselines (the first is the primary)."""

    name: str
    title: str
    unit: str
    items: int
    library: Variant
    baselines: Sequence[Variant]
    goal: float | None = None
    note: str = ""
    warm_up: bool = True
    """Run in the warm-up round (writes); reads of an already cached flow need none."""
    rounds: int | None = None
    """Timed rounds at most (``None``: every round): the quick run times a case that starts
    worker processes for each sample once, to keep CI short."""
    samples: dict[str, list[float]] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def variants(self) -> list[Variant]:
        return [self.library, *self.baselines]


async def measure(variant: Variant, expected: int | None) -> tuple[float, int]:
    """Prepare, then time one run (``expected=None``: a warm-up run), then clean up (untimed).
    Returns (seconds, items)."""
    arg = await variant.prepare(expected is None)
    try:
        gc.collect()
        start = time.perf_counter()
        result = await variant.run(arg)
        seconds = time.perf_counter() - start
    finally:
        if variant.cleanup is not None:
            await variant.cleanup(arg)
    if isinstance(result, Timed):
        items, seconds = result.items, result.seconds
    else:
        items = result
    if expected is not None and items != expected:
        raise BenchmarkError(f"{variant.key} processed {items} items, expected {expected}")
    return seconds, items


async def run_rounds(cases: Sequence[Case], *, repetitions: int, warmup: bool, progress: Progress) -> None:
    """Every case, every variant, once per round; the order of variants rotates each round so no
    side always runs first (or right after a checkpoint)."""
    rounds: list[int] = ([-1] if warmup else []) + list(range(repetitions))
    progress.total += sum(min(repetitions, case.rounds or repetitions) * len(case.variants) for case in cases)
    if warmup:
        progress.total += sum(len(case.variants) for case in cases if case.warm_up)
    for case in cases:
        case.samples = {v.key: [] for v in case.variants}
    for index in rounds:
        label = "warm-up" if index < 0 else f"round {index + 1}/{repetitions}"
        for case in cases:
            if index < 0 and not case.warm_up:
                continue
            if case.rounds is not None and index >= case.rounds:
                continue
            variants = case.variants
            shift = max(index, 0) % len(variants)
            for variant in variants[shift:] + variants[:shift]:
                expected = variant.items if variant.items is not None else case.items
                seconds, items = await measure(variant, expected if index >= 0 else None)
                rate = items / seconds
                if index >= 0:
                    case.samples[variant.key].append(rate)
                progress.step(f"{label} · {case.name} · {variant.label}: {rate:,.0f} {case.unit}")


def spread(values: Sequence[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarise(case: Case) -> dict[str, Any]:
    """The case as JSON: each variant's median/min/max and, per baseline, the paired ratios
    library/raw of each round (so >1 means the library is faster)."""
    lib = case.samples[case.library.key]
    baselines: list[dict[str, Any]] = []
    for variant in case.baselines:
        raw = case.samples[variant.key]
        ratios = [a / b for a, b in zip(lib, raw, strict=True)]
        if not all(math.isfinite(r) and r > 0 for r in ratios):
            raise BenchmarkError(f"{case.name}: ratio against {variant.key} is not a positive number")
        entry: dict[str, Any] = {
            "key": variant.key,
            "label": variant.label,
            "throughput": {**spread(raw), "samples": raw},
            "ratio": {**spread(ratios), "samples": ratios},
        }
        if variant.items is not None:
            entry["items_per_sample"] = variant.items
        if variant.goal is not None:
            entry["goal"] = variant.goal
            entry["meets_goal"] = entry["ratio"]["median"] >= variant.goal
        baselines.append(entry)
    primary = baselines[0]
    ratio = primary["ratio"]["median"]
    return {
        "name": case.name,
        "title": case.title,
        "unit": case.unit,
        "items_per_sample": case.items,
        "repetitions": len(lib),
        "library": {
            "key": case.library.key,
            "label": case.library.label,
            "throughput": {**spread(lib), "samples": lib},
        },
        "baselines": baselines,
        "primary_baseline": primary["key"],
        "ratio": primary["ratio"],
        "goal": case.goal,
        "meets_goal": None if case.goal is None else ratio >= case.goal,
        "note": case.note,
        "extras": case.extras,
    }
