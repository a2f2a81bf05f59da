-- The definition registry (SPEC 8.2): every flow definition a worker may run, by name and hash.
-- depends: 0004_work_queue

CREATE TABLE IF NOT EXISTS flow_definitions (
    name       TEXT        NOT NULL,
    hash       TEXT        NOT NULL,
    steps      JSONB       NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT flow_definitions_pkey PRIMARY KEY (name, hash),
    CONSTRAINT flow_definitions_hash_check CHECK (hash ~ '^[0-9a-f]{64}$'),
    CONSTRAINT flow_definitions_name_check CHECK (name <> '' AND length(name) <= 200)
);
