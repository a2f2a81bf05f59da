"""The AI-call log's SQL (SPEC 9.2): calls arrive as arrays, one statement per batch."""

from __future__ import annotations

from chem_persistence_async.backends.postgres.sql.query import query

_GIVEN = """
    SELECT * FROM ROWS FROM (
        unnest(:ids::uuid[], :topics::text[], :call_types::text[], :model_keys::text[], :model_ids::text[],
               :prompts::text[], :responses::text[], :input_tokens::int[], :output_tokens::int[],
               :costs::numeric[]),
        jsonb_array_elements(:metadata::jsonb)
    ) AS g(id, topic, call_type, model_key, model_id, prompt, response, input_tokens, output_tokens,
           cost, metadata)
"""

_INSERT = """INSERT INTO ai_calls (
        id, topic, call_type, model_key, model_id, prompt, response, input_tokens, output_tokens, cost,
        metadata, batch_id
    )"""

_VALUES = """g.id, g.topic, g.call_type, g.model_key, g.model_id, g.prompt, g.response, g.input_tokens,
        g.output_tokens, g.cost, NULLIF(g.metadata, 'null'::jsonb)"""

INSERT_CALLS = query(
    f"""
WITH given AS ({_GIVEN})
{_INSERT}
SELECT {_VALUES}, NULL FROM given g
ON CONFLICT (id) DO NOTHING
"""
)
"""A buffer's calls. Their ids were made when they were logged: a batch written again (a retry
after a lost acknowledgement) adds nothing."""

LOG_BATCH = query(
    f"""
WITH given AS ({_GIVEN}),
mark AS (
    INSERT INTO ai_call_batches (batch_id, calls) VALUES (:batch_id, :count)
    ON CONFLICT (batch_id) DO NOTHING
    RETURNING batch_id
),
ins AS (
    {_INSERT}
    SELECT {_VALUES}, mark.batch_id FROM given g CROSS JOIN mark
    ON CONFLICT (id) DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM mark), (SELECT count(*) FROM ins)
"""
)
"""A batch's results and its mark, or nothing when the batch is already marked (a concurrent
caller waits for the first one's commit, then finds the mark)."""

STATS = query(
    """
SELECT model_key, count(*), sum(input_tokens), sum(output_tokens), sum(cost)
FROM ai_calls
WHERE topic LIKE :pattern
GROUP BY model_key
"""
)

IS_RECORDED = query("SELECT EXISTS (SELECT 1 FROM ai_call_batches WHERE batch_id = :batch_id)")
