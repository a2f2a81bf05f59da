-- Global ordered reads and subscriptions (SPEC 8.5).
-- depends: 0010_record_duration_never_negative
--
-- 1. event_log.tx_id: the id of the transaction that wrote the event. A sequence value is not a
--    commit order (a transaction that took a lower seq can commit after a reader moved past it), so
--    read_all orders by (tx_id, seq) and reads only below pg_snapshot_xmin(pg_current_snapshot()):
--    every transaction whose id is lower has ended, so no later commit can insert before what a
--    reader has seen. pg_current_xact_id() is the top-level transaction's id, inside a savepoint too.
--    Adding the column rewrites the table once (a volatile default): the events stored before it
--    all take this migration's id and keep their seq order, ahead of every later one.
-- 2. event_log_tx_order_idx serves read_all in index order: one more index entry per event, the
--    whole cost on appends (benchmarks/README.md measures it).
-- 3. subscription_checkpoints: where each named subscription has read up to, written in the same
--    transaction as whatever its handler wrote (NULL: nothing read yet; the row is what a runner locks).

ALTER TABLE event_log ADD COLUMN IF NOT EXISTS tx_id xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX IF NOT EXISTS event_log_tx_order_idx ON event_log (tx_id, seq);

CREATE TABLE IF NOT EXISTS subscription_checkpoints (
    name text PRIMARY KEY CHECK (name <> '' AND length(name) <= 200),
    position text CHECK (position ~ '^[0-9]{20}\.[0-9]{20}$'),
    updated_at timestamptz NOT NULL DEFAULT now()
);
