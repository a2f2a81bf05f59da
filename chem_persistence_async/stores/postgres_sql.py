"""Every SQL statement the PostgreSQL store sends, named, in one place. All parameterised.

``APPEND`` writes a whole batch in ONE statement (so one implicit transaction and one round trip):
the events, the artifacts their ``StepFinished`` list, and one ``step_execution_errors`` row per
``StepFailed``. It returns one row per event, either freshly inserted or (when the event ids are
already there, because an earlier attempt committed but its answer was lost) the stored ones; when
nothing was inserted because the flow's version was not the expected one, it returns a single row
with ``seq`` NULL and the actual version.
"""

APPEND = """
WITH existing AS (
    SELECT event_id, seq, flow_version, ts, flow_id
    FROM event_log
    WHERE event_id = ANY($1::uuid[])
), cur AS (
    SELECT COALESCE(max(flow_version), 0) AS v FROM event_log WHERE flow_id = $2
), ins AS (
    INSERT INTO event_log (event_id, flow_id, flow_version, event_type, payload)
    SELECT e.id, $2, cur.v + e.ord, e.t, e.p
    FROM cur, unnest($1::uuid[], $4::text[], $5::jsonb[]) WITH ORDINALITY AS e(id, t, p, ord)
    WHERE NOT EXISTS (SELECT 1 FROM existing)
      AND ($3::int IS NULL OR cur.v = $3)
    ORDER BY e.ord
    RETURNING event_id, seq, flow_version, ts
), arts AS (
    INSERT INTO workflow_step_artifacts (artifact_hash, kind, payload, metadata, produced_in_seq)
    SELECT a.h, a.k, a.p, a.m, ins.seq
    FROM unnest($6::int[], $7::text[], $8::text[], $9::jsonb[], $10::jsonb[]) AS a(ord, h, k, p, m)
    JOIN ins ON ins.flow_version = (SELECT v FROM cur) + a.ord
    ON CONFLICT (artifact_hash) DO NOTHING
), errs AS (
    INSERT INTO step_execution_errors (
        flow_id, step_id, attempt_number, error_class, error_message, details,
        retry_count, max_retries, event_seq, ts
    )
    SELECT $2, x.step_id, x.attempt, x.cls, x.msg, x.details, x.rc, x.mr, ins.seq, ins.ts
    FROM unnest(
        $11::int[], $12::text[], $13::int[], $14::text[], $15::text[], $16::jsonb[], $17::int[], $18::int[]
    ) AS x(ord, step_id, attempt, cls, msg, details, rc, mr)
    JOIN ins ON ins.flow_version = (SELECT v FROM cur) + x.ord
)
SELECT event_id, seq, flow_version, ts, $2 AS flow_id FROM ins
UNION ALL
SELECT event_id, seq, flow_version, ts, flow_id FROM existing
UNION ALL
SELECT NULL, NULL, v, NULL, NULL FROM cur
WHERE NOT EXISTS (SELECT 1 FROM ins) AND NOT EXISTS (SELECT 1 FROM existing)
"""

MISSING_ARTIFACTS = """
SELECT h FROM unnest($1::text[]) AS h
WHERE NOT EXISTS (SELECT 1 FROM workflow_step_artifacts WHERE artifact_hash = h)
"""

FLOW_VERSION = "SELECT COALESCE(max(flow_version), 0) FROM event_log WHERE flow_id = $1"

LIST_EVENTS = """
SELECT seq, event_id, flow_version, ts, payload
FROM event_log WHERE flow_id = $1 ORDER BY seq
"""

LIST_EVENTS_AFTER = """
SELECT seq, event_id, flow_version, ts, payload
FROM event_log WHERE flow_id = $1 AND seq > $2 ORDER BY seq LIMIT $3
"""

GET_ARTIFACTS = """
SELECT artifact_hash, kind, payload, metadata
FROM workflow_step_artifacts WHERE artifact_hash = ANY($1::text[])
"""

_ERROR_COLUMNS = """
flow_id, step_id, attempt_number, error_class, error_message, details,
retry_count, max_retries, ts, event_seq
"""

LIST_ERRORS = f"""
SELECT {_ERROR_COLUMNS} FROM step_execution_errors
WHERE flow_id = $1 AND ($2::text IS NULL OR step_id = $2)
ORDER BY id
"""

ERROR_TIMELINE = f"""
SELECT {_ERROR_COLUMNS} FROM step_execution_errors
WHERE flow_id = $1 AND ($2::text IS NULL OR step_id = $2)
ORDER BY attempt_number, ts, id
"""

COUNT_ERRORS = """
SELECT step_id, error_class, count(*) FROM step_execution_errors
WHERE flow_id = $1 GROUP BY step_id, error_class ORDER BY step_id, error_class
"""
