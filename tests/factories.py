"""Small builders of valid events and artifacts for tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from chem_persistence_async import (
    AICall,
    Artifact,
    ErrorClass,
    FlowCompleted,
    FlowInitialized,
    PropertyPreferenceAssigned,
    RetryScheduled,
    StepErrorInfo,
    StepFailed,
    StepFinished,
    StepSignal,
    StepStarted,
    StepSuspended,
)

H = "a" * 64
H2 = "b" * 64


def started(index: int = 0, step_id: str = "s0", attempt: int = 1) -> StepStarted:
    return StepStarted(step_index=index, step_id=step_id, attempt=attempt)


def finished(index: int = 0, step_id: str = "s0", outputs: tuple[str, ...] = ()) -> StepFinished:
    return StepFinished(step_index=index, step_id=step_id, outputs=outputs, fingerprint=H)


def failed(
    index: int = 0,
    step_id: str = "s0",
    attempt: int = 1,
    error_class: ErrorClass = ErrorClass.TRANSIENT,
    retry_count: int = 0,
    details: dict[str, Any] | None = None,
) -> StepFailed:
    return StepFailed(
        step_index=index,
        step_id=step_id,
        attempt=attempt,
        error=StepErrorInfo(
            error_class=error_class,
            message=f"boom {attempt}",
            details=details if details is not None else {"stack_trace": "tb", "input_hash": H, "params": {}},
        ),
        retry_count=retry_count,
        max_retries=3,
        fingerprint=H2,
    )


def every_variant() -> list[Any]:
    """One instance of each of the nine variants, with non-trivial field values.

    The ``StepFinished`` lists ``artifact(1)`` and ``artifact(2)``: pass them along when appending.
    """
    return [
        FlowInitialized(definition_name="demo", definition_hash=H, step_count=3),
        StepStarted(step_index=1, step_id="split", attempt=2),
        StepFinished(
            step_index=1, step_id="split", outputs=(artifact(1).hash, artifact(2).hash), fingerprint=H2
        ),
        failed(details={"stack_trace": "line 1\nline 2", "input_hash": H, "params": {"k": [1, 2.5, None]}}),
        StepSignal(step_index=0, step_id="seed", signal="progress", data={"done": 3, "of": 7, "ü": "ñ"}),
        PropertyPreferenceAssigned(property_key="p", policy_id="pol", params_hash=H, rationale="why not"),
        RetryScheduled(
            step_index=0,
            step_id="seed",
            retry_index=1,
            reason="transient",
            not_before=datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
        ),
        StepSuspended(
            step_index=2,
            step_id="wait",
            attempt=1,
            until=datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC),
            signal="go",
        ),
        FlowCompleted(flow_fingerprint=H),
    ]


def artifact(n: int, kind: str = "numbers") -> Artifact:
    return Artifact.of(kind, {"n": n, "values": [n, n + 1, n + 2]}, metadata={"origin": "test", "n": n})


def ai_call(topic: str = "orders/extract", model: str = "small", **overrides: Any) -> AICall:
    """A valid model call; ``overrides`` replace its fields."""
    fields: dict[str, Any] = {
        "topic": topic,
        "call_type": "completion",
        "model_key": model,
        "model_id": f"{model}-2025",
        "prompt": "What is 2+2?",
        "response": "4",
        "input_tokens": 12,
        "output_tokens": 3,
        "cost": 0.1,
        "metadata": {"request": 1},
    }
    return AICall(**(fields | overrides))
