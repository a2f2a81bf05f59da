"""The unit of work: several operations of several stores in ONE transaction.

``async with store.transaction() as tx:`` (or ``db.transaction()``) opens one; every store method
takes ``tx=`` and then runs inside it. Everything done on ``tx`` commits together when the block
ends, or rolls back together if it raises. Inside a unit of work nothing is retried statement by
statement and nothing is grouped with other callers' writes; whole units of work are retried by
``run_in_transaction(fn)``, which calls ``fn(tx)`` again from the start on a transient failure.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol, TypeVar, runtime_checkable

T = TypeVar("T")


@runtime_checkable
class Transaction(Protocol):
    """One open unit of work of one backend."""

    @property
    def active(self) -> bool:
        """True inside its ``async with`` block, until it commits or rolls back."""
        ...

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the transaction has committed (never if it rolls back): what a
        store learns inside it (a flow's new version) may only be believed after the commit."""
        ...


class TransactionFactory(Protocol):
    """What opens units of work: a PostgreSQL ``Database``, or a store of any backend."""

    def transaction(self) -> AbstractAsyncContextManager[Transaction]: ...

    async def run_in_transaction(self, fn: Callable[[Transaction], Awaitable[T]]) -> T:
        """``fn(tx)`` in a fresh transaction, called again from the start after a transient
        failure. ``fn`` must be safe to run twice (keyed writes: fixed event ids, job keys)."""
        ...
