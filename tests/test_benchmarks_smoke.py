"""The quick benchmark suite runs end to end, so it cannot rot. Never asserts on timing."""

from __future__ import annotations

import json
import math
from pathlib import Path

import asyncpg
import pytest

from chem_persistence_async._bench import SuiteConfig, queue_peers, report, run_suite
from chem_persistence_async._bench import peer as peer_module
from chem_persistence_async._bench.config import QUEUE_OPERATIONS
from tests.test_benchmarks_shapes import expected_shapes

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
    "queue_enqueue": {"insert"},
    "queue_enqueue_many": {"insert_unnest"},
    "queue_claim_complete_1": {"claim_delete", "claim_move", "each"},
    "queue_claim_complete_10": {"claim_delete", "claim_move", "many", "each", "one_unit"},
    "queue_produce_consume": {"raw_claim_delete", "raw_claim_completing", "two_statements"},
    "flows_workers_1": {"run_to_end"},
    "flows_workers_2": {"run_to_end"},
    "flows_workers_4": {"run_to_end"},
}


@pytest.fixture
def no_queue_peers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The queue's peers (PgQueuer, DBOS) off, as in CI: the quick suite stays short."""
    monkeypatch.setattr(queue_peers, "PGQUEUER", None)
    monkeypatch.setattr(queue_peers, "dbos_installed", lambda: False)


def _positive(value: object) -> bool:
    return isinstance(value, float | int) and math.isfinite(value) and value > 0


def _check_spread(stats: dict[str, object], samples: int) -> None:
    assert all(_positive(stats[key]) for key in ("median", "min", "max"))
    values = stats["samples"]
    assert isinstance(values, list)
    assert len(values) == samples
    assert all(_positive(v) for v in values)


@pytest.mark.slow  # about 30 s; .ci/run also runs the quick suite itself after the tests
async def test_quick_suite_writes_every_figure(db_url: str, tmp_path: Path, no_queue_peers: None) -> None:
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
    shapes = expected_shapes(config)  # checked in test_benchmarks_shapes.py
    assert set(operations) == set(EXPECTED) | shapes
    operations = {name: op for name, op in operations.items() if name not in shapes}
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
        "queue_enqueue": config.queue_jobs,
        "queue_enqueue_many": config.queue_batch_size * config.queue_batches,
        "queue_claim_complete_1": config.claim_jobs,
        "queue_claim_complete_10": config.claim_jobs,
        "queue_produce_consume": config.produce_consume_jobs,
        "flows_workers_1": config.worker_flows,
        "flows_workers_2": config.worker_flows,
        "flows_workers_4": config.worker_flows,
    }
    for name, op in operations.items():
        assert op["items_per_sample"] == expected_items[name], name
        # Cases that start worker processes for each sample are timed once in a quick run.
        rounds = 1 if name.startswith("flows_workers_") else config.repetitions
        assert op["repetitions"] == rounds, name
        _check_spread(op["library"]["throughput"], rounds)
        keys = {base["key"] for base in op["baselines"]}
        assert EXPECTED[name] <= keys, name
        assert op["primary_baseline"] == op["baselines"][0]["key"]
        for base in op["baselines"]:
            _check_spread(base["throughput"], rounds)
            _check_spread(base["ratio"], rounds)
        assert _positive(op["ratio"]["median"])
        assert (op["meets_goal"] is None) == (op["goal"] is None)

    assert _positive(operations["replay"]["extras"]["replay_only_events_per_s"]["median"])
    for name in (
        "queue_claim_complete_1",
        "queue_claim_complete_10",
        *(f"flows_workers_{n}" for n in (1, 2, 4)),
    ):
        assert operations[name]["goal"] is not None, name

    wake = results["wake_latency"]
    for side in ("local", "remote", "raw_notify"):
        assert wake[side]["samples"] == config.wake_jobs, side
        assert all(_positive(wake[side][key]) for key in ("median_ms", "p99_ms", "min_ms", "max_ms")), side
    assert "wake-up" in report.markdown(results)
    assert [(p["name"], p["available"]) for p in results["queue_peers"]] == [
        ("pgqueuer", False),
        ("dbos", False),
    ]

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


def test_only_queue_names_every_queue_operation() -> None:
    config = SuiteConfig.full().with_options(only=("queue", "queue_enqueue"))
    assert config.only == QUEUE_OPERATIONS
    assert config.stem == "queue"  # its own results, next to the store's latest.*
    assert SuiteConfig.quick_run().with_options(only=("queue",)).stem == "partial"
    assert SuiteConfig.full().with_options(only=("queue_enqueue",)).stem == "partial"


async def test_quick_queue_peers_when_installed(db_url: str) -> None:
    pytest.importorskip("pgqueuer")
    pytest.importorskip("dbos")
    config = SuiteConfig.quick_run().with_options(only=("queue_produce_consume", "flows_workers_1"))
    results = (await run_suite(db_url, config=config, output=None, dedicated_database=False)).results

    assert [(p["name"], p["available"]) for p in results["queue_peers"]] == [
        ("pgqueuer", True),
        ("dbos", True),
    ]
    operations = {op["name"]: op for op in results["operations"]}
    pgq = operations["queue_produce_consume"]["baselines"][-1]
    assert pgq["key"] == "peer_pgqueuer"
    assert pgq["goal"] == 2.0
    dbos = operations["flows_workers_1"]["baselines"][-1]
    assert dbos["key"] == "peer_dbos"
    assert dbos["goal"] == 5.0
    assert dbos["items_per_sample"] == config.dbos_flows
    _check_spread(pgq["throughput"], config.repetitions)
    _check_spread(pgq["ratio"], config.repetitions)
    _check_spread(dbos["throughput"], 1)  # worker processes for each sample: timed once when quick
    _check_spread(dbos["ratio"], 1)
    assert "(peer) PgQueuer" in report.markdown(results)

    # PgQueuer's schema and DBOS's system database are gone afterwards.
    conn = await asyncpg.connect(db_url)
    try:
        schemas = await conn.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'pgq_bench_%'")
        databases = await conn.fetchval("SELECT count(*) FROM pg_database WHERE datname LIKE 'dbos_bench_%'")
    finally:
        await conn.close()
    assert (schemas, databases) == (0, 0)


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
