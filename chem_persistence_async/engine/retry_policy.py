"""``RetryPolicy``: whether a failed step attempt is retried, and how long to wait first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from chem_persistence_async.domain.failures import ErrorClass


@dataclass(frozen=True)
class RetryPolicy:
    """Default: TRANSIENT and RUNTIME failures up to ``max_retries=3``; VALIDATION and PERMANENT never.

    The wait before retry ``n`` (1-based) is ``initial_delay * multiplier ** (n - 1)``, capped at
    ``max_delay``; it becomes the ``not_before`` of the ``RetryScheduled`` event.
    """

    max_retries: int = 3
    retry_on: frozenset[ErrorClass] = frozenset({ErrorClass.TRANSIENT, ErrorClass.RUNTIME})
    initial_delay: float = 0.05
    multiplier: float = 2.0
    max_delay: float = 30.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if self.initial_delay < 0 or self.max_delay < 0 or self.multiplier < 1:
            raise ValueError("delays must be >= 0 and multiplier >= 1")

    def should_retry(self, error_class: ErrorClass, retry_count: int) -> bool:
        """``retry_count`` is the number of retries already made for this step."""
        return error_class in self.retry_on and retry_count < self.max_retries

    def backoff(self, retry_index: int) -> timedelta:
        seconds = self.initial_delay * self.multiplier ** max(0, retry_index - 1)
        return timedelta(seconds=min(seconds, self.max_delay))
