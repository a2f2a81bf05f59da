"""A stable text description of the schema the migrations build (kept as ``docs/schema.sql``).

Built from the catalogs rather than ``pg_dump`` so it does not depend on the client's version and
lists only what the migrations own, in a fixed order.
"""

from __future__ import annotations

import asyncpg

OWNED_TABLES = (
    "event_log",
    "workflow_step_artifacts",
    "step_execution_errors",
    "work_queue",
    "work_queue_history",
    "flow_definitions",
    "workflow_runs",
    "workflow_stages",
    "workflow_logs",
    "workflow_artifacts",
    "ai_calls",
    "ai_call_batches",
    "subscription_checkpoints",
)

_COLUMNS = """
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid)
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE c.relname = ANY($1::text[]) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY c.relname, a.attnum
"""

_CONSTRAINTS = """
SELECT c.relname, k.conname, pg_get_constraintdef(k.oid)
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()
WHERE c.relname = ANY($1::text[]) AND k.contype <> 'n'  -- PostgreSQL 18 lists NOT NULL here too
ORDER BY c.relname, k.conname
"""

_INDEXES = """
SELECT tablename, indexname, indexdef FROM pg_indexes
WHERE schemaname = current_schema() AND tablename = ANY($1::text[])
ORDER BY tablename, indexname
"""

_TRIGGERS = """
SELECT c.relname, t.tgname, pg_get_triggerdef(t.oid)
FROM pg_trigger t
JOIN pg_class c ON c.oid = t.tgrelid
JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()
WHERE c.relname = ANY($1::text[]) AND NOT t.tgisinternal
ORDER BY c.relname, t.tgname
"""

_DOMAINS = """
SELECT t.typname, format_type(t.typbasetype, t.typtypmod), k.conname, pg_get_constraintdef(k.oid)
FROM pg_type t
JOIN pg_namespace n ON n.oid = t.typnamespace AND n.nspname = current_schema()
LEFT JOIN pg_constraint k ON k.contypid = t.oid AND k.contype <> 'n'
WHERE t.typtype = 'd' AND t.oid IN (
    SELECT a.atttypid FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
    WHERE c.relname = ANY($1::text[]) AND c.relnamespace = n.oid AND NOT a.attisdropped
)
ORDER BY t.typname, k.conname
"""
"""The domains the owned tables' columns use, with their checks."""


_FUNCTIONS = """
SELECT p.proname, n.nspname, pg_get_functiondef(p.oid)
FROM pg_proc p
JOIN pg_namespace n ON n.oid = p.pronamespace AND n.nspname = current_schema()
WHERE p.proname LIKE 'chem\\_%'
ORDER BY p.proname, pg_get_function_identity_arguments(p.oid)
"""
"""The library's functions (``chem_*``: trigger functions, ``chem_duration_ms``), whole: a migration
that replaces a body changes the schema as much as one that adds a column. Shown without the
schema's name, which the definition spells out."""


_HEADER = (
    "-- Schema built by migrations/ (generated; checked by tests/backends/postgres/test_migrations.py; "
    "regenerate with: python -m tests.backends.postgres.test_migrations)"
)


async def describe_schema(conn: asyncpg.Connection) -> str:
    tables = list(OWNED_TABLES)
    lines = [_HEADER, ""]
    columns = await conn.fetch(_COLUMNS, tables)
    constraints = await conn.fetch(_CONSTRAINTS, tables)
    indexes = await conn.fetch(_INDEXES, tables)
    triggers = await conn.fetch(_TRIGGERS, tables)
    domains = await conn.fetch(_DOMAINS, tables)
    functions = await conn.fetch(_FUNCTIONS)
    for table in tables:
        lines.append(f"TABLE {table}")
        for _, name, type_, notnull, default in (r for r in columns if r[0] == table):
            extra = (" NOT NULL" if notnull else "") + (f" DEFAULT {default}" if default else "")
            lines.append(f"    COLUMN {name} {type_}{extra}")
        for _, name, definition in (r for r in constraints if r[0] == table):
            lines.append(f"    CONSTRAINT {name} {definition}")
        for _, name, definition in (r for r in indexes if r[0] == table):
            lines.append(f"    INDEX {name}: {definition}")
        for _, name, definition in (r for r in triggers if r[0] == table):
            lines.append(f"    TRIGGER {name}: {definition}")
        lines.append("")
    for name in dict.fromkeys(r[0] for r in domains):
        rows = [r for r in domains if r[0] == name]
        lines.append(f"DOMAIN {name} {rows[0][1]}")
        lines.extend(f"    CONSTRAINT {r[2]} {r[3]}" for r in rows if r[2] is not None)
        lines.append("")
    for name, schema, definition in functions:
        lines.append(f"FUNCTION {name}")
        definition = definition.replace(f"FUNCTION {schema}.", "FUNCTION ", 1)
        lines.extend(f"    {line}".rstrip() for line in definition.strip().splitlines())
        lines.append("")
    return "\n".join(lines)
