"""Step failure classes and the retry policy (SPEC section 5): pure, no database."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import BaseModel, ValidationError

from chem_persistence_async.domain.failures import ErrorClass
from chem_persistence_async.engine.retry_policy import RetryPolicy
from chem_persistence_async.engine.step import (
    PermanentStepError,
    StepError,
    StepOutput,
    StepValidationError,
    Suspend,
    TransientStepError,
    classify_error,
)
from chem_persistence_async.errors import (
    ConcurrencyConflict,
    InvalidInputError,
    JsonNestingError,
    UnstorableValueError,
    ValueOutOfRangeError,
)


class _Model(BaseModel):
    n: int


def _pydantic_error() -> ValidationError:
    try:
        _Model(n="not a number")  # type: ignore[arg-type]
    except ValidationError as exc:
        return exc
    raise AssertionError("no ValidationError")


class _MyTransient(TransientStepError):
    pass


# --- classify_error ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (TransientStepError("flaky"), ErrorClass.TRANSIENT),
        (PermanentStepError("broken"), ErrorClass.PERMANENT),
        (StepValidationError("bad input"), ErrorClass.VALIDATION),
        (_MyTransient("subclass"), ErrorClass.TRANSIENT),
        (StepError("unspecified"), ErrorClass.RUNTIME),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_step_exceptions_carry_their_class(exc: BaseException, expected: ErrorClass) -> None:
    assert classify_error(exc) is expected


def test_pydantic_validation_error_is_validation() -> None:
    assert classify_error(_pydantic_error()) is ErrorClass.VALIDATION


@pytest.mark.parametrize(
    "exc",
    [UnstorableValueError("$: NaN"), JsonNestingError("$: too deep"), InvalidInputError("bad")],
    ids=repr,
)
def test_the_librarys_bad_input_errors_are_validation(exc: BaseException) -> None:
    """An artifact holding NaN or a NUL fails the same way on every attempt: never retried."""
    assert classify_error(exc) is ErrorClass.VALIDATION


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError("x"),
        ValueError("x"),  # a plain ValueError is not a validation error
        KeyError("x"),
        TimeoutError(),
        ConnectionError(),
        asyncio.CancelledError(),
        ConcurrencyConflict(uuid.uuid4(), 1, 2),
    ],
    ids=lambda v: type(v).__name__,
)
def test_everything_else_is_runtime(exc: BaseException) -> None:
    assert classify_error(exc) is ErrorClass.RUNTIME


def test_step_error_keeps_message_and_details() -> None:
    exc = TransientStepError("flaky", details={"host": "h"})
    assert str(exc) == "flaky"
    assert exc.details == {"host": "h"}
    assert PermanentStepError("x").details == {}
    assert isinstance(exc, StepError)
    assert isinstance(exc, Exception)


def test_step_output_fields_are_defaulted() -> None:
    output = StepOutput()
    assert output.artifacts == ()
    assert output.signal is None


# --- RetryPolicy.should_retry --------------------------------------------------------------------------


@pytest.mark.parametrize("error_class", [ErrorClass.TRANSIENT, ErrorClass.RUNTIME])
def test_default_retries_transient_and_runtime_three_times(error_class: ErrorClass) -> None:
    policy = RetryPolicy()
    assert policy.max_retries == 3
    assert [policy.should_retry(error_class, n) for n in range(6)] == [True, True, True, False, False, False]


@pytest.mark.parametrize("error_class", [ErrorClass.VALIDATION, ErrorClass.PERMANENT])
def test_default_never_retries_validation_or_permanent(error_class: ErrorClass) -> None:
    policy = RetryPolicy()
    assert not any(policy.should_retry(error_class, n) for n in range(5))


def test_max_retries_is_configurable() -> None:
    assert not RetryPolicy(max_retries=0).should_retry(ErrorClass.TRANSIENT, 0)
    five = RetryPolicy(max_retries=5)
    assert five.should_retry(ErrorClass.RUNTIME, 4)
    assert not five.should_retry(ErrorClass.RUNTIME, 5)


def test_retry_on_is_configurable() -> None:
    policy = RetryPolicy(retry_on=frozenset({ErrorClass.TRANSIENT}))
    assert policy.should_retry(ErrorClass.TRANSIENT, 0)
    assert not policy.should_retry(ErrorClass.RUNTIME, 0)


@pytest.mark.parametrize(
    "kwargs",
    [{"max_retries": -1}, {"initial_delay": -0.1}, {"max_delay": -1}, {"multiplier": 0.5}],
)
def test_invalid_policies_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=">="):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


# --- backoff -------------------------------------------------------------------------------------------


def test_backoff_grows_geometrically_from_the_initial_delay() -> None:
    policy = RetryPolicy(initial_delay=0.1, multiplier=2.0, max_delay=100.0)
    assert policy.backoff(1) == timedelta(seconds=0.1)
    assert policy.backoff(2) == timedelta(seconds=0.2)
    assert policy.backoff(3) == timedelta(seconds=0.4)
    delays = [policy.backoff(n) for n in range(1, 8)]
    assert all(a < b for a, b in itertools.pairwise(delays))


def test_backoff_is_capped() -> None:
    policy = RetryPolicy(initial_delay=1.0, multiplier=10.0, max_delay=30.0)
    assert policy.backoff(2) == timedelta(seconds=10)
    assert policy.backoff(3) == timedelta(seconds=30)
    assert policy.backoff(50) == timedelta(seconds=30)


def test_default_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy()
    assert timedelta(0) < policy.backoff(1) < policy.backoff(2) < policy.backoff(3)
    assert policy.backoff(1000) == timedelta(seconds=policy.max_delay)


def test_backoff_before_the_first_retry_is_the_initial_delay() -> None:
    policy = RetryPolicy(initial_delay=0.25)
    assert policy.backoff(0) == timedelta(seconds=0.25)


def test_constant_backoff_with_multiplier_one() -> None:
    policy = RetryPolicy(initial_delay=0.5, multiplier=1.0)
    assert {policy.backoff(n) for n in range(1, 6)} == {timedelta(seconds=0.5)}


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({}, InvalidInputError),
        ({"until": datetime(2030, 1, 1)}, InvalidInputError),  # naive
        ({"until": "tomorrow"}, InvalidInputError),
        ({"signal": ""}, InvalidInputError),
        ({"signal": "a\x00"}, InvalidInputError),
        # the job's wake-up time: a UTC instant the driver can send and read back as it was
        ({"until": datetime.max.replace(tzinfo=UTC)}, ValueOutOfRangeError),
        ({"until": datetime.max.replace(tzinfo=timezone(timedelta(hours=-3)))}, ValueOutOfRangeError),
    ],
    ids=repr,
)
def test_a_suspension_that_cannot_be_kept_is_refused_when_made(
    kwargs: dict[str, object], error: type
) -> None:
    with pytest.raises(error):
        Suspend(**kwargs)  # type: ignore[arg-type]
    assert Suspend(until=datetime(9999, 12, 31, tzinfo=UTC)).until is not None
