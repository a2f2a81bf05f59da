"""The in-memory unit of work: an undo journal.

Memory operations change state at once, as a PostgreSQL statement inside a transaction does; each
one run with ``tx=`` records how to undo itself, and a unit of work that raises undoes them in
reverse order. One ``MemoryTransaction`` serves every in-memory store (event store, queue,
records): the journal is not tied to any of them.

Commit groups (``read_all``'s order, as PostgreSQL's transaction ids): a unit of work takes a
number from one counter at its first change, as a PostgreSQL transaction takes its id at its first
write, and an event written outside a unit of work takes one of its own. The numbers of the units
of work still open are the ``read_all`` horizon.

Isolation: memory operations never wait on anything, so a unit of work whose body awaits only
memory operations runs without any other task running in between (nothing else can see its
changes before it ends). A body that awaits something else (I/O, a sleep) lets other tasks see
its uncommitted changes; PostgreSQL would hide them. Keep units of work short, as on PostgreSQL.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TypeVar

from chem_persistence_async.errors import TransactionError
from chem_persistence_async.ports.unit_of_work import Transaction

T = TypeVar("T")

logger = logging.getLogger("chem_persistence_async.memory")


_groups = itertools.count(1)
_open_groups: set[int] = set()


def new_group() -> int:
    """A commit group for a write made outside a unit of work (it commits at once)."""
    return next(_groups)


def oldest_open_group() -> int | None:
    """The lowest commit group of a unit of work still open (``None``: none is)."""
    return min(_open_groups, default=None)


class MemoryTransaction:
    """A unit of work over in-memory stores (see the module docstring)."""

    __slots__ = ("_after", "_group", "_now", "_state", "_undo")

    def __init__(self) -> None:
        self._undo: list[Callable[[], None]] = []
        self._after: list[Callable[[], None]] = []
        self._state = "open"
        self._now: datetime | None = None
        self._group: int | None = None

    @property
    def group(self) -> int:
        """This unit of work's commit group, taken at its first change (or now)."""
        if self._group is None:
            self._group = next(_groups)
            _open_groups.add(self._group)
        return self._group

    def now(self, clock: Callable[[], datetime]) -> datetime:
        """The unit of work's time, as PostgreSQL's ``now()`` is a transaction's: the same for
        every row it writes (here, the clock's reading at its first use), so rows made together
        tie on their times and are ordered by what follows, as in the database."""
        if self._now is None:
            self._now = clock()
        return self._now

    @property
    def active(self) -> bool:
        return self._state == "open"

    def on_commit(self, callback: Callable[[], None]) -> None:
        self._require_open()
        self._after.append(callback)

    def record_undo(self, undo: Callable[[], None]) -> None:
        """Called by a store right after it changed its state inside this unit of work."""
        self._require_open()
        self._undo.append(undo)
        self.group  # noqa: B018 - its first change takes its commit group

    def _require_open(self) -> None:
        if self._state != "open":
            raise TransactionError(f"this unit of work is {self._state}: open a new one")

    def _close_group(self) -> None:
        if self._group is not None:
            _open_groups.discard(self._group)

    def _commit(self) -> None:
        self._state = "committed"
        self._close_group()
        self._undo.clear()
        for callback in self._after:
            callback()

    def _rollback(self) -> None:
        self._state = "rolled back"
        self._close_group()
        undo, self._undo = self._undo, []
        for step in reversed(undo):
            step()

    def __repr__(self) -> str:
        return f"<MemoryTransaction {self._state} changes={len(self._undo)}>"


@asynccontextmanager
async def memory_transaction() -> AsyncIterator[MemoryTransaction]:
    """Open a unit of work over in-memory stores; it commits when the block ends."""
    tx = MemoryTransaction()
    try:
        yield tx
    except BaseException:
        tx._rollback()
        raise
    tx._commit()


async def run_in_memory_transaction(fn: Callable[[Transaction], Awaitable[T]]) -> T:
    """``fn(tx)`` in one unit of work. Nothing in memory is transient, so nothing is retried."""
    async with memory_transaction() as tx:
        return await fn(tx)


def memory_tx(tx: Transaction | None) -> MemoryTransaction | None:
    """``tx`` as a ``MemoryTransaction``, or a ``TransactionError`` for another backend's (or a
    finished) unit of work."""
    if tx is None:
        return None
    if not isinstance(tx, MemoryTransaction):
        raise TransactionError(f"an in-memory store cannot run in {type(tx).__name__}")
    tx._require_open()
    return tx
