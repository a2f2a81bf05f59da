-- Content-addressed step outputs, written in the same statement as the StepFinished that lists them.
-- depends: 0001_event_log

CREATE TABLE IF NOT EXISTS workflow_step_artifacts (
    artifact_hash   TEXT   PRIMARY KEY,
    kind            TEXT   NOT NULL,
    payload         JSONB  NOT NULL,
    metadata        JSONB  NULL,
    produced_in_seq BIGINT NOT NULL REFERENCES event_log (seq),
    CONSTRAINT workflow_step_artifacts_hash_check CHECK (artifact_hash ~ '^[0-9a-f]{64}$')
);

CREATE INDEX IF NOT EXISTS workflow_step_artifacts_produced_in_seq_idx
    ON workflow_step_artifacts (produced_in_seq);

DROP TRIGGER IF EXISTS workflow_step_artifacts_append_only ON workflow_step_artifacts;
CREATE TRIGGER workflow_step_artifacts_append_only
    BEFORE UPDATE OR DELETE ON workflow_step_artifacts
    FOR EACH ROW EXECUTE FUNCTION chem_reject_mutation();

DROP TRIGGER IF EXISTS workflow_step_artifacts_no_truncate ON workflow_step_artifacts;
CREATE TRIGGER workflow_step_artifacts_no_truncate
    BEFORE TRUNCATE ON workflow_step_artifacts
    FOR EACH STATEMENT EXECUTE FUNCTION chem_reject_mutation();
