-- The AI-call log (SPEC 9.2, reference design 004's AICall): one row per model call, written in
-- batches by AICallLogger. id is made by the client when the call is logged, so a batch retried
-- after a lost acknowledgement writes nothing twice. cost is NUMERIC so sums are exact.
-- depends: 0006_workflow_records

CREATE TABLE IF NOT EXISTS ai_calls (
    id            UUID        PRIMARY KEY,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    topic         TEXT        NOT NULL,
    call_type     TEXT        NOT NULL,
    model_key     TEXT        NOT NULL,
    model_id      TEXT        NOT NULL,
    prompt        TEXT        NOT NULL,
    response      TEXT        NOT NULL,
    input_tokens  INT         NOT NULL,
    output_tokens INT         NOT NULL,
    cost          NUMERIC     NOT NULL,
    metadata      JSONB       NULL,
    batch_id      TEXT        NULL,
    CONSTRAINT ai_calls_tokens_check CHECK (input_tokens >= 0 AND output_tokens >= 0),
    CONSTRAINT ai_calls_cost_check CHECK (cost >= 0),
    CONSTRAINT ai_calls_names_check CHECK (
        length(topic) <= 500 AND call_type <> '' AND length(call_type) <= 200
        AND model_key <> '' AND length(model_key) <= 200 AND model_id <> '' AND length(model_id) <= 200
    )
);

-- text_pattern_ops: get_stats(topic_prefix) is a LIKE 'prefix%' scan in any collation.
CREATE INDEX IF NOT EXISTS ai_calls_topic_idx ON ai_calls (topic text_pattern_ops);
CREATE INDEX IF NOT EXISTS ai_calls_created_at_idx ON ai_calls (created_at);
CREATE INDEX IF NOT EXISTS ai_calls_model_key_idx ON ai_calls (model_key);
CREATE INDEX IF NOT EXISTS ai_calls_batch_idx ON ai_calls (batch_id) WHERE batch_id IS NOT NULL;

-- One row per batch whose results were logged: log_batch_results is idempotent by batch id
-- (the row and the batch's calls are written by one statement), and is_recorded reads it.
CREATE TABLE IF NOT EXISTS ai_call_batches (
    batch_id    TEXT        PRIMARY KEY,
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    calls       INT         NOT NULL,
    CONSTRAINT ai_call_batches_batch_id_check CHECK (batch_id <> '' AND length(batch_id) <= 500)
);
