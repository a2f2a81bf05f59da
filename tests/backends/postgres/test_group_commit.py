"""The group-commit coordinator on its own: who writes alone, who is grouped, who falls back.

The writes here are in-process functions that block on events the test releases, so every
interleaving is chosen by the test, not by timing. What the coordinator does on PostgreSQL is in
``test_group_commit_postgres.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from chem_persistence_async.backends.postgres.group_commit import FALLBACK, Fallback, GroupCommitter


@dataclass(frozen=True)
class Batch:
    key: str
    size: int = 1
    fail: bool = False


@dataclass
class Writes:
    """Records every write; each write waits until the test opens ``gate``."""

    gate: asyncio.Event = field(default_factory=asyncio.Event)
    alone: list[str] = field(default_factory=list)
    groups: list[list[str]] = field(default_factory=list)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    fail_groups: bool = False

    async def write_one(self, batch: Batch) -> str:
        self.alone.append(batch.key)
        self.started.set()
        await self.gate.wait()
        if batch.fail:
            raise ValueError(f"refused {batch.key}")
        return f"alone:{batch.key}"

    async def write_group(self, batches: Sequence[Batch]) -> list[str | BaseException | Fallback]:
        self.groups.append([b.key for b in batches])
        self.started.set()
        await self.gate.wait()
        if self.fail_groups:
            raise ConnectionError("group statement lost")
        return [ValueError(f"refused {b.key}") if b.fail else f"group:{b.key}" for b in batches]


def committer(
    writes: Writes, *, max_inflight: int = 1, max_group_events: int = 1000
) -> GroupCommitter[Batch, str]:
    return GroupCommitter(
        writes.write_one,
        writes.write_group,
        key=lambda b: b.key,
        size=lambda b: b.size,
        max_inflight=max_inflight,
        max_group_events=max_group_events,
    )


async def _queued(gc: GroupCommitter[Batch, str], n: int) -> None:
    """Wait (bounded) until ``n`` submissions sit in the queue."""
    async with asyncio.timeout(5):
        while len(gc._queue) < n:  # noqa: ASYNC110 - the coordinator has no event to wait on
            await asyncio.sleep(0)


async def test_a_lone_caller_writes_alone_at_once() -> None:
    writes = Writes()
    writes.gate.set()
    gc = committer(writes)
    assert await gc.submit(Batch("a")) == "alone:a"
    assert await gc.submit(Batch("b")) == "alone:b"
    assert writes.alone == ["a", "b"]
    assert writes.groups == []
    assert gc.stats.snapshot() == {
        "alone": 2,
        "groups": 0,
        "grouped": 0,
        "largest_group": 0,
        "fallbacks": 0,
        "failed_groups": 0,
    }


async def test_callers_arriving_during_a_write_leave_together_as_one_group() -> None:
    writes = Writes()
    gc = committer(writes)
    first = asyncio.create_task(gc.submit(Batch("a")))
    await writes.started.wait()
    others = [asyncio.create_task(gc.submit(Batch(k))) for k in "bcd"]
    await _queued(gc, 3)
    assert writes.groups == []  # nothing leaves while the one writer is busy
    writes.gate.set()
    assert await first == "alone:a"
    assert await asyncio.gather(*others) == ["group:b", "group:c", "group:d"]
    assert writes.groups == [["b", "c", "d"]]
    assert gc.stats.groups == 1
    assert gc.stats.grouped == 3
    assert gc.stats.largest_group == 3


async def test_one_flow_is_never_twice_in_a_group_nor_grouped_while_it_is_being_written() -> None:
    writes = Writes()
    gc = committer(writes, max_inflight=2)
    first = asyncio.create_task(gc.submit(Batch("a")))
    await writes.started.wait()
    # "a" is being written: a second "a" must wait for it even though a writer is free.
    tasks = [asyncio.create_task(gc.submit(Batch(k))) for k in ("a", "b", "a")]
    await asyncio.sleep(0)
    writes.gate.set()
    results = await asyncio.gather(first, *tasks)
    assert results[0] == "alone:a"
    flat = [k for g in writes.groups for k in g] + writes.alone
    assert sorted(flat) == ["a", "a", "a", "b"]
    for group in writes.groups:
        assert len(group) == len(set(group))


async def test_a_failed_group_sends_every_member_to_write_alone() -> None:
    writes = Writes(fail_groups=True)
    gc = committer(writes)
    first = asyncio.create_task(gc.submit(Batch("a")))
    await writes.started.wait()
    others = [asyncio.create_task(gc.submit(Batch(k))) for k in "bc"]
    await _queued(gc, 2)
    writes.gate.set()
    assert await first == "alone:a"
    assert await asyncio.gather(*others) == ["alone:b", "alone:c"]
    assert writes.groups == [["b", "c"]]
    assert sorted(writes.alone) == ["a", "b", "c"]
    assert gc.stats.failed_groups == 1
    assert gc.stats.fallbacks == 2


async def test_each_member_gets_its_own_outcome() -> None:
    writes = Writes()
    gc = committer(writes)
    first = asyncio.create_task(gc.submit(Batch("a")))
    await writes.started.wait()
    good = asyncio.create_task(gc.submit(Batch("b")))
    bad = asyncio.create_task(gc.submit(Batch("c", fail=True)))
    await _queued(gc, 2)
    writes.gate.set()
    await first
    assert await good == "group:b"
    with pytest.raises(ValueError, match="refused c"):
        await bad


async def test_a_caller_cancelled_while_queued_is_not_written() -> None:
    writes = Writes()
    gc = committer(writes)
    first = asyncio.create_task(gc.submit(Batch("a")))
    await writes.started.wait()
    doomed = asyncio.create_task(gc.submit(Batch("b")))
    kept = [asyncio.create_task(gc.submit(Batch(k))) for k in "cd"]
    await _queued(gc, 3)
    doomed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await doomed
    writes.gate.set()
    await first
    assert await asyncio.gather(*kept) == ["group:c", "group:d"]
    assert writes.groups == [["c", "d"]]
    assert "b" not in writes.alone


async def test_groups_hold_at_most_max_group_events() -> None:
    writes = Writes()
    gc = committer(writes, max_group_events=5)
    first = asyncio.create_task(gc.submit(Batch("a")))
    await writes.started.wait()
    tasks = [asyncio.create_task(gc.submit(Batch(k, size=2))) for k in "bcdef"]
    await _queued(gc, 5)
    writes.gate.set()
    await asyncio.gather(first, *tasks)
    assert writes.groups == [["b", "c"], ["d", "e"]]  # 4 events each; "f" alone makes 2 more
    assert writes.alone == ["a", "f"]


def test_limits_must_be_positive() -> None:
    writes = Writes()
    with pytest.raises(ValueError, match="max_inflight"):
        committer(writes, max_inflight=0)
    with pytest.raises(ValueError, match="max_group_events"):
        committer(writes, max_group_events=0)


def test_fallback_is_a_single_marker() -> None:
    assert isinstance(FALLBACK, Fallback)
    assert repr(FALLBACK) == "FALLBACK"
