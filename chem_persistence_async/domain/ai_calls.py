"""The AI-call log (SPEC 9.2): one ``AICall`` per model call, and the statistics over them.

``check_call`` is the one place a call is validated, for every backend, when it is logged (so a
bad call raises at ``log_call`` and is never buffered). Costs are ``Decimal``: the sums
``get_stats`` returns are exact, whatever the order calls were added in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal
from typing import Any, Final
from uuid import UUID, uuid4

from chem_persistence_async.domain.canonical import canonical_json
from chem_persistence_async.domain.ids import INT_MAX, check_name, text_argument
from chem_persistence_async.errors import InvalidInputError, PayloadTooLargeError, ValueOutOfRangeError

MAX_TOPIC_LENGTH: Final = 500
MAX_BATCH_ID_LENGTH: Final = 500
MAX_COST: Final = Decimal("1e15")
DEFAULT_MAX_CALL_BYTES: Final = 8 * 1024 * 1024
"""The default limit of one call's prompt, response and metadata together."""

_EXACT: Final = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)
"""Where costs are added: Python's default context rounds every sum to 28 significant digits (a
cost of 1e15 plus one of 1e-20 lost the latter), PostgreSQL's NUMERIC sums exactly; with this
precision an addition of finite decimals is exact too."""


def _add_costs(costs: Any) -> Decimal:
    """The exact sum of ``costs``."""
    total = Decimal(0)
    for cost in costs:
        total = _EXACT.add(total, cost)
    return total


@dataclass(frozen=True, slots=True)
class AICall:
    """One model call (reference design 004's ``CreateAICallInput``)."""

    topic: str
    call_type: str
    model_key: str
    model_id: str
    prompt: str
    response: str
    input_tokens: int
    output_tokens: int
    cost: float | Decimal | int
    metadata: Any = None


@dataclass(frozen=True, slots=True)
class CheckedCall:
    """An ``AICall`` that passed ``check_call``: what the backends write. ``id`` is made when the
    call is logged, so a batch written twice (a retry after a lost acknowledgement) adds nothing."""

    id: UUID
    topic: str
    call_type: str
    model_key: str
    model_id: str
    prompt: str
    response: str
    input_tokens: int
    output_tokens: int
    cost: Decimal
    metadata: bytes | None
    batch_id: str | None = None


@dataclass(frozen=True, slots=True)
class ModelStats:
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class AIHelperStats:
    """Totals over the calls whose topic starts with a prefix, and the same per ``model_key``."""

    total_calls: int = 0
    total_input_tokens: int = 0
    total_output_tokens: int = 0
    total_cost: Decimal = Decimal(0)
    per_model: dict[str, ModelStats] = field(default_factory=dict)

    @classmethod
    def of(cls, per_model: dict[str, ModelStats]) -> AIHelperStats:
        """The totals of ``per_model``'s figures."""
        models = dict(sorted(per_model.items()))
        return cls(
            total_calls=sum(m.calls for m in models.values()),
            total_input_tokens=sum(m.input_tokens for m in models.values()),
            total_output_tokens=sum(m.output_tokens for m in models.values()),
            total_cost=_add_costs(m.cost for m in models.values()),
            per_model=models,
        )


def _tokens(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(f"{what} must be an int, got {type(value).__name__}")
    if not 0 <= value <= INT_MAX:
        raise ValueOutOfRangeError(f"{what} must be between 0 and {INT_MAX}, got {value}")
    return value


def check_cost(value: object) -> Decimal:
    """A cost as the exact decimal its caller wrote (``0.1`` is ``Decimal("0.1")``)."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise InvalidInputError(f"cost must be a number, got {type(value).__name__}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueOutOfRangeError(f"cost must be finite, got {value!r}")
        cost = Decimal(repr(value))
    else:
        cost = Decimal(value)
    if not cost.is_finite() or not Decimal(0) <= cost <= MAX_COST:
        raise ValueOutOfRangeError(f"cost must be between 0 and {MAX_COST}, got {value!r}")
    exponent = cost.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -1000:
        raise ValueOutOfRangeError(f"cost has more than 1000 decimal places: {value!r:.40}")
    return cost


def check_batch_id(value: object) -> str:
    return check_name(value, "batch_id", max_length=MAX_BATCH_ID_LENGTH)


def check_call(
    call: object, *, batch_id: str | None = None, max_bytes: int = DEFAULT_MAX_CALL_BYTES
) -> CheckedCall:
    """``call`` checked and given its id, or a typed error (nothing is buffered or written)."""
    if not isinstance(call, AICall):
        raise InvalidInputError(f"log_call takes an AICall, got {type(call).__name__}")
    prompt = text_argument(call.prompt, "prompt")
    response = text_argument(call.response, "response")
    metadata = None if call.metadata is None else canonical_json(call.metadata)
    size = len(prompt) + len(response) + (0 if metadata is None else len(metadata))
    if size > max_bytes:
        raise PayloadTooLargeError(f"an AI call of {size} characters; the limit is {max_bytes}")
    return CheckedCall(
        id=uuid4(),
        topic=check_name(call.topic, "topic", max_length=MAX_TOPIC_LENGTH, empty=True),
        call_type=check_name(call.call_type, "call_type"),
        model_key=check_name(call.model_key, "model_key"),
        model_id=check_name(call.model_id, "model_id"),
        prompt=prompt,
        response=response,
        input_tokens=_tokens(call.input_tokens, "input_tokens"),
        output_tokens=_tokens(call.output_tokens, "output_tokens"),
        cost=check_cost(call.cost),
        metadata=metadata,
        batch_id=batch_id,
    )


def stats_of(calls: Any, topic_prefix: str) -> AIHelperStats:
    """``get_stats`` over calls in memory (the reference for the database's GROUP BY)."""
    per_model: dict[str, ModelStats] = {}
    for call in calls:
        if not call.topic.startswith(topic_prefix):
            continue
        m = per_model.get(call.model_key, ModelStats())
        per_model[call.model_key] = ModelStats(
            m.calls + 1,
            m.input_tokens + call.input_tokens,
            m.output_tokens + call.output_tokens,
            _EXACT.add(m.cost, call.cost),
        )
    return AIHelperStats.of(per_model)


def check_prefix(value: object) -> str:
    return text_argument(value, "topic_prefix", max_length=MAX_TOPIC_LENGTH)
