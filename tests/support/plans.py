"""Reading query plans: what a pooled connection would run for a statement, generic or custom.

A generic plan is what a prepared statement keeps once PostgreSQL stops re-planning it (after five
executions, if it looks no costlier): made while a table was small or never analyzed, it is kept
as the table grows. ``scans`` lists every scan node of a plan, so a test can refuse a sequential
scan of a hot table whatever the statistics say.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from chem_persistence_async.backends.postgres.sql.query import Query


async def plan_of(
    conn: asyncpg.Connection, q: Query, values: dict[str, Any], *, generic: bool
) -> dict[str, Any]:
    """The JSON plan of ``q`` with ``values``, forced generic or custom, without running it.

    ``EXPLAIN EXECUTE`` of a prepared statement inside a transaction that is rolled back: a
    data-modifying statement is planned, never executed."""
    async with conn.transaction():
        await conn.execute(
            f"SET LOCAL plan_cache_mode = {'force_generic_plan' if generic else 'force_custom_plan'}"
        )
        await conn.execute(f"PREPARE chem_plan AS {q.text}")
        args = ", ".join(literal(value) for value in q.args(values))
        text = await conn.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE chem_plan({args})")
        await conn.execute("DEALLOCATE chem_plan")
    plan: dict[str, Any] = json.loads(text)[0]["Plan"]
    return plan


def literal(value: Any) -> str:
    """``value`` as an SQL literal (for ``EXECUTE``, which takes no bind parameters): test data only."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, timedelta):
        return f"'{value.total_seconds()} seconds'::interval"
    if isinstance(value, datetime):
        return f"'{value.isoformat()}'::timestamptz"
    if isinstance(value, UUID):
        return f"'{value}'::uuid"
    if isinstance(value, bytes):
        return _quote(value.decode()) + "::jsonb"
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, list | tuple):
        if all(v is None for v in value):  # an untyped literal: the parameter's own type applies
            return "'{" + ",".join("NULL" for _ in value) + "}'"
        return "ARRAY[" + ", ".join(literal(v) for v in value) + "]"
    raise TypeError(f"no literal for {type(value).__name__}")


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from nodes(child)


def scans(plan: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    """``(node type, relation, index)`` of every scan of a table or index."""
    return [
        (node["Node Type"], node["Relation Name"], node.get("Index Name"))
        for node in nodes(plan)
        if "Relation Name" in node
    ]


def sequential_scans_of(plan: dict[str, Any], tables: Sequence[str]) -> list[str]:
    return [relation for kind, relation, _ in scans(plan) if kind == "Seq Scan" and relation in tables]
