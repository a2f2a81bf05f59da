"""Fingerprints (SPEC section 2): what a flow produced, never when or where."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta

from chem_persistence_async.domain.canonical import canonical_json
from chem_persistence_async.domain.events import FlowEvent, StepFinished
from chem_persistence_async.domain.fingerprints import (
    failure_fingerprint,
    flow_fingerprint,
    step_fingerprint,
)

DEF_HASH = "d" * 64
OUT_A = "a" * 64
OUT_B = "b" * 64


def test_step_fingerprint_is_hash_of_previous_step_id_and_outputs() -> None:
    expected = hashlib.sha256(
        canonical_json({"previous": DEF_HASH, "step_id": "seed", "outputs": [OUT_A, OUT_B]})
    ).hexdigest()
    assert step_fingerprint(DEF_HASH, "seed", [OUT_A, OUT_B]) == expected


def test_same_inputs_give_the_same_fingerprints() -> None:
    assert step_fingerprint(DEF_HASH, "s", [OUT_A]) == step_fingerprint(DEF_HASH, "s", (OUT_A,))
    assert failure_fingerprint(DEF_HASH, "s", 2, "transient") == failure_fingerprint(
        DEF_HASH, "s", 2, "transient"
    )
    assert flow_fingerprint(DEF_HASH, ["1" * 64, "2" * 64]) == flow_fingerprint(
        DEF_HASH, ("1" * 64, "2" * 64)
    )


def test_step_fingerprint_depends_on_every_input() -> None:
    base = step_fingerprint(DEF_HASH, "s", [OUT_A, OUT_B])
    assert step_fingerprint("e" * 64, "s", [OUT_A, OUT_B]) != base
    assert step_fingerprint(DEF_HASH, "t", [OUT_A, OUT_B]) != base
    assert step_fingerprint(DEF_HASH, "s", [OUT_A]) != base
    assert step_fingerprint(DEF_HASH, "s", [OUT_B, OUT_A]) != base  # order matters
    assert step_fingerprint(DEF_HASH, "s", []) != base


def test_failure_fingerprint_depends_on_attempt_and_class() -> None:
    base = failure_fingerprint(DEF_HASH, "s", 1, "transient")
    assert failure_fingerprint(DEF_HASH, "s", 2, "transient") != base
    assert failure_fingerprint(DEF_HASH, "s", 1, "runtime") != base
    assert failure_fingerprint(DEF_HASH, "t", 1, "transient") != base
    assert failure_fingerprint("e" * 64, "s", 1, "transient") != base
    # A failure is never confused with a success of the same step.
    assert base != step_fingerprint(DEF_HASH, "s", [])


def test_flow_fingerprint_depends_on_definition_and_step_order() -> None:
    one, two = step_fingerprint(DEF_HASH, "a", [OUT_A]), step_fingerprint(DEF_HASH, "b", [OUT_B])
    base = flow_fingerprint(DEF_HASH, [one, two])
    assert flow_fingerprint(DEF_HASH, [two, one]) != base
    assert flow_fingerprint("e" * 64, [one, two]) != base
    assert flow_fingerprint(DEF_HASH, [one]) != base


def _chain(step_ids: list[str], outputs: list[list[str]]) -> tuple[list[str], str]:
    fps, previous = [], DEF_HASH
    for step_id, outs in zip(step_ids, outputs, strict=True):
        previous = step_fingerprint(previous, step_id, outs)
        fps.append(previous)
    return fps, flow_fingerprint(DEF_HASH, fps)


def test_chain_propagates_a_change_to_every_later_step() -> None:
    fps1, flow1 = _chain(["a", "b", "c"], [[OUT_A], [OUT_B], []])
    fps2, flow2 = _chain(["a", "b", "c"], [[OUT_B], [OUT_B], []])
    assert all(x != y for x, y in zip(fps1, fps2, strict=True))
    assert flow1 != flow2


def _run_events(seq_start: int, start: datetime) -> list[FlowEvent]:
    """The StepFinished events of one run, with its own ids, seqs and timestamps."""
    flow_id = uuid.uuid4()
    fps, _ = _chain(["a", "b"], [[OUT_A], [OUT_B]])
    kinds = [
        StepFinished(step_index=0, step_id="a", outputs=(OUT_A,), fingerprint=fps[0]),
        StepFinished(step_index=1, step_id="b", outputs=(OUT_B,), fingerprint=fps[1]),
    ]
    return [
        FlowEvent(
            seq=seq_start + i,
            flow_id=flow_id,
            flow_version=i + 1,
            ts=start + timedelta(seconds=i),
            kind=kind,
            event_id=uuid.uuid4(),
        )
        for i, kind in enumerate(kinds)
    ]


def test_fingerprints_ignore_timestamps_seq_and_ids() -> None:
    run1 = _run_events(1, datetime(2020, 1, 1, tzinfo=UTC))
    run2 = _run_events(9000, datetime(2031, 6, 6, tzinfo=UTC))
    assert run1[0].flow_id != run2[0].flow_id
    assert [e.seq for e in run1] != [e.seq for e in run2]

    def recompute(events: list[FlowEvent]) -> str:
        previous, fps = DEF_HASH, []
        for event in events:
            assert isinstance(event.kind, StepFinished)
            previous = step_fingerprint(previous, event.kind.step_id, event.kind.outputs)
            assert previous == event.kind.fingerprint
            fps.append(previous)
        return flow_fingerprint(DEF_HASH, fps)

    assert recompute(run1) == recompute(run2)
