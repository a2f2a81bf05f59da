"""Guarded fast paths shared by the codecs: each one is a plain trick that saves measurable time on a
hot path, kept here with the guard that keeps it honest.

* ``collector_paused``: a burst of acyclic allocations (decoding or preparing thousands of events)
  runs with the cyclic garbage collector's automatic passes paused.
* ``build_events``: ``FlowEvent`` objects filled slot by slot through their descriptors, a third of
  the cost of ``__init__``; an import-time guard fails loudly if ``FlowEvent``'s slots change.
  ``column_builder`` makes such a builder for another frozen slotted dataclass (replay's
  ``StepSlot``, a load's ``StepExecutionError``), with the same guard; ``object_builder`` one
  that builds a single object (an append's new state and slots).
"""

from __future__ import annotations

import dataclasses
import gc
from collections import deque
from collections.abc import Callable, Iterable
from itertools import repeat
from typing import Any, TypeVar

from chem_persistence_async.domain.events import FlowEvent

T = TypeVar("T")


class collector_paused:  # (lower case: it replaced a function of that name)
    """Pause the cyclic garbage collector's automatic runs, if it is on, for a burst of acyclic
    allocations; ``as`` gives whether it paused it (a collector the user switched off stays off).

    A class rather than a ``@contextmanager`` generator: a load enters two of these, and the
    generator's machinery cost several times the ``gc`` calls themselves."""

    __slots__ = ("_paused",)

    def __enter__(self) -> bool:
        paused = self._paused = gc.isenabled()
        if paused:
            gc.disable()
        return paused

    def __exit__(self, *exc: object) -> None:
        if self._paused:
            gc.enable()


def build_events(count: int, *columns: Iterable[Any]) -> list[FlowEvent]:
    """``count`` ``FlowEvent``s from one column per slot, in slot order (seq, flow_id, flow_version,
    ts, kind, event_id). ``FlowEvent`` is a frozen slotted dataclass with no ``__post_init__``:
    filling its slots through their descriptors, a column at a time, builds the same objects at a
    third of the cost of its ``__init__``."""
    events: list[FlowEvent] = list(map(object.__new__, repeat(FlowEvent, count)))
    for setter, column in zip(_EVENT_SLOT_SETTERS, columns, strict=True):
        deque(map(setter, events, column), maxlen=0)
    return events


_EVENT_SLOTS = ("seq", "flow_id", "flow_version", "ts", "kind", "event_id")
"""The order ``build_events`` and ``new_event`` take a ``FlowEvent``'s values in."""
_EVENT_SLOT_SETTERS = tuple(getattr(FlowEvent, name).__set__ for name in _EVENT_SLOTS)
if FlowEvent.__slots__ != _EVENT_SLOTS or hasattr(
    FlowEvent, "__post_init__"
):  # pragma: no cover - a guard for whoever changes FlowEvent
    raise RuntimeError("decode_events fills FlowEvent's slots by hand: update it with FlowEvent")


def object_builder(cls: type[T], names: tuple[str, ...]) -> Callable[..., T]:
    """``build(*values)``: one ``cls`` object from its slots' values in the order of ``names``,
    filled through the slots' descriptors; checked as ``column_builder`` checks ``cls``. A frozen
    dataclass's ``__init__`` sets each field through ``object.__setattr__`` (a lookup, an argument
    tuple and a generic set per field): this builds the same object at about half of that
    (measured: a 13-slot ``StepSlot`` 1.9 -> 1.0 µs, a ``FlowInstance`` 1.55 -> 0.8). For the
    objects the engine builds at every append (the flow's state, its changed slots)."""
    _check_slots(cls, names)
    if _BUILDER_NAMES & set(names):
        raise RuntimeError(f"object_builder({cls.__name__}): a slot is named as the builder's own locals")
    # One straight-line function per class, as ``dataclasses`` makes ``__init__``: a loop over the
    # setters cost a third of the building. ``names`` are the checked slot names (identifiers).
    scope: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    scope.update({f"_set_{name}": getattr(cls, name).__set__ for name in names})
    lines = [f"def build({', '.join(names)}):", "    _made = _new(_cls)"]
    lines += [f"    _set_{name}(_made, {name})" for name in names]
    lines.append("    return _made")
    exec("\n".join(lines), scope)  # noqa: S102 - code made from the checked slot names alone
    build: Callable[..., T] = scope["build"]
    return build


_BUILDER_NAMES = frozenset({"_new", "_cls", "_made"})


def _check_slots(cls: type[Any], names: tuple[str, ...]) -> None:
    if (
        not dataclasses.is_dataclass(cls)
        or getattr(cls, "__slots__", None) != names
        or tuple(f.name for f in dataclasses.fields(cls) if f.init) != names
        or hasattr(cls, "__post_init__")
    ):
        raise RuntimeError(f"{cls.__name__}'s slots changed; update the builder's caller")


new_event: Callable[..., FlowEvent] = object_builder(FlowEvent, _EVENT_SLOTS)
"""``FlowEvent(seq, flow_id, flow_version, ts, kind, event_id)``, at half the cost (an append's)."""


def column_builder(cls: type[T], names: tuple[str, ...]) -> Callable[..., list[T]]:
    """``build(count, *columns)``: ``count`` ``cls`` objects from one column per slot, in the order
    of ``names``, filled as ``build_events`` fills ``FlowEvent``s (a third of the cost of
    ``__init__`` and its keyword arguments). Checked here, once: ``cls`` must be a dataclass whose
    slots are exactly ``names`` (every slot is filled: none is left unset) with no
    ``__post_init__``, so the objects are those ``__init__`` would build from the same values."""
    _check_slots(cls, names)
    setters = tuple(getattr(cls, name).__set__ for name in names)
    new = object.__new__

    def build(count: int, *columns: Iterable[Any]) -> list[T]:
        if count < COLUMNS_FROM:  # a column's fixed cost is more than a few ``__init__`` calls
            return [cls(*row) for row in zip(*columns, strict=True)]
        made: list[T] = list(map(new, repeat(cls, count)))
        for setter, column in zip(setters, columns, strict=True):
            deque(map(setter, made, column), maxlen=0)
        return made

    return build


COLUMNS_FROM = 8
"""Fewer objects than this are built by ``__init__`` (measured: a 13-slot ``StepSlot`` costs about
the same either way at 4-10 objects, a third by columns from 100 on)."""
