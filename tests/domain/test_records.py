"""The pure parts of the records: vocabulary, checks, merge rules, the projection. No database."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from chem_persistence_async import (
    AICall,
    ArtifactType,
    DefinitionError,
    FlowEngine,
    FlowRepository,
    InMemoryEventStore,
    LogLevel,
    RetryPolicy,
    Status,
    UnknownStatusError,
    project_flow,
    replay,
)
from chem_persistence_async.domain.ai_calls import check_call, check_cost
from chem_persistence_async.domain.definitions import DefinitionRecord
from chem_persistence_async.domain.frozen import freeze
from chem_persistence_async.domain.projection import definition_from_record
from chem_persistence_async.domain.records import (
    UNSET,
    check_enum,
    check_status,
    duration_ms,
    merged_times,
    run_changes,
)
from tests.engine.flows import flaky_definition

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def test_enums_take_their_values_in_any_case_and_nothing_else() -> None:
    assert check_status("failed") is Status.FAILED
    assert check_status(Status.SKIPPED) is Status.SKIPPED
    assert check_enum(LogLevel, "Warn", "level") is LogLevel.WARN
    assert check_enum(ArtifactType, "stage_output", "type") is ArtifactType.STAGE_OUTPUT
    for bad in ["DONE", "", None, 3, "COMPLETED "]:
        with pytest.raises(UnknownStatusError) as caught:
            check_status(bad)
        assert "PENDING, RUNNING, SUSPENDED, COMPLETED, FAILED, CANCELLED, SKIPPED" in str(caught.value)
    assert [s.value for s in Status] == [
        "PENDING",
        "RUNNING",
        "SUSPENDED",
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "SKIPPED",
    ]


def test_unset_fields_are_left_out_and_none_is_kept() -> None:
    changes = run_changes({"status": UNSET, "output": None, "total_tokens": 3})
    assert changes == {"output": None, "total_tokens": 3}


def test_durations_are_whole_milliseconds_floored() -> None:
    assert duration_ms(T0, T0 + timedelta(microseconds=1999)) == 1
    assert duration_ms(T0, T0) == 0
    assert duration_ms(T0, T0 - timedelta(microseconds=1)) is None  # an end before the start: none
    assert duration_ms(None, T0) is None
    assert duration_ms(T0, None) is None


def test_merge_rules_keep_the_first_start_and_the_terminal_time() -> None:
    t1, t2, t3 = T0, T0 + timedelta(seconds=1), T0 + timedelta(seconds=3)
    # a start seen earlier stays; this batch's later start does not replace it
    assert merged_times(Status.RUNNING, t1, None, t2, None, replace=False) == (t1, None, None)
    # finished in this batch: the completion is its time
    assert merged_times(Status.COMPLETED, t1, None, None, t3, replace=False) == (t1, t3, 3000)
    # a later batch without times keeps a terminal row's completion
    assert merged_times(Status.COMPLETED, t1, t3, None, None, replace=False) == (t1, t3, 3000)
    # back to pending (a retry): no completion
    assert merged_times(Status.PENDING, t1, t3, None, None, replace=False) == (t1, None, None)
    # a projection of the whole log replaces everything
    assert merged_times(Status.COMPLETED, t1, t3, t2, t3, replace=True) == (t2, t3, 2000)
    assert merged_times(Status.COMPLETED, t1, t3, None, None, replace=True) == (None, None, None)


async def test_the_projection_of_all_events_equals_the_merge_of_its_batches() -> None:
    """What the engine records append by append (merge) equals what a rebuild computes at once."""
    store = InMemoryEventStore()
    definition = flaky_definition(failures=1)
    engine = FlowEngine(store, FlowRepository(), definition, retry_policy=RetryPolicy(initial_delay=0.0))
    fid = await engine.run_to_end()
    events = await store.list(fid)
    whole = project_flow(replay(fid, events, definition), definition, events)
    started = {s.stage_id: s.started_at for s in whole.stages}
    completed = {s.stage_id: s.completed_at for s in whole.stages}
    run_started, run_completed = None, None
    for cut in range(1, len(events) + 1):
        batch = events[cut - 1 : cut]
        part = project_flow(replay(fid, events[:cut], definition), definition, batch)
        assert part.run.previous_version == cut - 1
        run_started, run_completed, _ = merged_times(
            part.run.status,
            run_started,
            run_completed,
            part.run.started_at,
            part.run.completed_at,
            replace=False,
        )
    assert (run_started, run_completed) == (whole.run.started_at, whole.run.completed_at)
    assert whole.run.status is Status.COMPLETED
    assert all(s.touched for s in whole.stages)
    assert [s.status for s in whole.stages] == [Status.COMPLETED] * 3
    assert started["flaky"] == next(e.ts for e in events if getattr(e.kind, "step_id", "") == "flaky")
    assert completed["last"] == events[-1].ts


def test_a_definition_rebuilt_from_its_record_has_its_hash_and_cannot_run() -> None:
    definition = flaky_definition(failures=3, kind="runtime")
    record = DefinitionRecord(definition.name, definition.hash, definition.describe(), T0)
    shadow = definition_from_record(record)
    assert (shadow.name, shadow.hash, shadow.step_ids) == (
        definition.name,
        definition.hash,
        definition.step_ids,
    )
    forged = DefinitionRecord(definition.name, "0" * 64, definition.describe(), T0)
    with pytest.raises(DefinitionError):
        definition_from_record(forged)


def test_costs_are_the_decimals_written() -> None:
    assert check_cost(0.1) == Decimal("0.1")
    assert check_cost(3) == Decimal(3)
    assert check_cost(Decimal("1.000")) == Decimal("1.000")
    call = AICall("t", "c", "m", "mid", "p", "r", 1, 2, 0.25, {"k": [1]})
    checked = check_call(call)
    assert (checked.cost, checked.metadata, checked.batch_id) == (Decimal("0.25"), b'{"k":[1]}', None)
    assert check_call(call).id != checked.id  # each logged call has an id of its own
    assert isinstance(checked.id, uuid.UUID)


async def test_a_kept_flows_input_is_made_json_once_and_a_plain_one_every_time() -> None:
    """The run's input JSON of an engine's kept flow (frozen inputs, carried by identity) is made
    once; equal inputs in another object, or a plain dict, are made again and equal it."""
    store = InMemoryEventStore()
    definition = flaky_definition(failures=0)
    engine = FlowEngine(store, FlowRepository(), definition)
    inputs = {"doc": [{"id": i, "text": "x" * 40} for i in range(50)]}
    fid = await engine.start(inputs=inputs)
    events = await store.list(fid)
    replayed = replay(fid, events, definition)
    frozen_instance = replace(replayed, inputs=freeze(dict(replayed.inputs)))
    first = project_flow(frozen_instance, definition, events[-1:])
    again = project_flow(replace(frozen_instance, version=frozen_instance.version), definition, events[-1:])
    assert again.run.input is first.run.input  # the same object: not made again
    other = project_flow(replace(frozen_instance, inputs=freeze(dict(inputs))), definition, events[-1:])
    plain = project_flow(replay(fid, events, definition), definition, events[-1:])
    assert other.run.input is not first.run.input
    assert plain.run.input is not first.run.input
    assert other.run.input == plain.run.input == first.run.input
    assert first.run.input.value == inputs
