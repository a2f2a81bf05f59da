"""Global order (SPEC 8.5): where an event stands among every flow's events, for ``read_all`` and
the subscriptions that follow it.

A ``Position`` is opaque to its user: totally ordered by ``<``, and JSON-serialisable as it is (a
string), so a checkpoint can be stored anywhere. It is the pair (commit group, ``seq``) written
at fixed width, so that string order is the pair's order: on PostgreSQL the group is the writing
transaction's id (``xid8``), since a sequence value is not a commit order; in memory, the number
its unit of work took at its first change (``MemoryTransaction.group``), the same rule.

Events of one flow come in version order when each append's transaction took its id after the
previous append committed, as the engine's do. A unit of work that took its id earlier (by another
write first) and then appends the flow's next version orders that event before the previous one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from chem_persistence_async.domain.events import FlowEvent
from chem_persistence_async.errors import InvalidInputError

_WIDTH = 20
"""Digits of each half: ``2**64 - 1``, the largest ``xid8`` and more than any ``bigint``, has 20."""
_LIMIT = 10**_WIDTH
_FORMAT = re.compile(rf"\d{{{_WIDTH}}}\.\d{{{_WIDTH}}}")


class Position(str):
    """An event's place in the global order: compare with ``<``, store with ``json.dumps`` (or
    ``str``), give back to ``read_all(after=...)`` as a ``Position`` or as the string it was."""

    __slots__ = ()

    def __new__(cls, value: str) -> Position:
        if isinstance(value, Position):
            return value
        if not isinstance(value, str) or not _FORMAT.fullmatch(value):
            raise InvalidInputError(f"not a position (as read_all returns them): {value!r}")
        return super().__new__(cls, value)

    @classmethod
    def of(cls, group: int, seq: int) -> Position:
        """The position of event ``seq`` written in commit group ``group`` (both ``>= 0``)."""
        for name, value in (("group", group), ("seq", seq)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < _LIMIT:
                raise InvalidInputError(f"a position's {name} must be an int in [0, {_LIMIT}), got {value!r}")
        return super().__new__(cls, f"{group:0{_WIDTH}d}.{seq:0{_WIDTH}d}")

    @property
    def group(self) -> int:
        return int(self[:_WIDTH])

    @property
    def seq(self) -> int:
        return int(self[_WIDTH + 1 :])

    def __repr__(self) -> str:
        return f"Position.of({self.group}, {self.seq})"


def to_position(value: Position | str | None) -> Position | None:
    """``read_all``'s ``after``: ``None`` (from the start), a ``Position``, or its string."""
    return None if value is None else Position(value)


@dataclass(frozen=True, slots=True)
class PositionedEvent(FlowEvent):
    """A ``FlowEvent`` as ``read_all`` returns it, with its ``position`` in the global order."""

    position: Position
