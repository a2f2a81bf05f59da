"""The records benchmark runs end to end on a tiny workload and reports every figure (not timed)."""

from __future__ import annotations

import io

from chem_persistence_async._bench.records import RecordsBenchConfig, render, run_records_bench
from chem_persistence_async._bench.runner import Progress


async def test_the_records_benchmark_reports_every_figure(db_url: str) -> None:
    cfg = RecordsBenchConfig(
        rounds=1, calls=200, raw_calls=20, flows=4, concurrent_flows=8, tasks=4, worker_flows=8
    )
    result = await run_records_bench(db_url, cfg, Progress(stream=io.StringIO()))
    log = result["log_call"]
    assert log["logger"]["median"] > 0
    assert log["raw_one_by_one"]["median"] > 0
    assert log["ratio_logger_vs_raw_one_by_one"] > 0
    records = result["records"]
    assert set(records["overhead_sequential"]) == {"with WorkflowRecords", "with a recorder writing nothing"}
    assert set(records["overhead_worker"]) == {"with WorkflowRecords"}
    table = render(result)
    assert "log_call / raw one by one" in table
    assert "time added with WorkflowRecords" in table
