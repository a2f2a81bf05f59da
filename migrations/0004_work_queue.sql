-- The durable work queue (SPEC 8.1): work_queue holds active jobs only (ready or claimed);
-- finished jobs move to work_queue_history in the statement that finishes them.
-- depends: 0003_step_execution_errors

CREATE TABLE IF NOT EXISTS work_queue (
    id               BIGSERIAL   PRIMARY KEY,
    queue            TEXT        NOT NULL,
    kind             TEXT        NOT NULL,
    key              TEXT        NULL,
    payload          JSONB       NOT NULL DEFAULT 'null'::jsonb,
    priority         INT         NOT NULL DEFAULT 0,
    not_before       TIMESTAMPTZ NOT NULL DEFAULT now(),
    attempt          INT         NOT NULL DEFAULT 0,
    max_attempts     INT         NULL,
    flow_id          UUID        NULL,
    definition       TEXT        NULL,
    state            TEXT        NOT NULL DEFAULT 'ready',
    lease_token      UUID        NULL,
    lease_expires_at TIMESTAMPTZ NULL,
    worker_id        TEXT        NULL,
    cancel_requested BOOLEAN     NOT NULL DEFAULT false,
    last_error       TEXT        NULL,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT work_queue_state_check CHECK (state IN ('ready', 'claimed')),
    CONSTRAINT work_queue_lease_check CHECK (
        (state = 'claimed') = (lease_token IS NOT NULL AND lease_expires_at IS NOT NULL)
    ),
    CONSTRAINT work_queue_queue_check CHECK (queue <> '' AND length(queue) <= 200),
    CONSTRAINT work_queue_kind_check CHECK (kind <> '' AND length(kind) <= 200),
    CONSTRAINT work_queue_key_check CHECK (key IS NULL OR (key <> '' AND length(key) <= 500)),
    CONSTRAINT work_queue_attempt_check CHECK (attempt >= 0),
    CONSTRAINT work_queue_max_attempts_check CHECK (max_attempts IS NULL OR max_attempts >= 1)
) WITH (
    fillfactor = 70,
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 0
);

-- A key is unique among a queue's active jobs.
CREATE UNIQUE INDEX IF NOT EXISTS work_queue_key_idx ON work_queue (queue, key) WHERE key IS NOT NULL;
-- The two halves of the claim, each with its own partial index (never an OR across states).
CREATE INDEX IF NOT EXISTS work_queue_ready_idx
    ON work_queue (queue, priority DESC, not_before, id) WHERE state = 'ready';
CREATE INDEX IF NOT EXISTS work_queue_expired_idx
    ON work_queue (queue, lease_expires_at) WHERE state = 'claimed';
CREATE INDEX IF NOT EXISTS work_queue_flow_idx ON work_queue (flow_id) WHERE flow_id IS NOT NULL;

CREATE TABLE IF NOT EXISTS work_queue_history (
    id           BIGINT      PRIMARY KEY,
    queue        TEXT        NOT NULL,
    kind         TEXT        NOT NULL,
    key          TEXT        NULL,
    payload      JSONB       NOT NULL,
    priority     INT         NOT NULL,
    attempt      INT         NOT NULL,
    max_attempts INT         NULL,
    flow_id      UUID        NULL,
    definition   TEXT        NULL,
    state        TEXT        NOT NULL,
    lease_token  UUID        NULL,
    worker_id    TEXT        NULL,
    last_error   TEXT        NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    finished_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT work_queue_history_state_check CHECK (state IN ('completed', 'dead', 'cancelled'))
);

CREATE INDEX IF NOT EXISTS work_queue_history_finished_idx ON work_queue_history (finished_at);
CREATE INDEX IF NOT EXISTS work_queue_history_flow_idx ON work_queue_history (flow_id) WHERE flow_id IS NOT NULL;
