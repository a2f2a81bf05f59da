"""The work queue's SQL (SPEC 8.1). All times come from the database clock (``now()``).

A job leaves ``work_queue`` for ``work_queue_history`` in the statement that finishes it
(``_MOVE``), so the hot table holds active jobs only. Every change a worker makes is guarded by
its lease token; a job whose cancellation was requested is finished as ``cancelled`` by the first
guarded statement that meets it.
"""

from __future__ import annotations

import functools

from chem_persistence_async.backends.postgres.sql.query import Query, query

_JOB_COLUMNS = """id, queue, kind, key, payload, priority, attempt, max_attempts, flow_id, lease_token,
    lease_expires_at, created_at, definition, not_before, worker_id"""

JOB_COLUMN_NAMES = tuple(c.strip() for c in _JOB_COLUMNS.split(","))
"""The columns of a claimed job's row, in order (a claim's answer)."""

_HISTORY_COLUMNS = """id, queue, kind, key, payload, priority, attempt, max_attempts, flow_id, definition,
        state, lease_token, worker_id, last_error, created_at"""


def _move(source: str, state: str, error: str = "g.last_error") -> str:
    """Rows deleted by CTE ``source`` into the history as ``state`` (an SQL expression)."""
    return f"""INSERT INTO work_queue_history ({_HISTORY_COLUMNS})
    SELECT g.id, g.queue, g.kind, g.key, g.payload, g.priority, g.attempt, g.max_attempts, g.flow_id,
        g.definition, {state}, g.lease_token, g.worker_id, {error}, g.created_at
    FROM {source} AS g"""


_FILTERS = """(:kinds::text[] IS NULL OR w.kind = ANY(:kinds))
          AND (w.definition IS NULL OR :definitions::text[] IS NULL OR w.definition = ANY(:definitions))"""

ENQUEUE = query(
    """
WITH ins AS (
    INSERT INTO work_queue (
        queue, kind, key, payload, priority, not_before, max_attempts, flow_id, definition
    )
    VALUES (:queue, :kind, :key, :payload::jsonb, :priority, COALESCE(:not_before::timestamptz, now()),
            :max_attempts, :flow_id::uuid, :definition)
    ON CONFLICT (queue, key) WHERE key IS NOT NULL DO NOTHING
    RETURNING id
), sooner AS (
    UPDATE work_queue w SET not_before = COALESCE(:not_before::timestamptz, now())
    WHERE :sooner AND :key::text IS NOT NULL AND w.queue = :queue AND w.key = :key AND w.state = 'ready'
      AND w.not_before > COALESCE(:not_before::timestamptz, now()) AND NOT EXISTS (SELECT 1 FROM ins)
    RETURNING w.id
)
SELECT id, true FROM ins
UNION ALL
SELECT w.id, EXISTS (SELECT 1 FROM sooner) FROM work_queue w
WHERE :key::text IS NOT NULL AND w.queue = :queue AND w.key = :key AND NOT EXISTS (SELECT 1 FROM ins)
"""
)
"""One job. Rows back: ``(id, due sooner)``: inserted, or (with ``:sooner``) an existing ready job
with the key brought forward to ``:not_before``; none when its key's holder committed after this
statement's snapshot (or finished meanwhile): run it again."""


ENQUEUE_UNKEYED = query(
    """
INSERT INTO work_queue (queue, kind, payload, priority, not_before, max_attempts, flow_id, definition)
VALUES (:queue, :kind, :payload::jsonb, :priority, COALESCE(:not_before::timestamptz, now()),
        :max_attempts, :flow_id::uuid, :definition)
RETURNING id
"""
)
"""``ENQUEUE`` of a job without a key: a plain ``INSERT`` (no holder to find, nothing to bring
forward). Server time per job, measured: 66 µs less than ``ENQUEUE``'s CTEs (430 -> 365 µs wall)."""


SPEC_COLUMNS = (
    ("queue", "queues", "text"),
    ("kind", "kinds", "text"),
    ("priority", "priorities", "int"),
    ("not_before", "not_befores", "timestamptz"),
    ("max_attempts", "max_attempts_each", "int"),
    ("flow_id", "flow_ids", "uuid"),
    ("definition", "definitions", "text"),
)
"""The columns of ``enqueue_many``'s jobs other than key and payload: (column, array parameter,
type). Each comes either as an array, one value per job, or (the array NULL) as the one scalar
parameter named after the column that every job shares: a batch of one kind and queue sends two
strings, not two arrays of a thousand (measured, 1,000 jobs: 20.0 -> 15.7 µs per job of wall time,
3.9 -> 1.2 of client CPU). ``ROWS FROM`` pads an ``unnest`` of NULL with NULLs."""


def _specs(keys: bool) -> str:
    """The jobs of ``enqueue_many`` as rows ``s`` in the order given (``ord``); ``keys``: with
    their ``key`` column."""
    names = [column for column, _, _ in SPEC_COLUMNS]
    unnests = [f"unnest(:{array}::{kind}[])" for _, array, kind in SPEC_COLUMNS]
    values = [f"COALESCE(r.{column}, :{column}::{kind}) AS {column}" for column, _, kind in SPEC_COLUMNS]
    if keys:
        names.append("key")
        unnests.append("unnest(:keys::text[])")
        values.append("r.key")
    return f"""(
        SELECT {", ".join(values)}, r.payload, r.ord
        FROM ROWS FROM ({", ".join(unnests)}, jsonb_array_elements(:payloads::jsonb))
            WITH ORDINALITY AS r({", ".join(names)}, payload, ord)
    ) AS s"""


_INSERT_SPECS = """INSERT INTO work_queue (
        queue, kind, key, payload, priority, not_before, max_attempts, flow_id, definition
    )"""

ENQUEUE_MANY = query(
    f"""
WITH s AS (
    SELECT * FROM {_specs(keys=True)}
), ins AS (
    {_INSERT_SPECS}
    SELECT queue, kind, key, payload, priority, COALESCE(not_before, now()), max_attempts, flow_id, definition
    FROM s ORDER BY ord
    ON CONFLICT (queue, key) WHERE key IS NOT NULL DO NOTHING
    RETURNING id, queue, key
)
SELECT id, queue, key, true FROM ins
UNION ALL
SELECT w.id, w.queue, w.key, false
FROM s CROSS JOIN LATERAL (
    SELECT id, queue, key FROM work_queue WHERE queue = s.queue AND key = s.key OFFSET 0
) AS w
WHERE s.key IS NOT NULL AND NOT EXISTS (SELECT 1 FROM ins i WHERE i.queue = s.queue AND i.key = s.key)
"""
)
"""Many jobs in one statement. Rows back: ``(id, queue, key, inserted)``; unkeyed jobs' ids
ascend in the order given."""

ENQUEUE_MANY_UNKEYED = query(
    f"""
{_INSERT_SPECS}
SELECT s.queue, s.kind, NULL, s.payload, s.priority, COALESCE(s.not_before, now()), s.max_attempts,
    s.flow_id, s.definition
FROM {_specs(keys=False)}
ORDER BY s.ord
RETURNING id
"""
)
"""``ENQUEUE_MANY`` of jobs without keys: a plain ``INSERT … SELECT`` (nothing to deduplicate, no
``ON CONFLICT``, no lookup of holders). Measured, 10 jobs: 191 µs against 249 µs of server time,
1,000: 6.3 ms against 7.8 ms (``synchronous_commit`` off). The ids ascend in the order given."""


def _claim_ctes(also: str, queues: str, limit: str) -> str:
    """The claim's CTEs (``expired``, ``buried``, ``dead``, ``ready``, ``picked``): ``queues`` the
    relation of queue names, ``limit`` the claim's size; ``also`` is one more condition on the rows
    either half may take (a filter on what the index scan finds). Run-out leases are taken
    oldest first, then by id: the jobs one claim took share their lease's end, and without the id
    which of them a smaller claim takes back was the plan's choice (the in-memory queue's too)."""
    return f"""expired AS (
    SELECT j.id, j.priority, j.dead FROM {queues} AS q(name)
    CROSS JOIN LATERAL (
        SELECT w.id, w.priority, (w.max_attempts IS NOT NULL AND w.attempt >= w.max_attempts) AS dead
        FROM work_queue w
        WHERE w.state = 'claimed' AND w.queue = q.name AND w.lease_expires_at < now()
          AND {_FILTERS}{also}
        ORDER BY w.lease_expires_at, w.id
        LIMIT {limit}
        FOR UPDATE SKIP LOCKED
    ) AS j
), buried AS (
    DELETE FROM work_queue w USING expired e WHERE w.id = e.id AND e.dead RETURNING w.*
), dead AS (
    {_move("buried", "'dead'", "COALESCE(g.last_error, 'its lease ran out on its last attempt')")}
), ready AS (
    SELECT j.id, j.priority, j.not_before FROM {queues} AS q(name)
    CROSS JOIN LATERAL (
        SELECT w.id, w.priority, w.not_before FROM work_queue w
        WHERE w.state = 'ready' AND w.queue = q.name AND w.not_before <= now()
          AND {_FILTERS}{also}
        ORDER BY w.priority DESC, w.not_before, w.id
        LIMIT {limit}
        FOR UPDATE SKIP LOCKED
    ) AS j
), picked AS (
    SELECT id FROM (
        SELECT id, 0 AS half, priority, NULL::timestamptz AS not_before FROM expired WHERE NOT dead
        UNION ALL
        SELECT id, 1, priority, not_before FROM ready
    ) AS c
    ORDER BY half, priority DESC, not_before, id
    LIMIT {limit}
)"""


_RETURNED_JOB = ", ".join(
    "w.payload::text" if name == "payload" else f"w.{name}" for name in JOB_COLUMN_NAMES
)
"""A claim's answer: the payload as text, which the driver decodes in C (the pool's ``jsonb`` codec
is a Python call per row: measured, a claim of 10 + its DELETE on a raw connection, 125.2 against
121.0 µs per job with the codec)."""

_CLAIM_PICKED = f"""UPDATE work_queue w
SET state = 'claimed', attempt = w.attempt + 1, lease_token = gen_random_uuid(),
    lease_expires_at = now() + :lease::interval, worker_id = :worker_id
WHERE w.id = ANY(ARRAY(SELECT id FROM picked))
RETURNING {_RETURNED_JOB}"""
"""The rows picked are changed through the primary key (``= ANY`` of their ids: a join with
``picked`` was planned as a scan of the table in a generic plan, or on a table believed tiny)."""

CLAIM_FOR_FLOW = query(
    f"""
WITH picked AS (
    SELECT w.id FROM work_queue w
    WHERE w.flow_id = :flow_id AND w.kind = ANY(:kinds::text[])
      AND ((w.state = 'ready' AND w.not_before <= now())
           OR (w.state = 'claimed' AND w.lease_expires_at < now()))
    ORDER BY w.not_before, w.id
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
)
UPDATE work_queue w
SET state = 'claimed', attempt = w.attempt + 1, lease_token = gen_random_uuid(),
    lease_expires_at = now() + :lease::interval, worker_id = :worker_id
FROM picked WHERE w.id = picked.id
RETURNING {_RETURNED_JOB}
"""
)
"""One flow's due jobs of ``:kinds`` (its signals, for an engine that runs the flow with no
worker), found through the flow's index: a handful of rows, so one ``OR`` costs nothing."""

HEARTBEAT = query(
    f"""
WITH target AS (
    SELECT w.id, w.cancel_requested FROM work_queue w
    JOIN unnest(:ids::bigint[], :tokens::uuid[]) AS h(id, token) ON w.id = h.id AND w.lease_token = h.token
    WHERE w.id = ANY(:ids::bigint[])
    FOR UPDATE OF w
), renewed AS (
    UPDATE work_queue w SET lease_expires_at = now() + :lease::interval
    FROM target t WHERE w.id = t.id AND NOT t.cancel_requested
    RETURNING w.id, w.lease_expires_at
), gone AS (
    DELETE FROM work_queue w USING target t WHERE w.id = t.id AND t.cancel_requested RETURNING w.*
), cancelled AS (
    {_move("gone", "'cancelled'")}
)
SELECT id, lease_expires_at, false FROM renewed
UNION ALL
SELECT id, NULL, true FROM gone
"""
)
"""Renew the leases of ``:ids`` held with ``:tokens``. Rows back: ``(id, new expiry, cancelled)``;
a job missing from them lost its lease."""

FINISH = query(
    f"""
WITH gone AS (
    DELETE FROM work_queue w WHERE w.id = :id AND w.lease_token = :token RETURNING w.*
), moved AS (
    {
        _move(
            "gone",
            "CASE WHEN g.cancel_requested THEN 'cancelled' ELSE :state::text END",
            "COALESCE(:error::text, g.last_error)",
        )
    }
    RETURNING state
)
SELECT (SELECT state FROM moved),
       (SELECT state FROM work_queue_history
        WHERE id = :id AND lease_token = :token AND NOT EXISTS (SELECT 1 FROM moved))
"""
)
"""Finish a claimed job as ``:state`` (``cancelled`` if its cancellation was requested). Row back:
``(state it was finished as now, state an earlier run of this finish left)`` (the history is read
only when the job was not moved now); both NULL: the lease was lost."""

_FINISH_MANY_CTES = f"""target AS (
    SELECT h.id, h.token FROM unnest(:ids::bigint[], :tokens::uuid[]) AS h(id, token)
), gone AS (
    DELETE FROM work_queue w USING target t
    WHERE w.id = ANY(:ids::bigint[]) AND w.id = t.id AND w.lease_token = t.token RETURNING w.*
), moved AS (
    {_move("gone", "CASE WHEN g.cancel_requested THEN 'cancelled' ELSE 'completed' END")}
    RETURNING id, state
)"""

_FINISH_MANY_OUTCOME = """SELECT t.id, m.state, h.state
FROM target t
LEFT JOIN moved m ON m.id = t.id
LEFT JOIN LATERAL (
    SELECT state FROM work_queue_history
    WHERE id = t.id AND lease_token = t.token AND m.id IS NULL OFFSET 0
) AS h ON true
WHERE m.state IS DISTINCT FROM 'completed'"""
"""A row only for a job not completed now (none in the common case: the client reads the others
as completed). ``h`` is read in the statement's snapshot, only for a job not moved now: what an
earlier run of this finish left; one primary-key probe, which a plan made while the history was
empty keeps as it grows. Measured against a row per job with a probe each (batches of 10, one
connection, interleaved, medians of 12): 370 -> 355 µs wall and 58 -> 55 µs client CPU per job."""

FINISH_MANY = query(f"WITH {_FINISH_MANY_CTES}\n{_FINISH_MANY_OUTCOME}\n")
"""``FINISH`` as ``completed`` for many claimed jobs at once (by primary key, guarded by their lease
tokens). Rows back, one per job NOT completed now (none when all were): ``(id, state it was
finished as now, state an earlier run of this finish left)``; both NULL: the lease was lost."""

# --- jobs changed inside an append of their flows' events (``events.lean_append`` / ``group_append``) --

JOB_WRITES_BEFORE = [
    """jobs AS (
    SELECT * FROM jsonb_to_recordset(:jobs::jsonb) AS j(
        i int, k text, id bigint, t uuid, u timestamptz,
        q text, n text, y text, p jsonb, r int, b timestamptz, m int, f uuid, d text
    )
)""",
    """held AS (
    SELECT j.i, w.id, w.cancel_requested FROM jobs j
    CROSS JOIN LATERAL (
        SELECT id, cancel_requested FROM work_queue WHERE id = j.id AND lease_token = j.t FOR UPDATE
    ) AS w
    WHERE j.k <> 'enqueue'
)""",
    """unheld AS (
    SELECT j.i, EXISTS (SELECT 1 FROM held h WHERE h.i = j.i) AS cancelled FROM jobs j
    WHERE j.k <> 'enqueue' AND NOT EXISTS (SELECT 1 FROM held h WHERE h.i = j.i AND NOT h.cancel_requested)
)""",
]
"""Before the events' insert: ``jobs``, one per item of the append (``:jobs``, ONE JSON array of
``{"i": item, "k": kind, ...}``); ``held``, the claimed jobs locked while their tokens hold them;
``unheld``, the items whose claimed job is not held (``cancelled``: its cancellation was
requested). An item in ``unheld`` must not be written: its job is no longer this worker's."""

JOB_WRITES_AFTER = [
    f"""job_new AS (
    {_INSERT_SPECS}
    SELECT j.q, j.n, j.y, COALESCE(j.p, 'null'::jsonb), j.r, COALESCE(j.b, now()), j.m, j.f, j.d
    FROM jobs j JOIN ok ON ok.item = j.i
    WHERE j.k = 'enqueue'
    ORDER BY j.i
    ON CONFLICT (queue, key) WHERE key IS NOT NULL DO NOTHING
)""",
    """job_gone AS (
    DELETE FROM work_queue w USING held h, jobs j, ok
    WHERE w.id = h.id AND j.i = h.i AND ok.item = h.i AND j.k = 'complete'
    RETURNING w.*
)""",
    "job_moved AS (\n    " + _move("job_gone", "'completed'") + "\n)",
    """job_back AS (
    UPDATE work_queue w
    SET state = 'ready', not_before = j.u, attempt = greatest(w.attempt - 1, 0),
        lease_token = NULL, lease_expires_at = NULL, worker_id = NULL
    FROM held h JOIN jobs j ON j.i = h.i JOIN ok ON ok.item = h.i
    WHERE w.id = h.id AND j.k = 'suspend'
)""",
]
"""After the insert, for the items in ``ok(item)`` (those whose events it inserted): a flow job
enqueued (as ``ENQUEUE``: a taken key is left as it is), a claimed job completed (moved to the
history) or suspended until ``u`` (as ``REQUEUE`` with ``attempt_delta`` -1)."""


_JOB_COLUMN_COUNT = len(JOB_COLUMN_NAMES)

PLANNED_LIMIT = 100
"""Claims of one queue of at most this many jobs get a statement of their own per size."""


@functools.cache
def _claim(limit: int | None, completing: bool) -> Query:
    """The claim statement: with ``limit``, for ONE queue (``:queue``) and that many jobs written
    into its text; without, for ``:queues`` and ``:limit`` jobs. With ``completing``, it first
    finishes ``:ids`` / ``:tokens`` as ``FINISH_MANY`` does (see ``claim_query``)."""
    if limit is None:
        queues, size = "unnest(:queues::text[])", ":limit"
    else:
        queues, size = "(VALUES (:queue::text))", str(int(limit))
    if not completing:
        return query(f"WITH {_claim_ctes('', queues, size)}\n{_CLAIM_PICKED}\n")
    not_finishing = "\n          AND w.id <> ALL(:ids::bigint[])"
    return query(
        f"""
WITH {_FINISH_MANY_CTES},
{_claim_ctes(not_finishing, queues, size)}, claimed AS (
    {_CLAIM_PICKED}
), finished(id, now_state, before_state) AS (
    {_FINISH_MANY_OUTCOME}
)
SELECT true, c.*, NULL, NULL FROM claimed c
UNION ALL
SELECT false, f.id, {", ".join(["NULL"] * (_JOB_COLUMN_COUNT - 1))}, f.now_state, f.before_state
FROM finished f
"""
    )


def claim_query(limit: int, queue_count: int, *, completing: bool = False) -> Query:
    """The claim of ``limit`` jobs from ``queue_count`` queues. ONE statement, ``FOR UPDATE SKIP
    LOCKED``: jobs whose lease ran out (a crashed worker's; those past their last attempt go to the
    history as ``dead`` instead) and ready jobs that are due, each half from its own partial index,
    per queue (``LATERAL``: one index probe per queue, which no statistics can turn into a scan).
    Arguments: ``:worker_id``, ``:lease``, ``:kinds``, ``:definitions``, ``:queue`` (the first
    queue), ``:queues``, ``:limit`` (and ``:ids``, ``:tokens`` with ``completing``).

    A claim of one queue and up to ``PLANNED_LIMIT`` jobs is written for that size and that queue:
    PostgreSQL then keeps one generic plan for it after five runs. With the size and the queue list
    as parameters it estimates a generic plan far costlier than a custom one (the LIMIT as 10% of
    the table, ten queues) and plans the statement again at every call: measured, about half of
    its server time (226 of ~400 µs; 406 of ~640 µs with ``completing``).

    With ``completing``, ``:ids`` / ``:tokens`` are finished first, in the same statement, exactly
    as ``FINISH_MANY`` finishes them (one round trip and one commit for a consumer's previous batch
    and its next one), and the claim never takes one of them (not even one whose lease ran out).
    Rows back: ``(true, the claimed job's columns, NULL, NULL)`` per claimed job, then ``(false,
    id, NULLs, state it was finished as now, state an earlier run left)`` per job to finish that
    was not completed now."""
    planned = queue_count == 1 and limit <= PLANNED_LIMIT
    return _claim(limit if planned else None, completing)


CLAIM = _claim(None, False)
"""The claim with its size and queues as parameters (see ``claim_query``)."""

CLAIM_COMPLETING = _claim(None, True)
"""``CLAIM`` that first finishes ``:ids`` / ``:tokens`` (see ``claim_query``)."""

REQUEUE = query(
    f"""
WITH target AS (
    SELECT id, cancel_requested FROM work_queue WHERE id = :id AND lease_token = :token FOR UPDATE
), back AS (
    UPDATE work_queue w
    SET state = 'ready', not_before = COALESCE(:not_before::timestamptz, now()),
        attempt = greatest(w.attempt + :attempt_delta, 0), lease_token = NULL, lease_expires_at = NULL,
        worker_id = NULL, last_error = COALESCE(:error::text, w.last_error)
    FROM target t WHERE w.id = t.id AND NOT t.cancel_requested
    RETURNING w.id
), gone AS (
    DELETE FROM work_queue w USING target t WHERE w.id = t.id AND t.cancel_requested RETURNING w.*
), cancelled AS (
    {_move("gone", "'cancelled'")}
)
SELECT (SELECT count(*) FROM back), (SELECT count(*) FROM gone)
"""
)
"""A claimed job back to ready at ``:not_before`` (NULL: now); ``:attempt_delta`` -1 gives the next
claim the same attempt (suspend, release), 0 counts this one (fail). Row back: ``(requeued,
cancelled)``; both 0: the lease was lost."""

CANCEL = query(
    f"""
WITH target AS (
    SELECT id, state FROM work_queue WHERE queue = :queue AND key = :key FOR UPDATE
), gone AS (
    DELETE FROM work_queue w USING target t WHERE w.id = t.id AND t.state = 'ready' RETURNING w.*
), cancelled AS (
    {_move("gone", "'cancelled'")}
), marked AS (
    UPDATE work_queue w SET cancel_requested = true
    FROM target t WHERE w.id = t.id AND t.state = 'claimed'
    RETURNING w.id
)
SELECT (SELECT count(*) FROM gone) + (SELECT count(*) FROM marked)
"""
)

RELEASE_EXPIRED = query(
    f"""
WITH expired AS (
    SELECT id, (max_attempts IS NOT NULL AND attempt >= max_attempts) AS dead FROM work_queue
    WHERE state = 'claimed' AND lease_expires_at < now()
    FOR UPDATE SKIP LOCKED
), buried AS (
    DELETE FROM work_queue w USING expired e WHERE w.id = e.id AND e.dead RETURNING w.*
), dead AS (
    {_move("buried", "'dead'", "COALESCE(g.last_error, 'its lease ran out on its last attempt')")}
), back AS (
    UPDATE work_queue w
    SET state = 'ready', not_before = now(), lease_token = NULL, lease_expires_at = NULL, worker_id = NULL
    FROM expired e WHERE w.id = e.id AND NOT e.dead
    RETURNING w.id
)
SELECT (SELECT count(*) FROM buried) + (SELECT count(*) FROM back)
"""
)
"""Every queue at once: what ``claim`` does to expired leases, without claiming (operators)."""

DEPTH = query(
    """
SELECT count(*) FILTER (WHERE state = 'ready' AND not_before <= now()),
       count(*) FILTER (WHERE state = 'ready' AND not_before > now()),
       count(*) FILTER (WHERE state = 'claimed' AND lease_expires_at >= now()),
       count(*) FILTER (WHERE state = 'claimed' AND lease_expires_at < now())
FROM work_queue WHERE :queue::text IS NULL OR queue = :queue
"""
)

STATS = query(
    """
SELECT queue,
       count(*) FILTER (WHERE state = 'ready' AND not_before <= now()),
       count(*) FILTER (WHERE state = 'ready' AND not_before > now()),
       count(*) FILTER (WHERE state = 'claimed' AND lease_expires_at >= now()),
       count(*) FILTER (WHERE state = 'claimed' AND lease_expires_at < now()),
       extract(epoch FROM now() - min(not_before) FILTER (WHERE state = 'ready' AND not_before <= now()))
FROM work_queue GROUP BY queue ORDER BY queue
"""
)

HISTORY_COUNTS = query(
    "SELECT queue, state, count(*) FROM work_queue_history GROUP BY queue, state ORDER BY queue, state"
)

LIST_JOBS = query(
    """
SELECT * FROM (
    SELECT id, queue, kind, key, payload, priority, attempt, max_attempts, flow_id, definition, state,
           not_before, lease_expires_at, worker_id, last_error, created_at, NULL::timestamptz AS finished_at
    FROM work_queue
    WHERE (:queue::text IS NULL OR queue = :queue) AND (:flow_id::uuid IS NULL OR flow_id = :flow_id)
    UNION ALL
    SELECT id, queue, kind, key, payload, priority, attempt, max_attempts, flow_id, definition, state,
           NULL, NULL, worker_id, last_error, created_at, finished_at
    FROM work_queue_history
    WHERE (:queue::text IS NULL OR queue = :queue) AND (:flow_id::uuid IS NULL OR flow_id = :flow_id)
) AS j
WHERE :states::text[] IS NULL OR state = ANY(:states)
ORDER BY id LIMIT :limit
"""
)

PURGE = query(
    """
WITH doomed AS (
    SELECT id FROM work_queue_history WHERE finished_at < :cutoff ORDER BY finished_at LIMIT :batch_size
)
DELETE FROM work_queue_history h USING doomed d WHERE h.id = d.id
"""
)

NOTIFY = query("SELECT pg_notify(:channel, q) FROM unnest(:queues::text[]) AS q")
