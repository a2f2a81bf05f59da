"""What every chaos test checks once its processes are gone, read from the database itself, and the
bounds on how often one step may be attempted.

Bounds. A step's attempts are 1 + its transient failures + its lost attempts (nothing else fails in
these flows: ``Tally.other_failures`` must stay 0). Each of the two is bounded by the longest run of
independent events of probability ``q`` that any of ``trials`` steps may see, allowing a false
alarm in at most one test run in ``1 / FALSE_ALARM`` (``longest_run``):

* transient failures: ``q`` = the flaky step's p (0.3), one flaky step per flow;
* lost attempts: an attempt is lost only when its process is killed while it runs, and a kill loses
  at most one attempt per task (or job) the process runs at once, so the share of attempts lost is
  at most ``q`` = kills x tasks / attempts (the kills the run really made), over every step of
  every flow.

So with 40 flows, p = 0.3, and 8 kills of 2 tasks over about 150 attempts: at most 10 transient
failures and 6 lost attempts, 17 attempts in all, for any step; before attempt leases a step of
such a test was attempted 397 times. ``bounds`` gives the figures of each run; the tests print them.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from chem_persistence_async import FlowDefinition, FlowEngine, FlowRepository, InMemoryEventStore, RetryPolicy
from tests.support.chaos import StepAttempts, assert_error_rows_one_to_one, check_timeline, read_timelines


@dataclass
class Tally:
    """Attempts over every flow: how many, how they ended, the most any one step took."""

    flows: int = 0
    attempts: int = 0
    transient: int = 0
    lost: int = 0
    interrupted: int = 0
    other_failures: int = 0
    most_attempts: int = 0
    most_transient: int = 0
    most_lost: int = 0
    errors: int = 0

    def add(self, step: StepAttempts) -> None:
        self.attempts += step.attempts
        self.transient += step.failed["transient"]
        self.lost += step.lost
        self.interrupted += step.interrupted
        self.other_failures += (
            sum(step.failed.values()) - step.failed["transient"] - step.lost - step.interrupted
        )
        self.most_attempts = max(self.most_attempts, step.attempts)
        self.most_transient = max(self.most_transient, step.failed["transient"])
        self.most_lost = max(self.most_lost, step.lost)


FALSE_ALARM = 1e-4


def longest_run(q: float, trials: int) -> int:
    """The smallest k such that ``trials`` x q**(k+1) <= ``FALSE_ALARM``: k+1 events of probability
    ``q`` in a row, in any of ``trials`` independent sequences, is that unlikely."""
    assert 0 <= q < 1, q
    k = 0
    while trials * q ** (k + 1) > FALSE_ALARM:
        k += 1
    return k


@dataclass(frozen=True)
class Bounds:
    transient: int
    lost: int

    @property
    def attempts(self) -> int:
        return 1 + self.transient + self.lost


def bounds(tally: Tally, *, p: float, kills: int, per_kill: int) -> Bounds:
    """The bounds of this run (module docstring): ``per_kill`` attempts at most lost per kill."""
    lost_share = kills * per_kill / max(tally.attempts, 1)
    assert lost_share < 0.5, f"{kills} kills for {tally.attempts} attempts: no bound would mean anything"
    return Bounds(longest_run(p, tally.flows), longest_run(lost_share, 3 * tally.flows))


def assert_within(tally: Tally, limit: Bounds, *, kills: int, per_kill: int, **context: Any) -> None:
    """Every step within the bounds, and the lost attempts no more than the kills can explain."""
    where = describe(tally, bounds=limit, **context)
    assert tally.lost <= kills * per_kill, where
    assert tally.most_transient <= limit.transient, where
    assert tally.most_lost <= limit.lost, where
    assert tally.most_attempts <= limit.attempts, where
    assert tally.interrupted == tally.other_failures == 0, where


async def reference_fingerprints(definition: FlowDefinition, starts: Sequence[int]) -> dict[int, str]:
    """The in-memory run of ``definition`` on ``{"start": s}`` for each distinct ``s``."""

    async def one(start: int) -> tuple[int, str]:
        engine = FlowEngine(
            InMemoryEventStore(),
            FlowRepository(),
            definition,
            retry_policy=RetryPolicy(max_retries=200, initial_delay=0.0),
        )
        fingerprint = await engine.flow_fingerprint(await engine.run_to_end(inputs={"start": start}))
        assert fingerprint is not None
        return start, fingerprint

    return dict(await asyncio.gather(*(one(s) for s in sorted(set(starts)))))


async def check_flows(
    conn: asyncpg.Connection,
    engine: FlowEngine,
    flows: Mapping[uuid.UUID, int],
    *,
    total_added: int,
) -> Tally:
    """Every flow of ``flows`` (id -> its input ``start``) completed, with the in-memory
    fingerprint and the right result; its log keeps the attempt rules; each failure has one error
    row and each error row one failure. Returns the attempts tallied over every step."""
    timelines = await read_timelines(conn)
    assert set(timelines) == set(flows), "the log holds flows nobody started, or lost one"
    expected = await reference_fingerprints(engine.definition, list(flows.values()))
    tally = Tally(flows=len(flows))
    for flow_id, start in flows.items():
        timeline = timelines[flow_id]
        steps = check_timeline(flow_id, timeline)
        assert [r.type for r in timeline].count("flowcompleted") == 1, f"flow {flow_id} did not complete once"
        assert timeline[-1].type == "flowcompleted", f"flow {flow_id}: events after its FlowCompleted"
        assert sorted(steps) == sorted(s.id for s in engine.definition.steps)
        for step in steps.values():
            assert step.finished == 1
            tally.add(step)
        instance = await engine.load(flow_id)  # FlowRepository: events and error rows agree
        assert instance.completed
        assert instance.fingerprint == expected[start] == timeline[-1].payload["flow_fingerprint"]
        (last,) = (await engine.store.get_artifacts(instance.steps[-1].outputs)).values()
        assert last.payload == {"total": start + total_added}
    tally.errors = await assert_error_rows_one_to_one(conn)
    assert tally.errors == tally.attempts - 3 * len(flows)
    return tally


def describe(tally: Tally, **extra: Any) -> str:
    fields = {**extra, **{k: v for k, v in vars(tally).items()}}
    return ", ".join(f"{k}={v}" for k, v in fields.items())
