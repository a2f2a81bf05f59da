"""Replay (SPEC section 5): one pure function, events (+ definition) -> FlowInstance."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chem_persistence_async.domain.events import (
    FlowCompleted,
    FlowEvent,
    FlowInitialized,
    PropertyPreferenceAssigned,
    RetryScheduled,
    StepFailed,
    StepFinished,
    StepSignal,
    StepStarted,
    StepSuspended,
)
from chem_persistence_async.domain.failures import ErrorClass, StepErrorInfo
from chem_persistence_async.domain.fingerprints import (
    failure_fingerprint,
    flow_fingerprint,
    step_fingerprint,
)
from chem_persistence_async.domain.flow import FlowDefinition, StepSlot, StepStatus
from chem_persistence_async.errors import DefinitionMismatchError, ReplayError
from chem_persistence_async.replay import apply_events, initial_instance, replay

T0 = datetime(2024, 1, 1, tzinfo=UTC)
OUT_A = "a" * 64
OUT_B = "b" * 64


@dataclass(frozen=True)
class S:
    id: str

    async def run(self, ctx: object) -> None:
        """Never called: replay only reads a definition's ids (a definition's steps must be runnable)."""


DEFINITION = FlowDefinition("three", [S("seed"), S("split"), S("count")])
OTHER = FlowDefinition("three", [S("seed"), S("split"), S("other")])


class Log:
    """Builds a flow's events by hand: gap-free versions, increasing seq and ts."""

    def __init__(self, definition: FlowDefinition = DEFINITION, seq_start: int = 100) -> None:
        self.definition = definition
        self.flow_id = uuid.uuid4()
        self.events: list[FlowEvent] = []
        self._seq = seq_start
        self.fps: list[str] = []

    def add(self, kind: Any) -> Log:
        version = len(self.events) + 1
        self._seq += 7  # seq is global: gaps between one flow's events are normal
        self.events.append(
            FlowEvent(
                seq=self._seq,
                flow_id=self.flow_id,
                flow_version=version,
                ts=T0 + timedelta(seconds=version),
                kind=kind,
                event_id=uuid.uuid4(),
            )
        )
        return self

    def init(self, definition: FlowDefinition | None = None) -> Log:
        d = definition or self.definition
        return self.add(
            FlowInitialized(definition_name=d.name, definition_hash=d.hash, step_count=len(d.steps))
        )

    def started(self, index: int, attempt: int = 1, step_id: str | None = None) -> Log:
        sid = step_id or self.definition.step_ids[index]
        return self.add(StepStarted(step_index=index, step_id=sid, attempt=attempt))

    def finished(self, index: int, outputs: tuple[str, ...] = (), step_id: str | None = None) -> Log:
        sid = step_id or self.definition.step_ids[index]
        previous = self.fps[-1] if self.fps else self.definition.hash
        fp = step_fingerprint(previous, sid, outputs)
        self.fps.append(fp)
        return self.add(StepFinished(step_index=index, step_id=sid, outputs=outputs, fingerprint=fp))

    def failed(
        self,
        index: int,
        attempt: int,
        retry_count: int,
        error_class: ErrorClass = ErrorClass.TRANSIENT,
        message: str | None = None,
        max_retries: int = 3,
    ) -> Log:
        sid = self.definition.step_ids[index]
        return self.add(
            StepFailed(
                step_index=index,
                step_id=sid,
                attempt=attempt,
                error=StepErrorInfo(
                    error_class=error_class,
                    message=message or f"attempt {attempt} failed",
                    details={"stack_trace": "tb", "input_hash": OUT_A, "params": {}},
                ),
                retry_count=retry_count,
                max_retries=max_retries,
                fingerprint=failure_fingerprint(self.definition.hash, sid, attempt, error_class.value),
            )
        )

    def retry(self, index: int, retry_index: int, not_before: datetime | None = None) -> Log:
        sid = self.definition.step_ids[index]
        return self.add(
            RetryScheduled(
                step_index=index,
                step_id=sid,
                retry_index=retry_index,
                reason="transient",
                not_before=not_before,
            )
        )

    def completed(self) -> Log:
        return self.add(FlowCompleted(flow_fingerprint=flow_fingerprint(self.definition.hash, self.fps)))

    def replay(self, definition: FlowDefinition | None = None) -> Any:
        return replay(self.flow_id, self.events, definition or self.definition)


def full_run() -> Log:
    log = Log().init()
    log.started(0).finished(0, (OUT_A,))
    log.started(1).finished(1, (OUT_A, OUT_B))
    log.started(2).finished(2, ())
    return log.completed()


# --- statuses -----------------------------------------------------------------------------------------


def test_no_events_is_an_untouched_flow() -> None:
    flow_id = uuid.uuid4()
    instance = replay(flow_id, [], DEFINITION)
    assert instance.flow_id == flow_id
    assert instance.version == 0
    assert instance.cursor == 0
    assert not instance.completed
    assert instance.fingerprint is None
    assert [s.status for s in instance.steps] == [StepStatus.PENDING] * 3


def test_initialized_flow_is_all_pending() -> None:
    log = Log().init()
    instance = log.replay()
    assert instance.flow_id == log.flow_id
    assert instance.definition_hash == DEFINITION.hash
    assert [s.step_id for s in instance.steps] == ["seed", "split", "count"]
    assert all(s.status is StepStatus.PENDING for s in instance.steps)
    assert instance.cursor == 0
    assert instance.version == 1
    assert not instance.completed
    assert not instance.failed


def test_started_step_is_running() -> None:
    instance = Log().init().started(0).replay()
    assert instance.steps[0].status is StepStatus.RUNNING
    assert instance.steps[0].attempts == 1
    assert instance.steps[1].status is StepStatus.PENDING
    assert instance.cursor == 0
    assert instance.version == 2


def test_finished_step_has_outputs_and_fingerprint_and_moves_the_cursor() -> None:
    log = Log().init().started(0).finished(0, (OUT_A, OUT_B))
    instance = log.replay()
    slot = instance.steps[0]
    assert slot.status is StepStatus.FINISHED
    assert slot.outputs == (OUT_A, OUT_B)
    assert slot.fingerprint == log.fps[0]
    assert slot.errors == ()
    assert slot.retry_count == 0
    assert instance.cursor == 1
    assert instance.version == 3
    assert not instance.completed


def test_cursor_is_the_first_unfinished_step() -> None:
    log = Log().init().started(0).finished(0).started(1).finished(1)
    assert log.replay().cursor == 2
    log.started(2)
    assert log.replay().cursor == 2


def test_completed_flow() -> None:
    log = full_run()
    instance = log.replay()
    assert instance.completed
    assert not instance.failed
    assert instance.cursor == 3
    assert instance.version == len(log.events) == 8
    assert instance.fingerprint == flow_fingerprint(DEFINITION.hash, log.fps)
    assert [s.status for s in instance.steps] == [StepStatus.FINISHED] * 3
    assert [s.fingerprint for s in instance.steps] == log.fps
    assert [s.outputs for s in instance.steps] == [(OUT_A,), (OUT_A, OUT_B), ()]


def test_fingerprint_is_none_until_completed() -> None:
    log = Log().init().started(0).finished(0).started(1).finished(1).started(2).finished(2)
    instance = log.replay()
    assert instance.cursor == 3
    assert not instance.completed
    assert instance.fingerprint is None


# --- failures and retries ----------------------------------------------------------------------------


def test_failure_followed_by_retry_is_pending() -> None:
    not_before = T0 + timedelta(minutes=5)
    log = Log().init().started(0).finished(0).started(1).failed(1, attempt=1, retry_count=0)
    log.retry(1, retry_index=1, not_before=not_before)
    instance = log.replay()
    slot = instance.steps[1]
    assert slot.status is StepStatus.PENDING
    assert slot.retry_count == 1
    assert slot.not_before == not_before
    assert len(slot.errors) == 1
    assert slot.errors[0].attempt_number == 1
    assert not instance.failed
    assert instance.cursor == 1


def test_failure_without_retry_fails_the_slot_and_the_flow() -> None:
    log = Log().init().started(0).failed(0, attempt=1, retry_count=0, error_class=ErrorClass.PERMANENT)
    instance = log.replay()
    slot = instance.steps[0]
    assert slot.status is StepStatus.FAILED
    assert instance.failed
    assert not instance.completed
    assert instance.cursor == 0
    assert slot.retry_count == 0
    assert [e.error_class for e in slot.errors] == [ErrorClass.PERMANENT]


def test_retries_then_success_keep_errors_in_attempt_order() -> None:
    log = Log().init().started(0)
    log.failed(0, attempt=1, retry_count=0, message="first").retry(0, 1)
    log.started(0, attempt=2).failed(
        0, attempt=2, retry_count=1, error_class=ErrorClass.RUNTIME, message="second"
    )
    log.retry(0, 2)
    log.started(0, attempt=3).finished(0, (OUT_A,))
    instance = log.replay()
    slot = instance.steps[0]
    assert slot.status is StepStatus.FINISHED
    assert slot.retry_count == 2
    assert slot.attempts == 3
    assert slot.not_before is None
    assert [e.attempt_number for e in slot.errors] == [1, 2]
    assert [e.error_message for e in slot.errors] == ["first", "second"]
    assert [e.error_class for e in slot.errors] == [ErrorClass.TRANSIENT, ErrorClass.RUNTIME]
    assert [e.retry_count for e in slot.errors] == [0, 1]
    assert instance.cursor == 1
    assert not instance.failed


def test_error_records_copy_the_event() -> None:
    log = Log().init().started(0).failed(0, attempt=1, retry_count=0, max_retries=5, message="boom")
    failed_event = log.events[-1]
    (error,) = log.replay().steps[0].errors
    assert error.flow_id == log.flow_id
    assert error.step_id == "seed"
    assert error.attempt_number == 1
    assert error.error_class is ErrorClass.TRANSIENT
    assert error.error_message == "boom"
    assert error.details == {"stack_trace": "tb", "input_hash": OUT_A, "params": {}}
    assert error.retry_count == 0
    assert error.max_retries == 5
    assert error.ts == failed_event.ts
    assert error.event_seq == failed_event.seq


def test_retries_exhausted_leave_the_slot_failed() -> None:
    log = Log().init().started(0)
    for attempt in (1, 2, 3):
        log.failed(0, attempt=attempt, retry_count=attempt - 1).retry(0, attempt).started(
            0, attempt=attempt + 1
        )
    log.failed(0, attempt=4, retry_count=3)
    instance = log.replay()
    slot = instance.steps[0]
    assert slot.status is StepStatus.FAILED
    assert slot.retry_count == 3
    assert slot.attempts == 4
    assert [e.attempt_number for e in slot.errors] == [1, 2, 3, 4]
    assert instance.failed
    assert [e.attempt_number for e in instance.errors] == [1, 2, 3, 4]


def test_flow_errors_are_in_event_order_across_steps() -> None:
    log = Log().init().started(0).failed(0, 1, 0).retry(0, 1).started(0, 2).finished(0)
    log.started(1).failed(1, 1, 0).retry(1, 1).started(1, 2).finished(1)
    errors = log.replay().errors
    assert [(e.step_id, e.attempt_number) for e in errors] == [("seed", 1), ("split", 1)]
    assert errors[0].event_seq is not None
    assert errors[1].event_seq is not None
    assert errors[0].event_seq < errors[1].event_seq


# --- other kinds ---------------------------------------------------------------------------------------


def test_signals_and_preferences_do_not_change_statuses() -> None:
    log = Log().init().started(0)
    log.add(StepSignal(step_index=0, step_id="seed", signal="progress", data={"n": 1}))
    log.add(PropertyPreferenceAssigned(property_key="logP", policy_id="p", params_hash="h"))
    log.finished(0)
    instance = log.replay()
    assert instance.steps[0].status is StepStatus.FINISHED
    assert instance.signals == (("seed", "progress", {"n": 1}),)
    assert instance.version == 5
    assert instance.cursor == 1


# --- errors ----------------------------------------------------------------------------------------


def test_another_definition_is_a_mismatch() -> None:
    log = Log().init()
    with pytest.raises(DefinitionMismatchError):
        log.replay(OTHER)
    with pytest.raises(ReplayError):  # DefinitionMismatchError is a ReplayError
        log.replay(OTHER)


def test_a_definition_hash_from_elsewhere_is_a_mismatch() -> None:
    log = Log().add(FlowInitialized(definition_name=DEFINITION.name, definition_hash="0" * 64, step_count=3))
    with pytest.raises(DefinitionMismatchError):
        log.replay()


def test_same_hash_but_another_name_is_a_mismatch() -> None:
    log = Log().add(FlowInitialized(definition_name="renamed", definition_hash=DEFINITION.hash, step_count=3))
    with pytest.raises(DefinitionMismatchError):
        log.replay()


def test_unknown_step_index_is_a_replay_error() -> None:
    log = Log().init().add(StepStarted(step_index=3, step_id="seed", attempt=1))
    with pytest.raises(ReplayError, match="does not have"):
        log.replay()


def test_step_id_not_at_that_index_is_a_replay_error() -> None:
    log = Log().init().add(StepStarted(step_index=0, step_id="split", attempt=1))
    with pytest.raises(ReplayError):
        log.replay()
    log = Log().init().add(StepStarted(step_index=1, step_id="nosuchstep", attempt=1))
    with pytest.raises(ReplayError):
        log.replay()


def test_unknown_step_in_a_retry_is_a_replay_error() -> None:
    log = Log().init().add(RetryScheduled(step_index=9, step_id="x", retry_index=1, reason="r"))
    with pytest.raises(ReplayError):
        log.replay()


def test_events_before_flow_initialized_are_a_replay_error() -> None:
    log = Log().started(0).init()
    with pytest.raises(ReplayError, match="first event"):
        log.replay()
    with pytest.raises(ReplayError):
        Log().add(FlowCompleted(flow_fingerprint="c" * 64)).replay()


def test_a_second_flow_initialized_is_a_replay_error() -> None:
    log = Log().init().init()
    with pytest.raises(ReplayError):
        log.replay()


@pytest.mark.parametrize(
    "kind",
    [
        StepStarted(step_index=0, step_id="seed", attempt=2),
        StepSignal(step_index=0, step_id="seed", signal="late"),
        PropertyPreferenceAssigned(property_key="k", policy_id="p", params_hash="h"),
        FlowCompleted(flow_fingerprint="c" * 64),
    ],
    ids=lambda kind: kind.event_type,
)
def test_events_after_flow_completed_are_a_replay_error(kind: Any) -> None:
    log = full_run().add(kind)
    with pytest.raises(ReplayError, match="after flowcompleted"):
        log.replay()


def test_completed_with_unfinished_steps_is_a_replay_error() -> None:
    log = Log().init().started(0).finished(0).completed()
    with pytest.raises(ReplayError):
        log.replay()


# --- purity --------------------------------------------------------------------------------------


def test_replay_is_pure() -> None:
    log = Log().init().started(0).failed(0, 1, 0).retry(0, 1, T0).started(0, 2).finished(0, (OUT_A,))
    log.started(1).add(StepSignal(step_index=1, step_id="split", signal="s", data=[1, {"a": 2}]))
    before = list(log.events)
    snapshot = copy.deepcopy(log.events)
    first = log.replay()
    second = log.replay()
    assert first == second
    assert first is not second
    assert log.events == before
    assert all(a is b for a, b in zip(log.events, before, strict=True))
    assert log.events == snapshot


def test_replay_accepts_any_iterable_once() -> None:
    log = full_run()

    def generate() -> Iterator[FlowEvent]:
        yield from log.events

    assert replay(log.flow_id, generate(), DEFINITION) == log.replay()
    assert replay(log.flow_id, tuple(log.events), DEFINITION) == log.replay()


def test_same_kinds_with_other_ids_seqs_and_times_replay_to_equal_state() -> None:
    one = full_run()
    two = Log(seq_start=10_000)
    two.flow_id = one.flow_id
    for event in one.events:
        two.add(event.kind)
        two.events[-1] = FlowEvent(
            seq=two.events[-1].seq,
            flow_id=one.flow_id,
            flow_version=event.flow_version,
            ts=event.ts + timedelta(days=365),
            kind=event.kind,
            event_id=uuid.uuid4(),
        )
    assert [e.seq for e in one.events] != [e.seq for e in two.events]
    assert one.replay() == two.replay()


def test_applying_events_in_any_split_equals_replaying_them_all() -> None:
    # apply_events copies only the slots its events name (the engine applies every append to the
    # flow it holds): the untouched ones, the cursor and a signal waking a suspended step must come
    # out as a full replay makes them.
    log = Log().init().started(0).failed(0, 1, 0).retry(0, 1, T0).started(0, 2).finished(0, (OUT_A,))
    log.started(1).add(StepSuspended(step_index=1, step_id="split", attempt=1, signal="go"))
    log.add(StepSignal(step_index=0, step_id="seed", signal="go", data={"x": 1}, send_id="k1"))
    log.started(1, 2).add(StepSignal(step_index=1, step_id="split", signal="early", send_id="k2"))
    log.add(StepSuspended(step_index=1, step_id="split", attempt=2, signal="early"))
    log.started(1, 3).finished(1, (OUT_B,)).started(2).finished(2).completed()
    events = log.events
    for end in range(len(events) + 1):
        whole = replay(log.flow_id, events[:end], DEFINITION)
        for split in range(end + 1):
            head = replay(log.flow_id, events[:split], DEFINITION)
            assert apply_events(head, events[split:end], DEFINITION) == whole, (split, end)
        one_by_one = replay(log.flow_id, [], DEFINITION)
        for event in events[:end]:
            one_by_one = apply_events(one_by_one, [event], DEFINITION)
        assert one_by_one == whole, end
    suspended = replay(log.flow_id, events[:9], DEFINITION).steps[1]
    assert (suspended.status, suspended.resumable) == (StepStatus.SUSPENDED, True)
    assert replay(log.flow_id, events, DEFINITION).completed
    # A step before the cursor started again (replay does not judge it): the cursor moves back.
    back = Log().init().started(0).finished(0).started(1).started(0, 2)
    stepwise = replay(back.flow_id, back.events[:4], DEFINITION)
    assert stepwise.cursor == 1
    assert apply_events(stepwise, back.events[4:], DEFINITION) == back.replay()
    assert back.replay().cursor == 0


# --- signals waking suspended steps ---------------------------------------------------------------

WIDE = FlowDefinition("wide", [S(f"w{i}") for i in range(6)])


def _suspend(log: Log, index: int, signal: str) -> Log:
    sid = log.definition.step_ids[index]
    return log.add(StepSuspended(step_index=index, step_id=sid, attempt=1, signal=signal))


def _signal(log: Log, index: int, signal: str) -> Log:
    sid = log.definition.step_ids[index]
    return log.add(
        StepSignal(step_index=index, step_id=sid, signal=signal, data=None, send_id=uuid.uuid4().hex)
    )


@pytest.mark.parametrize("split", range(1, 9))
def test_a_delivered_signal_wakes_exactly_the_steps_suspended_for_it_however_the_events_are_applied(
    split: int,
) -> None:
    """Steps suspended before and after the first delivery (the replay's index of waiting steps is
    built at that delivery and kept up to date after it), for several signals: a delivery wakes the
    steps waiting for its own signal only, in one fold or applied in two parts."""
    log = Log(WIDE).init()
    log.started(0)
    _suspend(log, 0, "go")
    log.started(1)
    _suspend(log, 1, "other")
    _signal(log, 2, "unrelated")  # the first delivery: no step waits for it
    log.started(3)
    _suspend(log, 3, "go")  # suspended after the index was built
    log.started(4)
    _suspend(log, 4, "late")
    _signal(log, 5, "go")
    whole = log.replay()
    assert [s.resumable for s in whole.steps] == [True, False, False, True, False, False]
    assert [s.waiting_for for s in whole.steps] == ["go", "other", None, "go", "late", None]
    first = apply_events(replay(log.flow_id, [], WIDE), log.events[:split], WIDE)
    assert apply_events(first, log.events[split:], WIDE) == whole


@pytest.mark.parametrize("split", range(1, 10))
def test_a_step_woken_restarted_and_suspended_again_is_woken_again(split: int) -> None:
    """The approval pattern, twice on one step and once on the next: a step woken and started again
    leaves the waiting index, and its next suspension puts it back."""
    log = Log(WIDE).init()
    log.started(0)
    _suspend(log, 0, "go")
    _signal(log, 0, "go")
    log.started(0, attempt=2)
    _suspend(log, 0, "go")
    _signal(log, 0, "go")
    log.started(0, attempt=3).finished(0)
    log.started(1)
    _suspend(log, 1, "go")
    whole = log.replay()
    assert [(s.status, s.resumable) for s in whole.steps[:2]] == [
        (StepStatus.FINISHED, False),
        (StepStatus.SUSPENDED, False),  # suspended after the last "go": not woken by it
    ]
    _signal(log, 1, "go")
    woken = log.replay()
    assert woken.steps[1].resumable
    first = apply_events(replay(log.flow_id, [], WIDE), log.events[:split], WIDE)
    assert apply_events(first, log.events[split:], WIDE) == woken


LONG = FlowDefinition("long", [S(f"step-{i}") for i in range(20)])


def test_a_long_flow_replays_every_slot_as_its_events_say() -> None:
    """Enough steps that replay builds its slots column by column (``codec.fast``)."""
    log = Log(LONG).init()
    for i in range(20):
        log.started(i)
        if i % 3 == 0:
            log.failed(i, 1, 0).retry(i, 1, T0).started(i, 2)
        if i < 15:
            log.finished(i, (OUT_A,))
    instance = log.replay(LONG)
    assert instance.cursor == 15
    for i, slot in enumerate(instance.steps):
        retried = i % 3 == 0
        expected = StepSlot(
            step_id=f"step-{i}",
            status=StepStatus.FINISHED if i < 15 else StepStatus.RUNNING,
            outputs=(OUT_A,) if i < 15 else (),
            fingerprint=log.fps[i] if i < 15 else None,
            retry_count=1 if retried else 0,
            errors=slot.errors,
            attempts=2 if retried else 1,
            started_version=slot.started_version,
        )
        assert slot == expected
        assert len(slot.errors) == (1 if retried else 0)
    assert replay(log.flow_id, log.events, LONG) == instance
    assert initial_instance(uuid.uuid4(), LONG).steps == tuple(StepSlot(f"step-{i}") for i in range(20))


def test_kinds_of_subclasses_of_the_kind_classes_replay_as_the_classes_do() -> None:
    class Started(StepStarted):
        pass

    class Finished(StepFinished):
        pass

    log = full_run()
    swapped = [
        FlowEvent(
            e.seq,
            e.flow_id,
            e.flow_version,
            e.ts,
            Started(**dict(e.kind))
            if type(e.kind) is StepStarted
            else Finished(**dict(e.kind))
            if type(e.kind) is StepFinished
            else e.kind,
            e.event_id,
        )
        for e in log.events
    ]
    assert any(type(e.kind) is Started for e in swapped)
    assert replay(log.flow_id, swapped, DEFINITION) == log.replay()
