"""The instruction-count benchmark: each workload's two variants do the same database work, the
counts are read and diffed as documented, and (slow) a real callgrind pair gives a count."""

from __future__ import annotations

import shutil

import asyncpg
import pytest

from chem_persistence_async._bench import instructions as ins


async def _events(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM event_log"))
    finally:
        await conn.close()


@pytest.mark.parametrize("name", ["append_started", "append_signal"])
async def test_an_append_workload_writes_one_event_per_operation_on_both_sides(
    db_url: str, name: str
) -> None:
    workload = ins.WORKLOADS[name]
    for run in (workload.library, workload.raw):
        before = await _events(db_url)
        assert await run(db_url, 2, 6) == ins.WARM + 2
        assert await _events(db_url) - before == ins.WARM + 2


async def test_the_engine_step_workload_writes_two_events_per_step_on_both_sides(db_url: str) -> None:
    workload = ins.WORKLOADS["engine_step"]
    flows = ins._flows_for(6)
    before = await _events(db_url)
    assert await workload.library(db_url, 2, 6) == ins.WARM + 2
    assert await _events(db_url) - before == flows + 2 * (ins.WARM + 2)  # each flow's FlowInitialized first
    before = await _events(db_url)
    assert await workload.raw(db_url, 2, 6) == ins.WARM + 2
    assert await _events(db_url) - before == 2 * (ins.WARM + 2)


@pytest.mark.parametrize("name", ["list_10", "list_100"])
async def test_a_list_workload_reads_the_whole_flow_on_both_sides(db_url: str, name: str) -> None:
    workload = ins.WORKLOADS[name]
    for run in (workload.library, workload.raw):
        assert await run(db_url, 1, 3) == ins.WARM + 1  # (whole flows read: the count divides exactly)


def test_counts_are_read_from_callgrind_and_diffed_per_operation() -> None:
    assert ins.collected("==12== Events    : Ir\n==12== Collected : 123456789\n==12==\n") == 123456789
    with pytest.raises(RuntimeError, match="no instruction count"):
        ins.collected("valgrind: command not found")
    assert ins.per_operation(1_000, 7_000, 100) == 30.0
    with pytest.raises(RuntimeError, match="3n operations counted"):
        ins.per_operation(7_000, 7_000, 100)


def test_an_unknown_workload_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        ins.main(["append_everything"])
    assert "unknown workload(s) append_everything" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("valgrind") is None, reason="needs valgrind")
async def test_a_callgrind_pair_counts_the_operations(db_url: str) -> None:
    per_list = await ins.measure("list_10", "raw", 5, db_url)
    assert 10_000 < per_list < 10_000_000  # a fetch of 10 rows and their decoding: not nothing, not a run
