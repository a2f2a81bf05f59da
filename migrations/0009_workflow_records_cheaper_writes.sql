-- Workflow records written for less (issue 13): the same rules, checked where they cost less.
-- depends: 0008_step_suspended
--
-- 1. The CHECK constraints of workflow_runs and workflow_stages become domains. A table's CHECK
--    constraints are read back from their text and planned again by every statement that writes
--    the table (once per statement and table, whatever the row count): ~30 µs per statement for
--    these two tables, paid by every recorded append. A domain's check is kept compiled in the
--    server's type cache. The rules are the same: a status among the seven, names not empty and
--    at most 200 characters (500 for workflow_id), counts, times and totals not negative.
-- 2. The updated_at triggers run only when a row would not hold now() (the transaction's time)
--    after the update: the records' own statements set it to now() themselves (no PL/pgSQL call
--    per row), and every other update, ad hoc SQL writing a time of its own included, still gets
--    now() from the trigger. Every updated row ends with updated_at = now(), as before.

CREATE DOMAIN chem_record_status AS text CHECK (
    VALUE IN ('PENDING', 'RUNNING', 'SUSPENDED', 'COMPLETED', 'FAILED', 'CANCELLED', 'SKIPPED')
);
CREATE DOMAIN chem_record_name AS text CHECK (VALUE <> '' AND length(VALUE) <= 200);
CREATE DOMAIN chem_record_long_name AS text CHECK (VALUE <> '' AND length(VALUE) <= 500);
CREATE DOMAIN chem_record_count AS int CHECK (VALUE >= 0);
CREATE DOMAIN chem_record_bigcount AS bigint CHECK (VALUE >= 0);
CREATE DOMAIN chem_record_amount AS double precision CHECK (VALUE >= 0);

ALTER TABLE workflow_runs
    DROP CONSTRAINT workflow_runs_status_check,
    DROP CONSTRAINT workflow_runs_workflow_id_check,
    DROP CONSTRAINT workflow_runs_workflow_name_check,
    DROP CONSTRAINT workflow_runs_workflow_type_check,
    DROP CONSTRAINT workflow_runs_totals_check,
    DROP CONSTRAINT workflow_runs_duration_check,
    ALTER COLUMN status TYPE chem_record_status,
    ALTER COLUMN workflow_id TYPE chem_record_long_name,
    ALTER COLUMN workflow_name TYPE chem_record_name,
    ALTER COLUMN workflow_type TYPE chem_record_name,
    ALTER COLUMN total_cost TYPE chem_record_amount,
    ALTER COLUMN total_tokens TYPE chem_record_bigcount,
    ALTER COLUMN duration TYPE chem_record_bigcount;

ALTER TABLE workflow_stages
    DROP CONSTRAINT workflow_stages_status_check,
    DROP CONSTRAINT workflow_stages_stage_id_check,
    DROP CONSTRAINT workflow_stages_stage_name_check,
    DROP CONSTRAINT workflow_stages_numbers_check,
    DROP CONSTRAINT workflow_stages_duration_check,
    ALTER COLUMN status TYPE chem_record_status,
    ALTER COLUMN stage_id TYPE chem_record_name,
    ALTER COLUMN stage_name TYPE chem_record_name,
    ALTER COLUMN stage_number TYPE chem_record_count,
    ALTER COLUMN execution_group TYPE chem_record_count,
    ALTER COLUMN duration TYPE chem_record_bigcount;

DROP TRIGGER workflow_runs_updated_at ON workflow_runs;
CREATE TRIGGER workflow_runs_updated_at
    BEFORE UPDATE ON workflow_runs
    FOR EACH ROW WHEN (NEW.updated_at IS DISTINCT FROM now())
    EXECUTE FUNCTION chem_touch_updated_at();

DROP TRIGGER workflow_stages_updated_at ON workflow_stages;
CREATE TRIGGER workflow_stages_updated_at
    BEFORE UPDATE ON workflow_stages
    FOR EACH ROW WHEN (NEW.updated_at IS DISTINCT FROM now())
    EXECUTE FUNCTION chem_touch_updated_at();
