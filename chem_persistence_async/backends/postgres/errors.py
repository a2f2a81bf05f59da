"""The PostgreSQL backend's error boundary: driver exceptions become the library's.

Nothing asyncpg raises leaves a store, ``Database.run`` or a unit of work as it is: a transient
failure that outlived its retries becomes ``TransientDatabaseError``, an unexpected constraint
violation ``ConstraintViolationError``, anything else from the driver ``DatabaseError``; each is
chained to the driver's exception (``__cause__``) and keeps its SQLSTATE as ``.sqlstate``.
"""

from __future__ import annotations

import asyncpg

from chem_persistence_async.backends.postgres.retry import transient_reason
from chem_persistence_async.errors import (
    ChemPersistError,
    ConstraintViolationError,
    DatabaseError,
    TransientDatabaseError,
)


def is_driver_error(exc: BaseException) -> bool:
    """What the boundary translates: the driver's errors and the OS's, never the library's own."""
    return not isinstance(exc, ChemPersistError) and isinstance(
        exc, asyncpg.PostgresError | asyncpg.InterfaceError | asyncpg.InternalClientError | OSError | EOFError
    )


def translate(exc: BaseException, *, operation: str, retried: bool) -> BaseException:
    """The library's exception for ``exc`` (``exc`` itself when it is not a driver error).

    ``retried`` says whether retries were already spent on it (``Database.run``) or not (a
    statement inside a unit of work, which only a whole-unit retry may repeat)."""
    if not is_driver_error(exc):
        return exc
    sqlstate = getattr(exc, "sqlstate", None)
    sqlstate = sqlstate if isinstance(sqlstate, str) else None
    detail = f"{type(exc).__name__}: {exc}"
    reason = transient_reason(exc)
    if reason is not None:
        outcome = "failed after every retry" if retried else "failed (the unit of work may be retried)"
        return TransientDatabaseError(f"{operation} {outcome}: {detail}", reason=reason, sqlstate=sqlstate)
    if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
        constraint = getattr(exc, "constraint_name", None)
        return ConstraintViolationError(
            f"{operation}: the database refused the write ({detail})",
            sqlstate=sqlstate,
            constraint=constraint,
        )
    return DatabaseError(f"{operation} failed: {detail}", sqlstate=sqlstate)
