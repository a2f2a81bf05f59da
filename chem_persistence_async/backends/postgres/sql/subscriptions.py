"""The subscriptions' checkpoints (``subscription_checkpoints``, SPEC 8.5)."""

from __future__ import annotations

from chem_persistence_async.backends.postgres.sql.query import query

HOLD = query("SELECT position FROM subscription_checkpoints WHERE name = :name FOR UPDATE")
"""The checkpoint, its row locked until the transaction ends. Under READ COMMITTED a runner that
waited for another's lock gets the row as that one committed it (a later snapshot than its
statement's); under REPEATABLE READ or SERIALIZABLE it gets a serialization failure instead, and
``run_in_transaction`` starts its unit of work again."""

ADD = query("INSERT INTO subscription_checkpoints (name) VALUES (:name) ON CONFLICT (name) DO NOTHING")
"""The row ``HOLD`` locks, for a subscription that has none yet (a second runner adding it at the
same time waits for the first, then adds nothing)."""

SAVE = query(
    """
INSERT INTO subscription_checkpoints (name, position) VALUES (:name, :position)
ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, updated_at = now()
"""
)

GET = query("SELECT position FROM subscription_checkpoints WHERE name = :name")
