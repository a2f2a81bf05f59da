-- One row per failed step attempt, written in the same statement as its StepFailed event.
-- details is documented JSON: {"stack_trace": ..., "input_hash": ..., "params": {...}}
-- depends: 0001_event_log

CREATE TABLE IF NOT EXISTS step_execution_errors (
    id             BIGSERIAL   PRIMARY KEY,
    flow_id        UUID        NOT NULL,
    step_id        TEXT        NOT NULL,
    attempt_number INT         NOT NULL,
    error_class    TEXT        NOT NULL,
    error_message  TEXT,
    details        JSONB       NULL,
    retry_count    INT         NOT NULL DEFAULT 0,
    max_retries    INT         NOT NULL DEFAULT 3,
    event_seq      BIGINT      REFERENCES event_log (seq),
    ts             TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT step_execution_errors_attempt_number_check CHECK (attempt_number >= 1),
    CONSTRAINT step_execution_errors_error_class_check CHECK (
        error_class IN ('validation', 'runtime', 'transient', 'permanent')
    ),
    CONSTRAINT step_execution_errors_event_seq_key UNIQUE (event_seq)
);

CREATE INDEX IF NOT EXISTS step_execution_errors_flow_id_idx
    ON step_execution_errors (flow_id);
CREATE INDEX IF NOT EXISTS step_execution_errors_step_attempt_idx
    ON step_execution_errors (step_id, attempt_number);
CREATE INDEX IF NOT EXISTS step_execution_errors_flow_step_attempt_idx
    ON step_execution_errors (flow_id, step_id, attempt_number);

DROP TRIGGER IF EXISTS step_execution_errors_append_only ON step_execution_errors;
CREATE TRIGGER step_execution_errors_append_only
    BEFORE UPDATE OR DELETE ON step_execution_errors
    FOR EACH ROW EXECUTE FUNCTION chem_reject_mutation();

DROP TRIGGER IF EXISTS step_execution_errors_no_truncate ON step_execution_errors;
CREATE TRIGGER step_execution_errors_no_truncate
    BEFORE TRUNCATE ON step_execution_errors
    FOR EACH STATEMENT EXECUTE FUNCTION chem_reject_mutation();
