-- Schema built by migrations/ (generated; checked by tests/db/test_migrations.py; regenerate with: python -m tests.db.test_migrations)

TABLE event_log
    COLUMN seq bigint NOT NULL DEFAULT nextval('event_log_seq_seq'::regclass)
    COLUMN event_id uuid NOT NULL
    COLUMN flow_id uuid NOT NULL
    COLUMN flow_version integer NOT NULL
    COLUMN ts timestamp with time zone NOT NULL DEFAULT now()
    COLUMN event_type text NOT NULL
    COLUMN payload jsonb NOT NULL
    CONSTRAINT event_log_event_id_key UNIQUE (event_id)
    CONSTRAINT event_log_event_type_check CHECK (((event_type = lower(event_type)) AND (event_type = ANY (ARRAY['flowinitialized'::text, 'stepstarted'::text, 'stepfinished'::text, 'stepfailed'::text, 'stepsignal'::text, 'propertypreferenceassigned'::text, 'retryscheduled'::text, 'flowcompleted'::text]))))
    CONSTRAINT event_log_flow_version_check CHECK ((flow_version >= 1))
    CONSTRAINT event_log_flow_version_key UNIQUE (flow_id, flow_version)
    CONSTRAINT event_log_payload_check CHECK (((jsonb_typeof(payload) = 'object'::text) AND ((payload ->> 'event_type'::text) = event_type)))
    CONSTRAINT event_log_pkey PRIMARY KEY (seq)
    INDEX event_log_event_id_key: CREATE UNIQUE INDEX event_log_event_id_key ON public.event_log USING btree (event_id)
    INDEX event_log_flow_id_seq_idx: CREATE INDEX event_log_flow_id_seq_idx ON public.event_log USING btree (flow_id, seq)
    INDEX event_log_flow_version_key: CREATE UNIQUE INDEX event_log_flow_version_key ON public.event_log USING btree (flow_id, flow_version)
    INDEX event_log_pkey: CREATE UNIQUE INDEX event_log_pkey ON public.event_log USING btree (seq)
    TRIGGER event_log_append_only: CREATE TRIGGER event_log_append_only BEFORE DELETE OR UPDATE ON public.event_log FOR EACH ROW EXECUTE FUNCTION chem_reject_mutation()
    TRIGGER event_log_no_truncate: CREATE TRIGGER event_log_no_truncate BEFORE TRUNCATE ON public.event_log FOR EACH STATEMENT EXECUTE FUNCTION chem_reject_mutation()

TABLE workflow_step_artifacts
    COLUMN artifact_hash text NOT NULL
    COLUMN kind text NOT NULL
    COLUMN payload jsonb NOT NULL
    COLUMN metadata jsonb
    COLUMN produced_in_seq bigint NOT NULL
    CONSTRAINT workflow_step_artifacts_hash_check CHECK ((artifact_hash ~ '^[0-9a-f]{64}$'::text))
    CONSTRAINT workflow_step_artifacts_pkey PRIMARY KEY (artifact_hash)
    CONSTRAINT workflow_step_artifacts_produced_in_seq_fkey FOREIGN KEY (produced_in_seq) REFERENCES event_log(seq)
    INDEX workflow_step_artifacts_pkey: CREATE UNIQUE INDEX workflow_step_artifacts_pkey ON public.workflow_step_artifacts USING btree (artifact_hash)
    INDEX workflow_step_artifacts_produced_in_seq_idx: CREATE INDEX workflow_step_artifacts_produced_in_seq_idx ON public.workflow_step_artifacts USING btree (produced_in_seq)
    TRIGGER workflow_step_artifacts_append_only: CREATE TRIGGER workflow_step_artifacts_append_only BEFORE DELETE OR UPDATE ON public.workflow_step_artifacts FOR EACH ROW EXECUTE FUNCTION chem_reject_mutation()
    TRIGGER workflow_step_artifacts_no_truncate: CREATE TRIGGER workflow_step_artifacts_no_truncate BEFORE TRUNCATE ON public.workflow_step_artifacts FOR EACH STATEMENT EXECUTE FUNCTION chem_reject_mutation()

TABLE step_execution_errors
    COLUMN id bigint NOT NULL DEFAULT nextval('step_execution_errors_id_seq'::regclass)
    COLUMN flow_id uuid NOT NULL
    COLUMN step_id text NOT NULL
    COLUMN attempt_number integer NOT NULL
    COLUMN error_class text NOT NULL
    COLUMN error_message text
    COLUMN details jsonb
    COLUMN retry_count integer NOT NULL DEFAULT 0
    COLUMN max_retries integer NOT NULL DEFAULT 3
    COLUMN event_seq bigint
    COLUMN ts timestamp with time zone NOT NULL DEFAULT now()
    CONSTRAINT step_execution_errors_attempt_number_check CHECK ((attempt_number >= 1))
    CONSTRAINT step_execution_errors_error_class_check CHECK ((error_class = ANY (ARRAY['validation'::text, 'runtime'::text, 'transient'::text, 'permanent'::text])))
    CONSTRAINT step_execution_errors_event_seq_fkey FOREIGN KEY (event_seq) REFERENCES event_log(seq)
    CONSTRAINT step_execution_errors_event_seq_key UNIQUE (event_seq)
    CONSTRAINT step_execution_errors_pkey PRIMARY KEY (id)
    INDEX step_execution_errors_event_seq_key: CREATE UNIQUE INDEX step_execution_errors_event_seq_key ON public.step_execution_errors USING btree (event_seq)
    INDEX step_execution_errors_flow_id_idx: CREATE INDEX step_execution_errors_flow_id_idx ON public.step_execution_errors USING btree (flow_id)
    INDEX step_execution_errors_flow_step_attempt_idx: CREATE INDEX step_execution_errors_flow_step_attempt_idx ON public.step_execution_errors USING btree (flow_id, step_id, attempt_number)
    INDEX step_execution_errors_pkey: CREATE UNIQUE INDEX step_execution_errors_pkey ON public.step_execution_errors USING btree (id)
    INDEX step_execution_errors_step_attempt_idx: CREATE INDEX step_execution_errors_step_attempt_idx ON public.step_execution_errors USING btree (step_id, attempt_number)
    TRIGGER step_execution_errors_append_only: CREATE TRIGGER step_execution_errors_append_only BEFORE DELETE OR UPDATE ON public.step_execution_errors FOR EACH ROW EXECUTE FUNCTION chem_reject_mutation()
    TRIGGER step_execution_errors_no_truncate: CREATE TRIGGER step_execution_errors_no_truncate BEFORE TRUNCATE ON public.step_execution_errors FOR EACH STATEMENT EXECUTE FUNCTION chem_reject_mutation()
