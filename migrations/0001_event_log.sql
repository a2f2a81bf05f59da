-- The append-only log of flow events.
-- event_id is made by the client before its first attempt, so a retry finds the row it already wrote.

CREATE TABLE IF NOT EXISTS event_log (
    seq          BIGSERIAL   PRIMARY KEY,
    event_id     UUID        NOT NULL,
    flow_id      UUID        NOT NULL,
    flow_version INT         NOT NULL,
    ts           TIMESTAMPTZ NOT NULL DEFAULT now(),
    event_type   TEXT        NOT NULL,
    payload      JSONB       NOT NULL,
    CONSTRAINT event_log_event_id_key UNIQUE (event_id),
    CONSTRAINT event_log_flow_version_key UNIQUE (flow_id, flow_version),
    CONSTRAINT event_log_flow_version_check CHECK (flow_version >= 1),
    CONSTRAINT event_log_event_type_check CHECK (
        event_type = lower(event_type)
        AND event_type IN (
            'flowinitialized', 'stepstarted', 'stepfinished', 'stepfailed',
            'stepsignal', 'propertypreferenceassigned', 'retryscheduled', 'flowcompleted'
        )
    ),
    CONSTRAINT event_log_payload_check CHECK (
        jsonb_typeof(payload) = 'object' AND payload ->> 'event_type' = event_type
    )
);

CREATE INDEX IF NOT EXISTS event_log_flow_id_seq_idx ON event_log (flow_id, seq);

CREATE OR REPLACE FUNCTION chem_reject_mutation() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$;

DROP TRIGGER IF EXISTS event_log_append_only ON event_log;
CREATE TRIGGER event_log_append_only
    BEFORE UPDATE OR DELETE ON event_log
    FOR EACH ROW EXECUTE FUNCTION chem_reject_mutation();

DROP TRIGGER IF EXISTS event_log_no_truncate ON event_log;
CREATE TRIGGER event_log_no_truncate
    BEFORE TRUNCATE ON event_log
    FOR EACH STATEMENT EXECUTE FUNCTION chem_reject_mutation();
