-- Workflow records (SPEC 9.1, reference design 004): runs, stages, logs and artifacts by key.
-- For flows run by the engine, runs and stages are a projection of event_log kept in the same
-- transaction as the events (flow_version: the last event a run reflects).
-- depends: 0005_flow_definitions

CREATE OR REPLACE FUNCTION chem_touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

-- Whole milliseconds between two times (floored); NULL when either is. The projection's duration.
CREATE OR REPLACE FUNCTION chem_duration_ms(started timestamptz, completed timestamptz) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT floor(extract(epoch FROM completed - started) * 1000)::bigint
$$;

CREATE TABLE IF NOT EXISTS workflow_runs (
    id            UUID             PRIMARY KEY,
    created_at    TIMESTAMPTZ      NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ      NOT NULL DEFAULT now(),
    workflow_id   TEXT             NOT NULL,
    workflow_name TEXT             NOT NULL,
    workflow_type TEXT             NOT NULL,
    status        TEXT             NOT NULL DEFAULT 'PENDING',
    started_at    TIMESTAMPTZ      NULL,
    completed_at  TIMESTAMPTZ      NULL,
    duration      BIGINT           NULL,
    input         JSONB            NOT NULL,
    output        JSONB            NULL,
    config        JSONB            NOT NULL DEFAULT '{}'::jsonb,
    total_cost    DOUBLE PRECISION NOT NULL DEFAULT 0,
    total_tokens  BIGINT           NOT NULL DEFAULT 0,
    priority      INT              NOT NULL DEFAULT 5,
    flow_version  INT              NULL,
    CONSTRAINT workflow_runs_status_check CHECK (
        status IN ('PENDING', 'RUNNING', 'SUSPENDED', 'COMPLETED', 'FAILED', 'CANCELLED', 'SKIPPED')
    ),
    CONSTRAINT workflow_runs_workflow_id_check CHECK (workflow_id <> '' AND length(workflow_id) <= 500),
    CONSTRAINT workflow_runs_workflow_name_check CHECK (workflow_name <> '' AND length(workflow_name) <= 200),
    CONSTRAINT workflow_runs_workflow_type_check CHECK (workflow_type <> '' AND length(workflow_type) <= 200),
    CONSTRAINT workflow_runs_totals_check CHECK (total_cost >= 0 AND total_tokens >= 0),
    CONSTRAINT workflow_runs_duration_check CHECK (duration IS NULL OR duration >= 0)
) WITH (fillfactor = 80);

-- Runs in a status, oldest first (get_runs_by_status; "which flows failed today?").
CREATE INDEX IF NOT EXISTS workflow_runs_status_idx ON workflow_runs (status, created_at, id);
CREATE INDEX IF NOT EXISTS workflow_runs_workflow_type_idx ON workflow_runs (workflow_type, created_at);
CREATE INDEX IF NOT EXISTS workflow_runs_created_at_idx ON workflow_runs (created_at);

DROP TRIGGER IF EXISTS workflow_runs_updated_at ON workflow_runs;
CREATE TRIGGER workflow_runs_updated_at
    BEFORE UPDATE ON workflow_runs
    FOR EACH ROW EXECUTE FUNCTION chem_touch_updated_at();

CREATE TABLE IF NOT EXISTS workflow_stages (
    id              UUID        PRIMARY KEY,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    workflow_run_id UUID        NOT NULL REFERENCES workflow_runs (id) ON DELETE CASCADE,
    stage_id        TEXT        NOT NULL,
    stage_name      TEXT        NOT NULL,
    stage_number    INT         NOT NULL,
    execution_group INT         NOT NULL,
    status          TEXT        NOT NULL DEFAULT 'PENDING',
    started_at      TIMESTAMPTZ NULL,
    completed_at    TIMESTAMPTZ NULL,
    duration        BIGINT      NULL,
    input_data      JSONB       NULL,
    output_data     JSONB       NULL,
    config          JSONB       NULL,
    suspended_state JSONB       NULL,
    resume_data     JSONB       NULL,
    next_poll_at    TIMESTAMPTZ NULL,
    poll_interval   INT         NULL,
    max_wait_until  TIMESTAMPTZ NULL,
    metrics         JSONB       NULL,
    embedding_info  JSONB       NULL,
    error_message   TEXT        NULL,
    CONSTRAINT workflow_stages_run_stage_key UNIQUE (workflow_run_id, stage_id),
    CONSTRAINT workflow_stages_status_check CHECK (
        status IN ('PENDING', 'RUNNING', 'SUSPENDED', 'COMPLETED', 'FAILED', 'CANCELLED', 'SKIPPED')
    ),
    CONSTRAINT workflow_stages_stage_id_check CHECK (stage_id <> '' AND length(stage_id) <= 200),
    CONSTRAINT workflow_stages_stage_name_check CHECK (stage_name <> '' AND length(stage_name) <= 200),
    CONSTRAINT workflow_stages_numbers_check CHECK (stage_number >= 0 AND execution_group >= 0),
    CONSTRAINT workflow_stages_duration_check CHECK (duration IS NULL OR duration >= 0)
) WITH (fillfactor = 80);

CREATE INDEX IF NOT EXISTS workflow_stages_status_idx ON workflow_stages (status);
CREATE INDEX IF NOT EXISTS workflow_stages_next_poll_at_idx ON workflow_stages (next_poll_at)
    WHERE next_poll_at IS NOT NULL;

DROP TRIGGER IF EXISTS workflow_stages_updated_at ON workflow_stages;
CREATE TRIGGER workflow_stages_updated_at
    BEFORE UPDATE ON workflow_stages
    FOR EACH ROW EXECUTE FUNCTION chem_touch_updated_at();

CREATE TABLE IF NOT EXISTS workflow_logs (
    id                UUID        PRIMARY KEY,
    seq               BIGSERIAL   NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    workflow_run_id   UUID        NULL REFERENCES workflow_runs (id) ON DELETE CASCADE,
    workflow_stage_id UUID        NULL REFERENCES workflow_stages (id) ON DELETE CASCADE,
    level             TEXT        NOT NULL,
    message           TEXT        NOT NULL,
    metadata          JSONB       NULL,
    CONSTRAINT workflow_logs_level_check CHECK (level IN ('DEBUG', 'INFO', 'WARN', 'ERROR'))
);

-- seq orders a run's logs as they were written (created_at is the transaction's time).
CREATE INDEX IF NOT EXISTS workflow_logs_run_idx ON workflow_logs (workflow_run_id, seq);
CREATE INDEX IF NOT EXISTS workflow_logs_stage_idx ON workflow_logs (workflow_stage_id)
    WHERE workflow_stage_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS workflow_logs_created_at_idx ON workflow_logs (created_at);

CREATE TABLE IF NOT EXISTS workflow_artifacts (
    id                UUID        PRIMARY KEY,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    workflow_run_id   UUID        NOT NULL REFERENCES workflow_runs (id) ON DELETE CASCADE,
    workflow_stage_id UUID        NULL REFERENCES workflow_stages (id) ON DELETE CASCADE,
    key               TEXT        NOT NULL,
    type              TEXT        NOT NULL,
    data              JSONB       NOT NULL,
    size              INT         NOT NULL,
    metadata          JSONB       NULL,
    CONSTRAINT workflow_artifacts_run_key_key UNIQUE (workflow_run_id, key),
    CONSTRAINT workflow_artifacts_key_check CHECK (key <> '' AND length(key) <= 500),
    CONSTRAINT workflow_artifacts_type_check CHECK (type IN ('STAGE_OUTPUT', 'ARTIFACT', 'METADATA')),
    CONSTRAINT workflow_artifacts_size_check CHECK (size >= 0)
);

CREATE INDEX IF NOT EXISTS workflow_artifacts_type_idx ON workflow_artifacts (type);
CREATE INDEX IF NOT EXISTS workflow_artifacts_stage_idx ON workflow_artifacts (workflow_stage_id)
    WHERE workflow_stage_id IS NOT NULL;

DROP TRIGGER IF EXISTS workflow_artifacts_updated_at ON workflow_artifacts;
CREATE TRIGGER workflow_artifacts_updated_at
    BEFORE UPDATE ON workflow_artifacts
    FOR EACH ROW EXECUTE FUNCTION chem_touch_updated_at();
