"""The definition registry's SQL (``flow_definitions``)."""

from __future__ import annotations

from chem_persistence_async.backends.postgres.sql.query import query

REGISTER = query(
    """
WITH ins AS (
    INSERT INTO flow_definitions (name, hash, steps) VALUES (:name, :hash, :steps::jsonb)
    ON CONFLICT (name, hash) DO NOTHING
    RETURNING name, hash, steps, created_at
)
SELECT name, hash, steps, created_at FROM ins
UNION ALL
SELECT name, hash, steps, created_at FROM flow_definitions
WHERE name = :name AND hash = :hash AND NOT EXISTS (SELECT 1 FROM ins)
"""
)

GET = query("SELECT name, hash, steps, created_at FROM flow_definitions WHERE name = :name AND hash = :hash")

LIST = query(
    """
SELECT name, hash, steps, created_at FROM flow_definitions
WHERE :name::text IS NULL OR name = :name ORDER BY name, created_at, hash
"""
)
