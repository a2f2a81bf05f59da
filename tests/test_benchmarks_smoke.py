"""The quick benchmark suite runs end to end, so it cannot rot. Never asserts on timing."""

from __future__ import annotations

import json
import math
from pathlib import Path

import asyncpg
import pytest

from chem_persistence_async._bench import SuiteConfig, report, run_suite
from chem_persistence_async._bench import peer as peer_module

EXPECTED = {
    "single_append": {"autocommit_insert", "begin_insert_commit", "group_commit_off"},
    "append_with_artifacts": {"cte_statement", "two_statements_tx"},
    "append_many": {"copy", "executemany"},
    "list": {"fetch_json_loads", "fetch_only"},
    "stream": {"fetch_json_loads", "pages_json_loads", "fetch_only"},
    "replay": {"fetch_json_loads"},
    "concurrent_8": {"raw_pool", "group_commit_off"},
    "concurrent_32": {"raw_pool", "group_commit_off"},
    "demo_flow": {"raw_writes_and_reads", "raw_writes_only"},
}


def _positive(value: object) -> bool:
    return isinstance(value, float | int) and math.isfinite(value) and value > 0


def _check_spread(stats: dict[str, object], samples: int) -> None:
    assert all(_positive(stats[key]) for key in ("median", "min", "max"))
    values = stats["samples"]
    assert isinstance(values, list)
    assert len(values) == samples
    assert all(_positive(v) for v in values)


async def test_quick_suite_writes_every_figure(db_url: str, tmp_path: Path) -> None:
    config = SuiteConfig.quick_run()
    result = await run_suite(db_url, config=config, output=tmp_path, dedicated_database=False)
    results = result.results

    assert result.json_path == tmp_path / "quick.json"
    assert json.loads(result.json_path.read_text()) == json.loads(json.dumps(results))
    assert result.markdown_path is not None
    assert result.markdown_path.exists()
    assert results["quick"] is True
    assert results["config"]["repetitions"] == config.repetitions

    operations = {op["name"]: op for op in results["operations"]}
    assert set(operations) == set(EXPECTED)
    expected_items = {
        "single_append": config.single_appends,
        "append_with_artifacts": config.artifact_appends,
        "append_many": config.batch_size * config.batches,
        "list": config.read_events,
        "stream": config.read_events,
        "replay": config.read_events,
        "concurrent_8": config.concurrent_events,
        "concurrent_32": config.concurrent_events,
        "demo_flow": config.demo_flows,
    }
    for name, op in operations.items():
        assert op["items_per_sample"] == expected_items[name], name
        assert op["repetitions"] == config.repetitions
        _check_spread(op["library"]["throughput"], config.repetitions)
        keys = {base["key"] for base in op["baselines"]}
        assert EXPECTED[name] <= keys, name
        assert op["primary_baseline"] == op["baselines"][0]["key"]
        for base in op["baselines"]:
            _check_spread(base["throughput"], config.repetitions)
            _check_spread(base["ratio"], config.repetitions)
        assert _positive(op["ratio"]["median"])
        assert (op["meets_goal"] is None) == (op["goal"] is None)

    assert _positive(operations["replay"]["extras"]["replay_only_events_per_s"]["median"])

    memory = results["memory"]
    assert [(m["mode"], m["events"]) for m in memory] == [
        ("stream", config.read_events),
        ("stream", config.rss_events),
        ("list", config.read_events),
    ]
    assert all(_positive(m["peak_rss_mib"]) for m in memory)

    counts = results["counts"]
    assert counts["read_flow_rows"] == config.read_events
    assert counts["big_flow_rows"] == config.rss_events

    # 32 tasks started together: two writers in flight, the rest leave in groups.
    group_commit = results["group_commit"]
    assert group_commit["groups"] > 0
    assert group_commit["largest_group"] >= 2
    assert group_commit["failed_groups"] == 0


async def test_only_runs_the_named_operations_and_refuses_unknown_ones(db_url: str) -> None:
    config = SuiteConfig.quick_run().with_options(only=("list",))
    assert config.stem == "partial"
    assert config.memory is False
    results = (await run_suite(db_url, config=config, output=None, dedicated_database=False)).results
    assert [op["name"] for op in results["operations"]] == ["list"]
    # Refused while the configuration is built, before any database work, with the valid names.
    with pytest.raises(
        ValueError, match=r"unknown benchmark operation\(s\): lsit; valid: single_append, .*list"
    ):
        SuiteConfig.quick_run().with_options(only=("lsit",))


PEER_ROWS = {
    "single_append": "peer_insert_events",
    "append_many": "peer_insert_events",
    "list": "peer_select_events",
    "replay": "peer_repository_get",
}


async def test_quick_suite_includes_the_peer_when_installed(db_url: str, tmp_path: Path) -> None:
    pytest.importorskip("eventsourcing")
    config = SuiteConfig.quick_run().with_options(only=tuple(PEER_ROWS))
    results = (await run_suite(db_url, config=config, output=None, dedicated_database=False)).results

    assert results["peer"]["available"] is True
    assert results["peer"]["version"]
    operations = {op["name"]: op for op in results["operations"]}
    assert set(operations) == set(PEER_ROWS)
    for name, key in PEER_ROWS.items():
        op = operations[name]
        baselines = [base["key"] for base in op["baselines"]]
        assert baselines[-1] == key, name
        assert op["primary_baseline"] != key, name
        peer = op["baselines"][-1]
        assert peer["label"].startswith("(peer) eventsourcing"), name
        _check_spread(peer["throughput"], config.repetitions)
        _check_spread(peer["ratio"], config.repetitions)
    assert "(peer) eventsourcing" in report.markdown(results)

    # The peer's schema (its table, type and function) is gone afterwards.
    conn = await asyncpg.connect(db_url)
    try:
        left = await conn.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'es_bench_%'")
    finally:
        await conn.close()
    assert left == 0


async def test_quick_suite_without_the_peer_reports_it_skipped(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(peer_module, "AVAILABLE", False)
    config = SuiteConfig.quick_run().with_options(only=("single_append", "list"))
    results = (await run_suite(db_url, config=config, output=None, dedicated_database=False)).results

    assert results["peer"] == {"name": "eventsourcing", "available": False, "skipped": peer_module.SKIPPED}
    for op in results["operations"]:
        assert not any(base["key"].startswith("peer_") for base in op["baselines"]), op["name"]
    assert "skipped" in report.console(results)
