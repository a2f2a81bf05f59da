"""The shapes (issue 15) run in a quick run and write their files. Never asserts on timing."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from chem_persistence_async._bench import SuiteConfig, report, run_suite
from chem_persistence_async._bench.config import SHAPE_APPEND_KINDS, SHAPES_OPERATIONS


def expected_shapes(config: SuiteConfig) -> set[str]:
    """The shape operations a run of ``config`` measures (reads only of its flow sizes)."""
    names = {f"shape_append_{kind}" for kind in SHAPE_APPEND_KINDS}
    names |= {"shape_append_many", "shape_concurrent_32", "shape_engine_step"}
    for size in config.shape_flow_sizes:
        names |= {f"shape_{read}_{size}" for read in ("list", "list_cold", "stream", "load", "load_cold")}
    return names


def _positive(value: object) -> bool:
    return isinstance(value, float | int) and math.isfinite(value) and value > 0


def test_only_shapes_names_every_shape_and_writes_shapes_files() -> None:
    assert SuiteConfig.full().with_options(only=("shapes",)).only == SHAPES_OPERATIONS
    assert SuiteConfig.full().with_options(only=("shapes",)).stem == "shapes"
    assert SuiteConfig.quick_run().with_options(only=("shapes",)).stem == "shapes-quick"
    assert SuiteConfig.full().with_options(only=("shape_list_10",)).stem == "partial"
    assert expected_shapes(SuiteConfig.full()) == set(SHAPES_OPERATIONS)


@pytest.mark.slow  # about 25 s; .ci/run runs the slow tests too
async def test_quick_shapes_run_and_write_their_files(db_url: str, tmp_path: Path) -> None:
    config = SuiteConfig.quick_run().with_options(only=("shapes",))
    result = await run_suite(db_url, config=config, output=tmp_path, dedicated_database=False)
    results = result.results

    assert result.json_path == tmp_path / "shapes-quick.json"
    assert json.loads(result.json_path.read_text()) == json.loads(json.dumps(results))
    assert result.markdown_path == tmp_path / "shapes-quick.md"
    assert "shape_append_signal" in result.markdown_path.read_text()

    operations = {op["name"]: op for op in results["operations"]}
    assert set(operations) == expected_shapes(config)
    for name, op in operations.items():
        assert op["repetitions"] == config.repetitions, name
        assert op["goal"] is not None, name  # every shape has the goal
        assert _positive(op["ratio"]["median"]), name
        for base in op["baselines"]:
            assert len(base["ratio"]["samples"]) == config.repetitions, name
            assert all(_positive(r) for r in base["ratio"]["samples"]), name
    size = config.shape_flow_sizes[-1]
    cold = operations[f"shape_list_cold_{size}"]
    reads = min(config.shape_cold_reads, max(1, config.shape_read_events // size))
    assert cold["items_per_sample"] == size * reads
    load = {base["key"] for base in operations[f"shape_load_{size}"]["baselines"]}
    assert {"fetch_json_loads", "load_statement"} <= load
    assert operations["shape_concurrent_32"]["goal"] == 3.0
    assert operations["shape_engine_step"]["unit"] == "steps/s"
    assert "shape_engine_step" in report.markdown(results)
