"""The in-memory and PostgreSQL AI-call logs driven in lockstep by a hypothesis state machine
(SPEC 9.2).

Every rule makes the same call on ``InMemoryAICallLogger`` and ``AICallLogger``: calls logged with
every field's edge classes (topics holding LIKE's wildcards and non-ASCII text, names empty or too
long, negative or overflowing token counts, costs as floats, ints and decimals of many digits,
not-a-number, negative or too large, metadata that is not JSON), batches of results recorded under
ids that repeat, statistics by topic prefix, ``is_recorded``. After each rule both returned the same
or raised the same typed error, and the statistics of every call read back the same.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import invariant, rule

from chem_persistence_async import AICall, AICallLogger, InMemoryAICallLogger
from tests.contracts.test_lockstep import DatabaseMachine, as_is, machine_settings, mostly, run_lockstep

topics = mostly(["orders/a", "orders/b", "a_b/1", "a%/2", "é/x", "A_b"], ["", "t" * 500, "t" * 501, "a\x00"])
prefixes = st.sampled_from(["", "orders", "orders/a", "a_", "a%", "a", "é", "A", "\\", "zz"])
names = mostly(["m1", "m2", "m3"], ["", "m" * 201, "\ud800"])
tokens = mostly([0, 1, 120, 2**31 - 1], [-1, 2**31, 1.5, True])
costs = mostly(
    [
        0,
        1,
        0.1,
        Decimal("0.30"),
        Decimal("1e15"),
        Decimal("1e-20"),
        Decimal("0.3333333333333333333333333333333"),
    ],
    [float("nan"), -0.5, Decimal("1e16"), Decimal("-1e-9"), "1", float("inf"), Decimal("1e-1001")],
)
metadata = (
    st.none()
    | st.dictionaries(st.sampled_from(["k", "j"]), st.integers(-2, 2), max_size=2)
    | st.just({"bad": float("nan")})
)
batch_ids = mostly(["b1", "b2", "b3"], ["", "b" * 501, 7])


@st.composite
def calls(draw: st.DrawFn) -> Any:
    if not draw(st.integers(0, 15)):
        return draw(st.sampled_from([None, {"topic": "x"}, "call"]))
    return AICall(
        topic=draw(topics),
        call_type=draw(mostly(["summarise", "extract"], [""])),
        model_key=draw(names),
        model_id=draw(st.sampled_from(["gpt-x", "claude-y"])),
        prompt=draw(st.sampled_from(["p", "", "é" * 40])),
        response=draw(st.sampled_from(["r", "", "\x00"])),
        input_tokens=draw(tokens),
        output_tokens=draw(tokens),
        cost=draw(costs),
        metadata=draw(metadata),
    )


class AICallLockstep(DatabaseMachine):
    """The AI-call logs (``test_ai_call_logs_in_lockstep``)."""

    EMPTIED = ("ai_calls", "ai_call_batches")

    def __init__(self) -> None:
        super().__init__()
        self.logs: tuple[Any, Any] = (InMemoryAICallLogger(), AICallLogger(self.db, batch_size=3))

    def teardown(self) -> None:
        for log in self.logs:
            self.run(log.close())

    @rule(call=calls())
    def log_call(self, call: Any) -> None:
        """Not awaited: checked at once (a bad call raises and is never buffered), written later."""
        self.both(lambda s: self.logs[s].log_call(call), as_is)

    @rule(batch_id=batch_ids, results=st.lists(calls(), max_size=3))
    def log_batch_results(self, batch_id: Any, results: list[Any]) -> None:
        """A batch's results, recorded once per batch id: a second time records nothing."""
        self.both(lambda s: self.logs[s].log_batch_results(batch_id, results), as_is)

    @rule(batch_id=batch_ids)
    def is_recorded(self, batch_id: Any) -> None:
        self.both(lambda s: self.logs[s].is_recorded(batch_id), as_is)

    @rule(prefix=prefixes)
    def get_stats(self, prefix: str) -> None:
        self.both(lambda s: self.logs[s].get_stats(prefix), as_is)

    @invariant()
    def every_call_counts_the_same(self) -> None:
        self.both(lambda s: self.logs[s].get_stats(""), as_is)


def test_ai_call_logs_in_lockstep(db_url: str) -> None:
    run_lockstep(AICallLockstep, db_url, machine_settings(15))


@pytest.mark.slow
def test_ai_call_logs_in_lockstep_for_longer(db_url: str) -> None:
    run_lockstep(AICallLockstep, db_url, machine_settings(15, longer=True))
