"""``FlowCache``: the engine's replayed flows, so a load reads and replays only what is new.

Each entry is a flow's state with the mark of its last event (``FlowMark``): the next load of the
flow asks the store for the events after that mark, and the store answers with the whole flow
instead when the flow no longer has it (deleted and started again under the same id). The least
recently used flow goes first once ``size`` flows are kept; a size of 0 keeps none.

The states are handed out to every caller that loads the flow, so what they hold that could be
changed in place (inputs, signal data, error details) is made read-only (``domain.frozen``) as it
enters: only the parts new since the state it extends, so a warm load costs nothing more.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from itertools import compress
from operator import attrgetter, is_, is_not
from typing import Any, TypeVar
from uuid import UUID

from chem_persistence_async.codec.fast import collector_paused
from chem_persistence_async.domain.failures import StepExecutionError
from chem_persistence_async.domain.flow import FlowInstance, ReceivedSignal, StepSlot
from chem_persistence_async.domain.frozen import FrozenDict, freeze
from chem_persistence_async.engine.repository import Replayed
from chem_persistence_async.errors import InvalidInputError
from chem_persistence_async.replay import new_instance

T = TypeVar("T")

DEFAULT_FLOW_CACHE_SIZE = 1_000
"""Flows an engine keeps replayed (a worker's engine sees the flows its jobs name, over and over)."""


class FlowCache:
    def __init__(self, size: int) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise InvalidInputError(f"flow_cache_size must be an int >= 0, got {size!r}")
        self._size = size
        self._flows: OrderedDict[UUID, Replayed] = OrderedDict()

    @property
    def size(self) -> int:
        return self._size

    def __len__(self) -> int:
        return len(self._flows)

    def get(self, flow_id: UUID) -> Replayed | None:
        entry = self._flows.get(flow_id)
        if entry is not None:
            self._flows.move_to_end(flow_id)
        return entry

    def holds(self, instance: FlowInstance) -> bool:
        """Whether ``instance`` is the very state kept for its flow (not an equal one: a state
        built elsewhere proves nothing about the store)."""
        entry = self._flows.get(instance.flow_id)
        return entry is not None and entry.instance is instance

    def put(self, flow_id: UUID, replayed: Replayed) -> None:
        """Keep ``replayed`` (its state frozen already: ``frozen``) as the flow's entry."""
        if not self._size or replayed.mark is None:
            return
        flows = self._flows
        flows[flow_id] = replayed
        flows.move_to_end(flow_id)
        if len(flows) > self._size:
            flows.popitem(last=False)

    def forget(self, flow_id: UUID) -> None:
        self._flows.pop(flow_id, None)


def frozen(after: FlowInstance, before: FlowInstance | None) -> FlowInstance:
    """``after`` with its JSON values read-only; what it shares with ``before`` (a frozen state it
    was replayed from: the very same objects, not equal ones) is taken as it is. The objects are
    built by their constructors (``dataclasses.replace`` cost 4x as much), the collector paused
    (a large flow's thousands of new containers set off its full collections)."""
    with collector_paused():
        return _frozen(after, before)


def _frozen(after: FlowInstance, before: FlowInstance | None) -> FlowInstance:
    """``frozen``'s work. What ``after`` shares with ``before`` (its tuples, when ``apply_events``
    left them as they were; its unchanged slots) is found by identity at C speed; when nothing
    needs freezing, ``after`` itself is the answer (an engine's append of a step's events: no
    signal, no failure, no new inputs)."""
    inputs = after.inputs
    if before is None or inputs is not before.inputs:
        inputs = freeze(dict(inputs))
    signals = _frozen_items(after.signals, () if before is None else before.signals, _frozen_signal)
    received = _frozen_items(after.received, () if before is None else before.received, _frozen_received)
    steps = after.steps
    old_steps = () if before is None else before.steps
    if steps is not old_steps and _new_errors_in(steps, old_steps):
        steps = tuple(
            slot if not slot.errors or _kept(old_steps, i, slot) else _frozen_slot(slot, old_steps, i)
            for i, slot in enumerate(steps)
        )
    if (
        inputs is after.inputs
        and signals is after.signals
        and received is after.received
        and steps is after.steps
    ):
        return after
    return new_instance(
        after.flow_id,
        after.definition_hash,
        after.completed,
        after.cursor,
        steps,
        after.fingerprint,
        after.version,
        signals,
        inputs,
        received,
    )


def _new_errors_in(steps: tuple[StepSlot, ...], old_steps: tuple[StepSlot, ...]) -> bool:
    """Whether a slot of ``steps`` that is not the very slot of ``old_steps`` at its index has
    errors (which then need freezing). Found by ``map`` and ``compress``, with no Python frame per
    slot: an append changes one slot or two of the flow's."""
    if len(steps) != len(old_steps):
        return any(map(_errors_of, steps))
    return any(map(_errors_of, compress(steps, map(is_not, steps, old_steps))))


_errors_of = attrgetter("errors")


def _frozen_items(items: tuple[T, ...], old: tuple[T, ...], freeze_item: Callable[[T], T]) -> tuple[T, ...]:
    """``items`` with each one that is not the very object at its index of ``old`` frozen. An
    append extends the flow's signals: when ``old`` is the start of ``items`` (proved by ``map``
    at C speed), only the new ones past it are looked at, so a flow that takes a signal per step
    no longer walks all it took at every step (3,000 steps: ~750 µs per step at the end)."""
    if items is old:
        return items
    kept = len(old)
    if kept <= len(items) and all(map(is_, items, old)):
        return items if kept == len(items) else (*items[:kept], *map(freeze_item, items[kept:]))
    return tuple(item if _kept(old, i, item) else freeze_item(item) for i, item in enumerate(items))


def _frozen_signal(signal: tuple[str, str, Any]) -> tuple[str, str, Any]:
    return (signal[0], signal[1], freeze(signal[2]))


def _frozen_received(r: ReceivedSignal) -> ReceivedSignal:
    return ReceivedSignal(r.name, freeze(r.data), r.send_id, r.step_index, r.version)


def _kept(old: tuple[object, ...], index: int, item: object) -> bool:
    """Whether ``item`` is the very object at ``index`` of ``old`` (frozen already)."""
    return index < len(old) and old[index] is item


def _frozen_slot(slot: StepSlot, old_steps: tuple[StepSlot, ...], index: int) -> StepSlot:
    old = old_steps[index].errors if index < len(old_steps) else ()
    return StepSlot(
        slot.step_id,
        slot.status,
        slot.outputs,
        slot.fingerprint,
        slot.retry_count,
        tuple(e if _kept(old, i, e) else _frozen_error(e) for i, e in enumerate(slot.errors)),
        slot.attempts,
        slot.not_before,
        slot.lease_until,
        slot.suspended_until,
        slot.waiting_for,
        slot.resumable,
        slot.started_version,
    )


def _frozen_error(e: StepExecutionError) -> StepExecutionError:
    if e.details is None or type(e.details) is FrozenDict:
        return e
    return StepExecutionError(
        e.flow_id,
        e.step_id,
        e.attempt_number,
        e.error_class,
        e.error_message,
        freeze(e.details),
        e.retry_count,
        e.max_retries,
        e.ts,
        e.event_seq,
    )
