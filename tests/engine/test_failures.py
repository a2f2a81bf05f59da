"""F8: failed attempts, error classes, retries and the error timeline, on both backends."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest

from chem_persistence_async import (
    Artifact,
    Database,
    ErrorClass,
    ErrorRecordMismatchError,
    FlowDefinition,
    FlowEngine,
    FlowRepository,
    PgEventStore,
    RetryPolicy,
    StepContext,
    StepOutput,
    StepStatus,
    artifact_hash,
    content_hash,
    replay,
)
from tests.engine.flows import flaky_definition


def _engine(store: Any, failures: int, kind: str, **policy: Any) -> FlowEngine:
    repository = FlowRepository()
    return FlowEngine(
        store,
        repository,
        flaky_definition(failures, kind),
        retry_policy=RetryPolicy(initial_delay=0.0, **policy),
    )


async def test_transient_twice_then_success(store: Any) -> None:
    engine = _engine(store, failures=2, kind="transient")
    flow_id = await engine.run_to_end()
    assert await engine.event_codes(flow_id) == [
        "I",
        "S",
        "F",
        "S",
        "X",
        "R",
        "S",
        "X",
        "R",
        "S",
        "F",
        "S",
        "F",
        "C",
    ]
    instance = await engine.load(flow_id)
    assert instance.completed
    slot = instance.steps[1]
    assert (slot.status, slot.retry_count, slot.attempts) == (StepStatus.FINISHED, 2, 3)
    assert [e.attempt_number for e in slot.errors] == [1, 2]
    rows = await store.list_errors(flow_id)
    assert [(r.attempt_number, r.retry_count, r.max_retries, r.error_class) for r in rows] == [
        (1, 0, 3, ErrorClass.TRANSIENT),
        (2, 1, 3, ErrorClass.TRANSIENT),
    ]
    retries = [e.kind for e in await store.list(flow_id) if e.code == "R"]
    assert [r.retry_index for r in retries] == [1, 2]
    assert all(r.not_before is not None for r in retries)
    assert rows[0].details is not None
    assert set(rows[0].details) >= {"stack_trace", "input_hash", "params"}
    assert "TransientStepError" in rows[0].details["stack_trace"]
    assert rows[0].details["params"] == {"failures": 2, "kind": "transient"}
    first_output = instance.steps[0].outputs
    assert rows[0].details["input_hash"] == content_hash(list(first_output))
    assert await store.count_errors_by_flow(flow_id) == {"flaky": {"transient": 2}}


@pytest.mark.parametrize(
    ("kind", "error_class"),
    [
        ("validation", ErrorClass.VALIDATION),
        ("pydantic", ErrorClass.VALIDATION),
        ("permanent", ErrorClass.PERMANENT),
    ],
)
async def test_validation_and_permanent_failures_are_not_retried(
    store: Any, kind: str, error_class: ErrorClass
) -> None:
    engine = _engine(store, failures=1, kind=kind)
    flow_id = await engine.run_to_end()
    assert await engine.event_codes(flow_id) == ["I", "S", "F", "S", "X"]
    instance = await engine.load(flow_id)
    assert not instance.completed
    assert instance.failed
    assert instance.fingerprint is None
    assert instance.steps[1].status is StepStatus.FAILED
    (row,) = await store.list_errors(flow_id)
    assert (row.error_class, row.attempt_number, row.retry_count) == (error_class, 1, 0)
    assert await engine.run_next(flow_id) == instance  # a failed flow stays where it stopped


async def test_runtime_failures_are_retried_until_exhausted(store: Any) -> None:
    engine = _engine(store, failures=99, kind="runtime", max_retries=3)
    flow_id = await engine.run_to_end()
    codes = await engine.event_codes(flow_id)
    assert codes == ["I", "S", "F"] + ["S", "X", "R"] * 3 + ["S", "X"]
    instance = await engine.load(flow_id)
    assert instance.failed
    assert not instance.completed
    slot = instance.steps[1]
    assert (slot.status, slot.retry_count, slot.attempts) == (StepStatus.FAILED, 3, 4)
    rows = await store.get_error_timeline(flow_id, "flaky")
    assert [(r.attempt_number, r.retry_count, r.error_class) for r in rows] == [
        (n + 1, n, ErrorClass.RUNTIME) for n in range(4)
    ]
    assert [r.error_message for r in rows] == [f"attempt {n + 1} failed on purpose" for n in range(4)]


async def test_error_rows_equal_stepfailed_events_in_count_and_order(store: Any) -> None:
    engine = _engine(store, failures=3, kind="transient")
    flow_id = await engine.run_to_end()
    failed = [e for e in await store.list(flow_id) if e.code == "X"]
    rows = await store.list_errors(flow_id)
    assert [r.event_seq for r in rows] == [e.seq for e in failed]
    assert [(r.attempt_number, r.retry_count, r.max_retries, r.error_message) for r in rows] == [
        (e.kind.attempt, e.kind.retry_count, e.kind.max_retries, e.kind.error.message) for e in failed
    ]
    assert list((await engine.load(flow_id)).errors) == rows


async def test_fingerprints_of_a_flow_with_retries_match_across_backends(db: Database) -> None:
    from chem_persistence_async import InMemoryEventStore

    fingerprints = set()
    for store in (InMemoryEventStore(), PgEventStore(db)):
        engine = _engine(store, failures=2, kind="transient")
        fingerprints.add(await engine.flow_fingerprint(await engine.run_to_end()))
    assert len(fingerprints) == 1


async def test_a_tampered_error_table_is_detected_on_load(db: Database, conn: asyncpg.Connection) -> None:
    store = PgEventStore(db)
    engine = _engine(store, failures=1, kind="transient")
    flow_id = await engine.run_to_end()
    await conn.execute(
        "INSERT INTO step_execution_errors (flow_id, step_id, attempt_number, error_class) VALUES ($1, 'flaky', 9, 'runtime')",
        flow_id,
    )
    with pytest.raises(ErrorRecordMismatchError, match="disagree"):
        await engine.load(flow_id)
    assert replay(
        flow_id, await store.list(flow_id), engine.definition
    ).completed  # the events alone are fine


async def test_retry_waits_for_not_before(store: Any) -> None:
    """The engine does not re-run a step before its RetryScheduled.not_before."""
    repository = FlowRepository()
    engine = FlowEngine(
        store, repository, flaky_definition(1, "transient"), retry_policy=RetryPolicy(initial_delay=0.2)
    )
    flow_id = await engine.run_to_end()
    events = await store.list(flow_id)
    retry = next(e for e in events if e.code == "R")
    second_start = [e for e in events if e.code == "S" and e.kind.step_id == "flaky"][1]
    assert retry.kind.not_before is not None
    assert second_start.ts >= retry.kind.not_before


async def test_unknown_flow_has_no_errors(store: Any) -> None:
    flow_id = uuid.uuid4()
    assert await store.list_errors(flow_id) == []
    assert await store.get_error_timeline(flow_id) == []


class _Unstorable:
    """Builds an artifact from a value no store can hold (``Artifact.of`` refuses it in ``run``)."""

    def __init__(self, value: Any) -> None:
        self.id = "unstorable"
        self.value = value

    async def run(self, ctx: StepContext) -> StepOutput:
        return StepOutput(artifacts=(Artifact.of("reading", {"ppm": self.value}),))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "a\x00b"], ids=["nan", "infinity", "nul"])
async def test_an_unstorable_artifact_is_a_validation_failure_and_never_retried(
    store: Any, value: Any
) -> None:
    repository = FlowRepository()
    definition = FlowDefinition("unstorable", [_Unstorable(value)])
    engine = FlowEngine(store, repository, definition, retry_policy=RetryPolicy(initial_delay=0.0))
    flow_id = await engine.run_to_end()
    assert await engine.event_codes(flow_id) == ["I", "S", "X"]  # one attempt, no RetryScheduled
    instance = await engine.load(flow_id)
    assert instance.failed
    (error,) = instance.steps[0].errors
    assert error.error_class is ErrorClass.VALIDATION
    assert (error.error_message or "").startswith("$.ppm: ")  # where the bad value sits
    assert error.details is not None
    assert error.details["exception_type"] == "chem_persistence_async.errors.UnstorableValueError"


class _BadOutput:
    """Returns an artifact the store refuses: NaN in its metadata, or a payload over the limit."""

    def __init__(self, kind: str) -> None:
        self.id = "bad"
        self.params = {"kind": kind}

    async def run(self, ctx: StepContext) -> StepOutput:
        if self.params["kind"] == "nan-metadata":
            payload = {"v": 1}
            bad = Artifact(
                hash=artifact_hash("k", payload), kind="k", payload=payload, metadata={"m": float("nan")}
            )
        else:
            bad = Artifact.of("k", {"blob": "x" * 5000})
        return StepOutput(artifacts=(bad,))


@pytest.mark.parametrize("kind", ["nan-metadata", "too-large"])
async def test_an_output_the_store_refuses_fails_the_attempt_as_validation(harness: Any, kind: str) -> None:
    store = harness.event_store(max_payload_bytes=4096)
    engine = FlowEngine(store, FlowRepository(), FlowDefinition("bad", [_BadOutput(kind)]))
    flow_id = await engine.run_to_end()  # no raw exception escapes
    instance = await engine.load(flow_id)
    assert instance.failed
    assert await engine.event_codes(flow_id) == ["I", "S", "X"]  # one attempt: never retried
    (error,) = await store.list_errors(flow_id)
    assert error.error_class is ErrorClass.VALIDATION
    assert "refused" in (error.error_message or "")
