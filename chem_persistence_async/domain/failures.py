"""Failure vocabulary shared by events, stores and the engine: error classes and error records."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, JsonValue


class ErrorClass(StrEnum):
    """Why a step attempt failed; ``RetryPolicy`` decides on this alone."""

    TRANSIENT = "transient"
    PERMANENT = "permanent"
    VALIDATION = "validation"
    RUNTIME = "runtime"


class StepErrorInfo(BaseModel):
    """The ``error`` of a ``StepFailed`` event.

    ``details`` is documented JSON: ``{"stack_trace": str, "input_hash": str, "params": {...}}``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    error_class: ErrorClass
    message: str = Field(max_length=100_000)
    details: dict[str, JsonValue] | None = None


@dataclass(frozen=True, slots=True)
class StepExecutionError:
    """One failed attempt, as a row of ``step_execution_errors`` (or its in-memory twin)."""

    flow_id: UUID
    step_id: str
    attempt_number: int
    error_class: ErrorClass
    error_message: str | None
    details: dict[str, Any] | None
    retry_count: int
    max_retries: int
    ts: datetime
    event_seq: int | None = None


def timeline_order(errors: Iterable[StepExecutionError]) -> list[StepExecutionError]:
    """Attempt order, then time; ties keep insertion order (``sorted`` is stable)."""
    return sorted(errors, key=lambda e: (e.attempt_number, e.ts))


def count_by_step_and_class(errors: Iterable[StepExecutionError]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for error in errors:
        per_step = counts.setdefault(error.step_id, {})
        per_step[error.error_class.value] = per_step.get(error.error_class.value, 0) + 1
    return counts
