"""FlowEngine on both backends: the demo, parity, fingerprints, resuming and concurrent engines."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from chem_persistence_async import (
    Database,
    DefinitionMismatchError,
    FlowEngine,
    FlowNotFoundError,
    FlowRepository,
    InMemoryEventStore,
    InMemoryFlowRepository,
    PgEventStore,
    PgFlowRepository,
    StepStatus,
    demo_definition,
)
from tests.engine.flows import Produce, flaky_definition

ROOT = Path(__file__).resolve().parents[2]


def _engine(store: Any, definition: Any = None) -> FlowEngine:
    return FlowEngine(store, FlowRepository(), definition or demo_definition())


async def test_demo_runs_to_the_end_with_the_documented_events(store: Any) -> None:
    engine = _engine(store)
    flow_id = await engine.run_to_end()
    assert await engine.event_variants(flow_id) == ["I", "S", "F", "C"]
    assert await engine.event_codes(flow_id) == ["I"] + ["S", "F"] * 4 + ["C"]
    instance = await engine.load(flow_id)
    assert instance.completed
    assert instance.cursor == 4
    assert [s.status for s in instance.steps] == [StepStatus.FINISHED] * 4
    summary_hash = instance.steps[-1].outputs[0]
    summary = (await store.get_artifacts([summary_hash]))[summary_hash]
    assert summary.payload == {"count": 10, "sum": 55}
    split = await store.get_artifacts(instance.steps[1].outputs)
    assert sorted(a.payload["parity"] for a in split.values()) == ["even", "odd"]
    assert instance.steps[2].outputs == instance.steps[1].outputs  # forwarded unchanged


async def test_fingerprint_is_the_same_on_every_backend_and_every_run(db: Database) -> None:
    fingerprints = set()
    for store, repository in (
        (InMemoryEventStore(), InMemoryFlowRepository()),
        (PgEventStore(db), PgFlowRepository()),
        (PgEventStore(db), PgFlowRepository()),
    ):
        engine = FlowEngine(store, repository, demo_definition())
        fingerprints.add(await engine.flow_fingerprint(await engine.run_to_end()))
    assert len(fingerprints) == 1
    assert None not in fingerprints
    other = FlowEngine(InMemoryEventStore(), InMemoryFlowRepository(), demo_definition(count=11))
    assert await other.flow_fingerprint(await other.run_to_end()) not in fingerprints


async def test_database_replay_equals_memory_replay(db: Database) -> None:
    """The same events in both stores replay to equal FlowInstances, failures included."""
    memory = InMemoryEventStore()
    definition = flaky_definition(failures=2)
    engine = FlowEngine(memory, InMemoryFlowRepository(), definition, retry_policy=_fast())
    flow_id = await engine.run_to_end()
    pg = PgEventStore(db)
    for event in await memory.list(flow_id):
        outputs = getattr(event.kind, "outputs", ())
        artifacts = (await memory.get_artifacts(outputs)).values()
        await pg.append_kind(
            flow_id, event.kind, artifacts=artifacts, expected_version=event.flow_version - 1
        )
    from_pg = await PgFlowRepository().load(pg, flow_id, definition)
    from_memory = await InMemoryFlowRepository().load(memory, flow_id, definition)
    assert _without_time(from_pg) == _without_time(from_memory)
    assert from_pg.steps[1].retry_count == 2
    assert len(from_pg.steps[1].errors) == 2


def _fast() -> Any:
    from chem_persistence_async import RetryPolicy

    return RetryPolicy(initial_delay=0.0)


def _without_time(instance: Any) -> Any:
    steps = [
        (
            s.step_id,
            s.status,
            s.outputs,
            s.fingerprint,
            s.retry_count,
            s.attempts,
            [
                (e.step_id, e.attempt_number, e.error_class, e.error_message, e.details, e.retry_count)
                for e in s.errors
            ],
        )
        for s in instance.steps
    ]
    return (
        instance.flow_id,
        instance.completed,
        instance.cursor,
        instance.fingerprint,
        instance.version,
        steps,
    )


async def test_run_next_does_one_thing_at_a_time(store: Any) -> None:
    engine = _engine(store)
    flow_id = await engine.start()
    assert await engine.event_codes(flow_id) == ["I"]
    instance = await engine.run_next(flow_id)
    assert await engine.event_codes(flow_id) == ["I", "S", "F"]
    assert instance.cursor == 1
    assert instance.steps[0].status is StepStatus.FINISHED
    for _ in range(3):
        instance = await engine.run_next(flow_id)
    assert not instance.completed
    assert instance.cursor == 4
    instance = await engine.run_next(flow_id)
    assert instance.completed
    assert instance.fingerprint is not None
    again = await engine.run_next(flow_id)
    assert again == instance
    assert (await engine.event_codes(flow_id))[-1] == "C"


async def test_unknown_flow_and_wrong_definition_are_refused(store: Any) -> None:
    engine = _engine(store)
    with pytest.raises(FlowNotFoundError):
        await engine.run_next(uuid.uuid4())
    flow_id = await engine.run_to_end()
    other = _engine(store, demo_definition(count=3))
    with pytest.raises(DefinitionMismatchError):
        await other.load(flow_id)


async def test_two_engines_on_one_flow_never_commit_a_step_twice(store: Any) -> None:
    first, second = _engine(store), _engine(store)
    flow_id = await first.start()
    await asyncio.gather(first.run_to_end(flow_id), second.run_to_end(flow_id))
    events = await store.list(flow_id)
    assert [e.flow_version for e in events] == list(range(1, len(events) + 1))
    finished = [e.kind.step_id for e in events if e.code == "F"]
    assert finished == ["seed", "split", "forward", "print_and_count"]
    assert [e.code for e in events].count("C") == 1
    assert (await first.load(flow_id)).completed


RESUME_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from chem_persistence_async import Database, FlowEngine, PgEventStore, PgFlowRepository, RetryPolicy
    from tests.engine.flows import flaky_definition

    async def main(url, flow_id, steps):
        async with Database.connect(url, min_connections=1, max_connections=2) as db:
            engine = FlowEngine(PgEventStore(db), PgFlowRepository(), flaky_definition(failures=2),
                                retry_policy=RetryPolicy(initial_delay=0.0))
            if steps == "all":
                await engine.run_to_end(flow_id)
            else:
                for _ in range(int(steps)):
                    await engine.run_next(flow_id)
            print(",".join(await engine.event_codes(flow_id)))

    asyncio.run(main(*sys.argv[1:]))
    """
)


def run_in_new_process(db_url: str, flow_id: uuid.UUID, steps: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", RESUME_SCRIPT, db_url, str(flow_id), steps],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


async def test_a_flow_started_in_one_process_is_finished_by_another(db: Database, db_url: str) -> None:
    """Process A runs the first step and one failed attempt, then exits; process B resumes it."""
    engine = FlowEngine(
        PgEventStore(db), PgFlowRepository(), flaky_definition(failures=2), retry_policy=_fast()
    )
    flow_id = await engine.start()
    assert await asyncio.to_thread(run_in_new_process, db_url, flow_id, "2") == "I,S,F,S,X,R"
    codes = await asyncio.to_thread(run_in_new_process, db_url, flow_id, "all")
    assert codes == "I,S,F,S,X,R,S,X,R,S,F,S,F,C"
    instance = await engine.load(flow_id)
    assert instance.completed
    timeline = await PgEventStore(db).get_error_timeline(flow_id)
    assert [(e.step_id, e.attempt_number, e.retry_count) for e in timeline] == [
        ("flaky", 1, 0),
        ("flaky", 2, 1),
    ]


async def test_a_crashed_attempt_is_counted_and_the_step_runs_again(store: Any) -> None:
    """A StepStarted with no outcome (the worker died) is followed by a new attempt, not lost."""
    from chem_persistence_async import StepStarted

    definition = FlowDefinition_with_two_steps()
    engine = _engine(store, definition)
    flow_id = await engine.start()
    await store.append_kind(flow_id, StepStarted(step_index=0, step_id="a", attempt=1), expected_version=1)
    assert (await engine.load(flow_id)).steps[0].status is StepStatus.RUNNING
    await engine.run_to_end(flow_id)
    starts = [e.kind.attempt for e in await store.list(flow_id) if e.code == "S" and e.kind.step_id == "a"]
    assert starts == [1, 2]
    assert (await engine.load(flow_id)).steps[0].attempts == 2


def FlowDefinition_with_two_steps() -> Any:
    from chem_persistence_async import FlowDefinition

    return FlowDefinition("two", [Produce("a"), Produce("b")])


async def test_what_run_next_returns_equals_a_fresh_load(store: Any) -> None:
    """The engine applies the events it appended instead of reading them back: same state exactly."""
    from chem_persistence_async import FlowDefinition, RetryPolicy
    from tests.engine.flows import FailUntil, Signal

    definition = FlowDefinition(
        "folded", [Produce("a"), Signal("signal"), FailUntil("flaky", {"failures": 2, "kind": "transient"})]
    )
    engine = FlowEngine(store, FlowRepository(), definition, retry_policy=RetryPolicy(initial_delay=0.0))
    flow_id = await engine.start()
    returned = []
    while not (instance := await engine.run_next(flow_id)).completed:
        returned.append(instance)
        assert instance == await engine.load(flow_id)
    assert instance == await engine.load(flow_id)
    assert len(returned) == 5  # a, signal, flaky failing twice then passing; FlowCompleted ends the loop
    assert instance.signals == (("signal", "progress", {"a": [0.5], "b": 1, "big": 100000000000000000000}),)
    assert [len(s.errors) for s in instance.steps] == [0, 0, 2]
