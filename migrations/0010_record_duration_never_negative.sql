-- A record's duration is never negative (issue 13, found by tests/contracts/test_records_lockstep.py).
-- depends: 0009_workflow_records_cheaper_writes
--
-- A run or stage whose start an operator moved after its end (update_run(started_at=...) by hand)
-- made chem_duration_ms negative at the flow's next recorded append: the domain refused the value,
-- and with it the append itself, so the flow could not go on. Such times have no duration: NULL, as
-- when either time is missing, and as the in-memory backend computes it (domain.records.duration_ms).

CREATE OR REPLACE FUNCTION chem_duration_ms(started timestamptz, completed timestamptz) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN completed >= started THEN floor(extract(epoch FROM completed - started) * 1000)::bigint END
$$;
