"""Flow definitions (SPEC section 2): ordered unique steps and a stable hash."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from chem_persistence_async.domain.flow import FlowDefinition, FlowInstance, StepSlot, StepStatus
from chem_persistence_async.errors import DefinitionError

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class S:
    id: str
    params: dict[str, Any] | None = field(default=None)

    async def run(self, ctx: object) -> None:
        """Never called: these tests only build definitions."""


class T:
    """Another step class with the same id: the class enters the hash."""

    def __init__(self, id: str) -> None:
        self.id = id

    async def run(self, ctx: object) -> None:
        """Never called."""


def _definition(*steps: Any, name: str = "demo") -> FlowDefinition:
    return FlowDefinition(name, list(steps))


def test_hash_is_stable() -> None:
    one = _definition(S("a", {"n": 1}), S("b"))
    two = _definition(S("a", {"n": 1}), S("b"))
    assert one.hash == two.hash
    assert len(one.hash) == 64
    assert set(one.hash) <= set("0123456789abcdef")


def test_hash_ignores_params_key_order() -> None:
    assert _definition(S("a", {"x": 1, "y": 2})).hash == _definition(S("a", {"y": 2, "x": 1})).hash


def test_no_params_and_empty_params_are_the_same() -> None:
    assert _definition(S("a", None)).hash == _definition(S("a", {})).hash


def test_hash_changes_with_params() -> None:
    base = _definition(S("a", {"n": 1}), S("b"))
    assert _definition(S("a", {"n": 2}), S("b")).hash != base.hash
    assert _definition(S("a", {"n": 1}), S("b", {"m": 0})).hash != base.hash


def test_hash_changes_with_step_order() -> None:
    assert _definition(S("a"), S("b")).hash != _definition(S("b"), S("a")).hash


def test_hash_changes_with_name() -> None:
    assert _definition(S("a"), name="one").hash != _definition(S("a"), name="two").hash


def test_hash_changes_with_step_ids_and_count() -> None:
    base = _definition(S("a"), S("b"))
    assert _definition(S("a"), S("c")).hash != base.hash
    assert _definition(S("a")).hash != base.hash


def test_hash_changes_with_step_class() -> None:
    assert _definition(S("a")).hash != _definition(T("a")).hash


def test_step_ids_and_params_of() -> None:
    definition = _definition(S("a", {"n": 1}), S("b"))
    assert definition.step_ids == ("a", "b")
    assert definition.name == "demo"
    assert definition.params_of(0) == {"n": 1}
    assert definition.params_of(1) == {}
    assert "demo" in repr(definition)


def test_steps_are_copied() -> None:
    steps = [S("a"), S("b")]
    definition = FlowDefinition("demo", steps)
    before = definition.hash
    steps.append(S("c"))
    assert definition.step_ids == ("a", "b")
    assert definition.hash == before


def test_duplicate_step_ids_are_rejected() -> None:
    with pytest.raises(DefinitionError, match=r"unique.*: a$"):
        _definition(S("a"), S("b"), S("a"))


@pytest.mark.parametrize("bad_id", ["", None, 3])
def test_empty_or_non_string_step_ids_are_rejected(bad_id: Any) -> None:
    with pytest.raises(
        DefinitionError, match=r"step 1 \(S\) has id .*: a step id must be a non-empty string"
    ):
        _definition(S("a"), S(bad_id))


def test_empty_name_is_rejected() -> None:
    with pytest.raises(DefinitionError, match="name"):
        _definition(S("a"), name="")


def test_unstorable_params_are_rejected() -> None:
    with pytest.raises(DefinitionError, match=r"step 'a' \(S\): params cannot be stored as JSON: \$.x: nan"):
        _definition(S("a", {"x": float("nan")}))


class NoId:
    async def run(self, ctx: object) -> None:
        """Never called."""


class SyncRun:
    id = "sync"

    def run(self, ctx: object) -> None:
        """A synchronous run: the engine would await its None and fail every attempt."""


class NoRun:
    id = "lazy"


class RunIsNotCallable:
    id = "odd"
    run = 42


class BadParams:
    id = "p"
    params = ["not", "a", "mapping"]

    async def run(self, ctx: object) -> None:
        """Never called."""


@pytest.mark.parametrize(
    ("step", "message"),
    [
        (NoId(), r"step 1 \(NoId\) has no 'id'"),
        (SyncRun(), r"step 'sync' \(SyncRun\): run is a synchronous def, not 'async def run\(self, ctx\)'"),
        (NoRun(), r"step 'lazy' \(NoRun\) has no run method"),
        (RunIsNotCallable(), r"step 'odd' \(RunIsNotCallable\): run is a int"),
        (BadParams(), r"step 'p' \(BadParams\): params must be a mapping, not list"),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, str) else "",
)
def test_step_mistakes_are_definition_errors_when_the_definition_is_built(step: Any, message: str) -> None:
    """Typed and named at definition time: never a bare AttributeError, or four failed attempts later."""
    with pytest.raises(DefinitionError, match=message) as info:
        _definition(S("a"), step)
    assert not isinstance(info.value, AttributeError | TypeError)


def test_steps_may_be_any_iterable_but_not_a_string() -> None:
    assert FlowDefinition("gen", (s for s in [S("a"), S("b")])).step_ids == ("a", "b")
    with pytest.raises(DefinitionError, match="steps must be a list"):
        FlowDefinition("bad", "ab")  # type: ignore[arg-type]


def test_the_definition_hash_did_not_change() -> None:
    """The checks added at definition time leave every stored flow's definition hash as it was."""
    from chem_persistence_async import demo_definition

    assert demo_definition().hash == "81f382894f5a1e019b11690b912a50ff53c2470fcce1cf3c764bd815e0db21c9"


_CHILD = """
from dataclasses import dataclass, field
from typing import Any
from chem_persistence_async.domain.flow import FlowDefinition

@dataclass
class S:
    id: str
    params: dict[str, Any] | None = field(default=None)

    async def run(self, ctx):
        pass

print(FlowDefinition("demo", [S("a", {"n": 1, "s": "é"}), S("b")]).hash)
"""


def test_hash_is_the_same_in_another_process() -> None:
    env = dict(os.environ, PYTHONHASHSEED="777")
    result = subprocess.run(
        [sys.executable, "-c", _CHILD],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=env,
        check=True,
        timeout=120,
    )
    assert result.stdout.strip() == _definition(S("a", {"s": "é", "n": 1}), S("b")).hash


def test_flow_instance_failed_and_errors_properties() -> None:
    pending = FlowInstance(
        flow_id=uuid.uuid4(),
        definition_hash="d" * 64,
        completed=False,
        cursor=0,
        steps=(StepSlot("a"), StepSlot("b", status=StepStatus.FINISHED)),
        fingerprint=None,
        version=3,
    )
    assert not pending.failed
    assert pending.errors == ()
    failed = FlowInstance(
        flow_id=uuid.uuid4(),
        definition_hash="d" * 64,
        completed=False,
        cursor=0,
        steps=(StepSlot("a", status=StepStatus.FAILED),),
        fingerprint=None,
        version=3,
    )
    assert failed.failed
