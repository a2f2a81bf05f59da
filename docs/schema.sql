-- Schema built by migrations/ (generated; checked by tests/backends/postgres/test_migrations.py; regenerate with: python -m tests.backends.postgres.test_migrations)

TABLE event_log
    COLUMN seq bigint NOT NULL DEFAULT nextval('event_log_seq_seq'::regclass)
    COLUMN event_id uuid NOT NULL
    COLUMN flow_id uuid NOT NULL
    COLUMN flow_version integer NOT NULL
    COLUMN ts timestamp with time zone NOT NULL DEFAULT now()
    COLUMN event_type text NOT NULL
    COLUMN payload jsonb NOT NULL
    COLUMN tx_id xid8 NOT NULL DEFAULT pg_current_xact_id()
    CONSTRAINT event_log_event_id_key UNIQUE (event_id)
    CONSTRAINT event_log_event_type_check CHECK (((event_type = lower(event_type)) AND (event_type = ANY (ARRAY['flowinitialized'::text, 'stepstarted'::text, 'stepfinished'::text, 'stepfailed'::text, 'stepsignal'::text, 'propertypreferenceassigned'::text, 'retryscheduled'::text, 'flowcompleted'::text, 'stepsuspended'::text]))))
    CONSTRAINT event_log_flow_version_check CHECK ((flow_version >= 1))
    CONSTRAINT event_log_flow_version_key UNIQUE (flow_id, flow_version)
    CONSTRAINT event_log_payload_check CHECK (((jsonb_typeof(payload) = 'object'::text) AND ((payload ->> 'event_type'::text) = event_type)))
    CONSTRAINT event_log_pkey PRIMARY KEY (seq)
    INDEX event_log_event_id_key: CREATE UNIQUE INDEX event_log_event_id_key ON public.event_log USING btree (event_id)
    INDEX event_log_flow_id_seq_idx: CREATE INDEX event_log_flow_id_seq_idx ON public.event_log USING btree (flow_id, seq)
    INDEX event_log_flow_version_key: CREATE UNIQUE INDEX event_log_flow_version_key ON public.event_log USING btree (flow_id, flow_version)
    INDEX event_log_pkey: CREATE UNIQUE INDEX event_log_pkey ON public.event_log USING btree (seq)
    INDEX event_log_tx_order_idx: CREATE INDEX event_log_tx_order_idx ON public.event_log USING btree (tx_id, seq)
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

TABLE work_queue
    COLUMN id bigint NOT NULL DEFAULT nextval('work_queue_id_seq'::regclass)
    COLUMN queue text NOT NULL
    COLUMN kind text NOT NULL
    COLUMN key text
    COLUMN payload jsonb NOT NULL DEFAULT 'null'::jsonb
    COLUMN priority integer NOT NULL DEFAULT 0
    COLUMN not_before timestamp with time zone NOT NULL DEFAULT now()
    COLUMN attempt integer NOT NULL DEFAULT 0
    COLUMN max_attempts integer
    COLUMN flow_id uuid
    COLUMN definition text
    COLUMN state text NOT NULL DEFAULT 'ready'::text
    COLUMN lease_token uuid
    COLUMN lease_expires_at timestamp with time zone
    COLUMN worker_id text
    COLUMN cancel_requested boolean NOT NULL DEFAULT false
    COLUMN last_error text
    COLUMN created_at timestamp with time zone NOT NULL DEFAULT now()
    CONSTRAINT work_queue_attempt_check CHECK ((attempt >= 0))
    CONSTRAINT work_queue_key_check CHECK (((key IS NULL) OR ((key <> ''::text) AND (length(key) <= 500))))
    CONSTRAINT work_queue_kind_check CHECK (((kind <> ''::text) AND (length(kind) <= 200)))
    CONSTRAINT work_queue_lease_check CHECK (((state = 'claimed'::text) = ((lease_token IS NOT NULL) AND (lease_expires_at IS NOT NULL))))
    CONSTRAINT work_queue_max_attempts_check CHECK (((max_attempts IS NULL) OR (max_attempts >= 1)))
    CONSTRAINT work_queue_pkey PRIMARY KEY (id)
    CONSTRAINT work_queue_queue_check CHECK (((queue <> ''::text) AND (length(queue) <= 200)))
    CONSTRAINT work_queue_state_check CHECK ((state = ANY (ARRAY['ready'::text, 'claimed'::text])))
    INDEX work_queue_expired_idx: CREATE INDEX work_queue_expired_idx ON public.work_queue USING btree (queue, lease_expires_at) WHERE (state = 'claimed'::text)
    INDEX work_queue_flow_idx: CREATE INDEX work_queue_flow_idx ON public.work_queue USING btree (flow_id) WHERE (flow_id IS NOT NULL)
    INDEX work_queue_key_idx: CREATE UNIQUE INDEX work_queue_key_idx ON public.work_queue USING btree (queue, key) WHERE (key IS NOT NULL)
    INDEX work_queue_pkey: CREATE UNIQUE INDEX work_queue_pkey ON public.work_queue USING btree (id)
    INDEX work_queue_ready_idx: CREATE INDEX work_queue_ready_idx ON public.work_queue USING btree (queue, priority DESC, not_before, id) WHERE (state = 'ready'::text)

TABLE work_queue_history
    COLUMN id bigint NOT NULL
    COLUMN queue text NOT NULL
    COLUMN kind text NOT NULL
    COLUMN key text
    COLUMN payload jsonb NOT NULL
    COLUMN priority integer NOT NULL
    COLUMN attempt integer NOT NULL
    COLUMN max_attempts integer
    COLUMN flow_id uuid
    COLUMN definition text
    COLUMN state text NOT NULL
    COLUMN lease_token uuid
    COLUMN worker_id text
    COLUMN last_error text
    COLUMN created_at timestamp with time zone NOT NULL
    COLUMN finished_at timestamp with time zone NOT NULL DEFAULT now()
    CONSTRAINT work_queue_history_pkey PRIMARY KEY (id)
    CONSTRAINT work_queue_history_state_check CHECK ((state = ANY (ARRAY['completed'::text, 'dead'::text, 'cancelled'::text])))
    INDEX work_queue_history_finished_idx: CREATE INDEX work_queue_history_finished_idx ON public.work_queue_history USING btree (finished_at)
    INDEX work_queue_history_flow_idx: CREATE INDEX work_queue_history_flow_idx ON public.work_queue_history USING btree (flow_id) WHERE (flow_id IS NOT NULL)
    INDEX work_queue_history_pkey: CREATE UNIQUE INDEX work_queue_history_pkey ON public.work_queue_history USING btree (id)

TABLE flow_definitions
    COLUMN name text NOT NULL
    COLUMN hash text NOT NULL
    COLUMN steps jsonb NOT NULL
    COLUMN created_at timestamp with time zone NOT NULL DEFAULT now()
    CONSTRAINT flow_definitions_hash_check CHECK ((hash ~ '^[0-9a-f]{64}$'::text))
    CONSTRAINT flow_definitions_name_check CHECK (((name <> ''::text) AND (length(name) <= 200)))
    CONSTRAINT flow_definitions_pkey PRIMARY KEY (name, hash)
    INDEX flow_definitions_pkey: CREATE UNIQUE INDEX flow_definitions_pkey ON public.flow_definitions USING btree (name, hash)

TABLE workflow_runs
    COLUMN id uuid NOT NULL
    COLUMN created_at timestamp with time zone NOT NULL DEFAULT now()
    COLUMN updated_at timestamp with time zone NOT NULL DEFAULT now()
    COLUMN workflow_id chem_record_long_name NOT NULL
    COLUMN workflow_name chem_record_name NOT NULL
    COLUMN workflow_type chem_record_name NOT NULL
    COLUMN status chem_record_status NOT NULL DEFAULT 'PENDING'::text
    COLUMN started_at timestamp with time zone
    COLUMN completed_at timestamp with time zone
    COLUMN duration chem_record_bigcount
    COLUMN input jsonb NOT NULL
    COLUMN output jsonb
    COLUMN config jsonb NOT NULL DEFAULT '{}'::jsonb
    COLUMN total_cost chem_record_amount NOT NULL DEFAULT 0
    COLUMN total_tokens chem_record_bigcount NOT NULL DEFAULT 0
    COLUMN priority integer NOT NULL DEFAULT 5
    COLUMN flow_version integer
    CONSTRAINT workflow_runs_pkey PRIMARY KEY (id)
    INDEX workflow_runs_created_at_idx: CREATE INDEX workflow_runs_created_at_idx ON public.workflow_runs USING btree (created_at)
    INDEX workflow_runs_pkey: CREATE UNIQUE INDEX workflow_runs_pkey ON public.workflow_runs USING btree (id)
    INDEX workflow_runs_status_idx: CREATE INDEX workflow_runs_status_idx ON public.workflow_runs USING btree (status, created_at, id)
    INDEX workflow_runs_workflow_type_idx: CREATE INDEX workflow_runs_workflow_type_idx ON public.workflow_runs USING btree (workflow_type, created_at)
    TRIGGER workflow_runs_updated_at: CREATE TRIGGER workflow_runs_updated_at BEFORE UPDATE ON public.workflow_runs FOR EACH ROW WHEN ((new.updated_at IS DISTINCT FROM now())) EXECUTE FUNCTION chem_touch_updated_at()

TABLE workflow_stages
    COLUMN id uuid NOT NULL
    COLUMN created_at timestamp with time zone NOT NULL DEFAULT now()
    COLUMN updated_at timestamp with time zone NOT NULL DEFAULT now()
    COLUMN workflow_run_id uuid NOT NULL
    COLUMN stage_id chem_record_name NOT NULL
    COLUMN stage_name chem_record_name NOT NULL
    COLUMN stage_number chem_record_count NOT NULL
    COLUMN execution_group chem_record_count NOT NULL
    COLUMN status chem_record_status NOT NULL DEFAULT 'PENDING'::text
    COLUMN started_at timestamp with time zone
    COLUMN completed_at timestamp with time zone
    COLUMN duration chem_record_bigcount
    COLUMN input_data jsonb
    COLUMN output_data jsonb
    COLUMN config jsonb
    COLUMN suspended_state jsonb
    COLUMN resume_data jsonb
    COLUMN next_poll_at timestamp with time zone
    COLUMN poll_interval integer
    COLUMN max_wait_until timestamp with time zone
    COLUMN metrics jsonb
    COLUMN embedding_info jsonb
    COLUMN error_message text
    CONSTRAINT workflow_stages_pkey PRIMARY KEY (id)
    CONSTRAINT workflow_stages_run_stage_key UNIQUE (workflow_run_id, stage_id)
    CONSTRAINT workflow_stages_workflow_run_id_fkey FOREIGN KEY (workflow_run_id) REFERENCES workflow_runs(id) ON DELETE CASCADE
    INDEX workflow_stages_next_poll_at_idx: CREATE INDEX workflow_stages_next_poll_at_idx ON public.workflow_stages USING btree (next_poll_at) WHERE (next_poll_at IS NOT NULL)
    INDEX workflow_stages_pkey: CREATE UNIQUE INDEX workflow_stages_pkey ON public.workflow_stages USING btree (id)
    INDEX workflow_stages_run_stage_key: CREATE UNIQUE INDEX workflow_stages_run_stage_key ON public.workflow_stages USING btree (workflow_run_id, stage_id)
    INDEX workflow_stages_status_idx: CREATE INDEX workflow_stages_status_idx ON public.workflow_stages USING btree (status)
    TRIGGER workflow_stages_updated_at: CREATE TRIGGER workflow_stages_updated_at BEFORE UPDATE ON public.workflow_stages FOR EACH ROW WHEN ((new.updated_at IS DISTINCT FROM now())) EXECUTE FUNCTION chem_touch_updated_at()

TABLE workflow_logs
    COLUMN id uuid NOT NULL
    COLUMN seq bigint NOT NULL DEFAULT nextval('workflow_logs_seq_seq'::regclass)
    COLUMN created_at timestamp with time zone NOT NULL DEFAULT now()
    COLUMN workflow_run_id uuid
    COLUMN workflow_stage_id uuid
    COLUMN level text NOT NULL
    COLUMN message text NOT NULL
    COLUMN metadata jsonb
    CONSTRAINT workflow_logs_level_check CHECK ((level = ANY (ARRAY['DEBUG'::text, 'INFO'::text, 'WARN'::text, 'ERROR'::text])))
    CONSTRAINT workflow_logs_pkey PRIMARY KEY (id)
    CONSTRAINT workflow_logs_workflow_run_id_fkey FOREIGN KEY (workflow_run_id) REFERENCES workflow_runs(id) ON DELETE CASCADE
    CONSTRAINT workflow_logs_workflow_stage_id_fkey FOREIGN KEY (workflow_stage_id) REFERENCES workflow_stages(id) ON DELETE CASCADE
    INDEX workflow_logs_created_at_idx: CREATE INDEX workflow_logs_created_at_idx ON public.workflow_logs USING btree (created_at)
    INDEX workflow_logs_pkey: CREATE UNIQUE INDEX workflow_logs_pkey ON public.workflow_logs USING btree (id)
    INDEX workflow_logs_run_idx: CREATE INDEX workflow_logs_run_idx ON public.workflow_logs USING btree (workflow_run_id, seq)
    INDEX workflow_logs_stage_idx: CREATE INDEX workflow_logs_stage_idx ON public.workflow_logs USING btree (workflow_stage_id) WHERE (workflow_stage_id IS NOT NULL)

TABLE workflow_artifacts
    COLUMN id uuid NOT NULL
    COLUMN created_at timestamp with time zone NOT NULL DEFAULT now()
    COLUMN updated_at timestamp with time zone NOT NULL DEFAULT now()
    COLUMN workflow_run_id uuid NOT NULL
    COLUMN workflow_stage_id uuid
    COLUMN key text NOT NULL
    COLUMN type text NOT NULL
    COLUMN data jsonb NOT NULL
    COLUMN size integer NOT NULL
    COLUMN metadata jsonb
    CONSTRAINT workflow_artifacts_key_check CHECK (((key <> ''::text) AND (length(key) <= 500)))
    CONSTRAINT workflow_artifacts_pkey PRIMARY KEY (id)
    CONSTRAINT workflow_artifacts_run_key_key UNIQUE (workflow_run_id, key)
    CONSTRAINT workflow_artifacts_size_check CHECK ((size >= 0))
    CONSTRAINT workflow_artifacts_type_check CHECK ((type = ANY (ARRAY['STAGE_OUTPUT'::text, 'ARTIFACT'::text, 'METADATA'::text])))
    CONSTRAINT workflow_artifacts_workflow_run_id_fkey FOREIGN KEY (workflow_run_id) REFERENCES workflow_runs(id) ON DELETE CASCADE
    CONSTRAINT workflow_artifacts_workflow_stage_id_fkey FOREIGN KEY (workflow_stage_id) REFERENCES workflow_stages(id) ON DELETE CASCADE
    INDEX workflow_artifacts_pkey: CREATE UNIQUE INDEX workflow_artifacts_pkey ON public.workflow_artifacts USING btree (id)
    INDEX workflow_artifacts_run_key_key: CREATE UNIQUE INDEX workflow_artifacts_run_key_key ON public.workflow_artifacts USING btree (workflow_run_id, key)
    INDEX workflow_artifacts_stage_idx: CREATE INDEX workflow_artifacts_stage_idx ON public.workflow_artifacts USING btree (workflow_stage_id) WHERE (workflow_stage_id IS NOT NULL)
    INDEX workflow_artifacts_type_idx: CREATE INDEX workflow_artifacts_type_idx ON public.workflow_artifacts USING btree (type)
    TRIGGER workflow_artifacts_updated_at: CREATE TRIGGER workflow_artifacts_updated_at BEFORE UPDATE ON public.workflow_artifacts FOR EACH ROW EXECUTE FUNCTION chem_touch_updated_at()

TABLE ai_calls
    COLUMN id uuid NOT NULL
    COLUMN created_at timestamp with time zone NOT NULL DEFAULT now()
    COLUMN topic text NOT NULL
    COLUMN call_type text NOT NULL
    COLUMN model_key text NOT NULL
    COLUMN model_id text NOT NULL
    COLUMN prompt text NOT NULL
    COLUMN response text NOT NULL
    COLUMN input_tokens integer NOT NULL
    COLUMN output_tokens integer NOT NULL
    COLUMN cost numeric NOT NULL
    COLUMN metadata jsonb
    COLUMN batch_id text
    CONSTRAINT ai_calls_cost_check CHECK ((cost >= (0)::numeric))
    CONSTRAINT ai_calls_names_check CHECK (((length(topic) <= 500) AND (call_type <> ''::text) AND (length(call_type) <= 200) AND (model_key <> ''::text) AND (length(model_key) <= 200) AND (model_id <> ''::text) AND (length(model_id) <= 200)))
    CONSTRAINT ai_calls_pkey PRIMARY KEY (id)
    CONSTRAINT ai_calls_tokens_check CHECK (((input_tokens >= 0) AND (output_tokens >= 0)))
    INDEX ai_calls_batch_idx: CREATE INDEX ai_calls_batch_idx ON public.ai_calls USING btree (batch_id) WHERE (batch_id IS NOT NULL)
    INDEX ai_calls_created_at_idx: CREATE INDEX ai_calls_created_at_idx ON public.ai_calls USING btree (created_at)
    INDEX ai_calls_model_key_idx: CREATE INDEX ai_calls_model_key_idx ON public.ai_calls USING btree (model_key)
    INDEX ai_calls_pkey: CREATE UNIQUE INDEX ai_calls_pkey ON public.ai_calls USING btree (id)
    INDEX ai_calls_topic_idx: CREATE INDEX ai_calls_topic_idx ON public.ai_calls USING btree (topic text_pattern_ops)

TABLE ai_call_batches
    COLUMN batch_id text NOT NULL
    COLUMN recorded_at timestamp with time zone NOT NULL DEFAULT now()
    COLUMN calls integer NOT NULL
    CONSTRAINT ai_call_batches_batch_id_check CHECK (((batch_id <> ''::text) AND (length(batch_id) <= 500)))
    CONSTRAINT ai_call_batches_pkey PRIMARY KEY (batch_id)
    INDEX ai_call_batches_pkey: CREATE UNIQUE INDEX ai_call_batches_pkey ON public.ai_call_batches USING btree (batch_id)

TABLE subscription_checkpoints
    COLUMN name text NOT NULL
    COLUMN position text
    COLUMN updated_at timestamp with time zone NOT NULL DEFAULT now()
    CONSTRAINT subscription_checkpoints_name_check CHECK (((name <> ''::text) AND (length(name) <= 200)))
    CONSTRAINT subscription_checkpoints_pkey PRIMARY KEY (name)
    CONSTRAINT subscription_checkpoints_position_check CHECK (("position" ~ '^[0-9]{20}\.[0-9]{20}$'::text))
    INDEX subscription_checkpoints_pkey: CREATE UNIQUE INDEX subscription_checkpoints_pkey ON public.subscription_checkpoints USING btree (name)

DOMAIN chem_record_amount double precision
    CONSTRAINT chem_record_amount_check CHECK ((VALUE >= (0)::double precision))

DOMAIN chem_record_bigcount bigint
    CONSTRAINT chem_record_bigcount_check CHECK ((VALUE >= 0))

DOMAIN chem_record_count integer
    CONSTRAINT chem_record_count_check CHECK ((VALUE >= 0))

DOMAIN chem_record_long_name text
    CONSTRAINT chem_record_long_name_check CHECK (((VALUE <> ''::text) AND (length(VALUE) <= 500)))

DOMAIN chem_record_name text
    CONSTRAINT chem_record_name_check CHECK (((VALUE <> ''::text) AND (length(VALUE) <= 200)))

DOMAIN chem_record_status text
    CONSTRAINT chem_record_status_check CHECK ((VALUE = ANY (ARRAY['PENDING'::text, 'RUNNING'::text, 'SUSPENDED'::text, 'COMPLETED'::text, 'FAILED'::text, 'CANCELLED'::text, 'SKIPPED'::text])))

FUNCTION chem_duration_ms
    CREATE OR REPLACE FUNCTION chem_duration_ms(started timestamp with time zone, completed timestamp with time zone)
     RETURNS bigint
     LANGUAGE sql
     IMMUTABLE PARALLEL SAFE
    AS $function$
        SELECT CASE WHEN completed >= started THEN floor(extract(epoch FROM completed - started) * 1000)::bigint END
    $function$

FUNCTION chem_reject_mutation
    CREATE OR REPLACE FUNCTION chem_reject_mutation()
     RETURNS trigger
     LANGUAGE plpgsql
    AS $function$
    BEGIN
        RAISE EXCEPTION '% is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
            USING ERRCODE = 'restrict_violation';
    END;
    $function$

FUNCTION chem_touch_updated_at
    CREATE OR REPLACE FUNCTION chem_touch_updated_at()
     RETURNS trigger
     LANGUAGE plpgsql
    AS $function$
    BEGIN
        NEW.updated_at := now();
        RETURN NEW;
    END;
    $function$
