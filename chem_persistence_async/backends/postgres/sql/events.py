"""The event store's SQL: one write path, composed from named pieces, and the reads.

Every append is ONE statement (one implicit transaction, one round trip): the events, the artifacts
their ``StepFinished`` list, and one ``step_execution_errors`` row per ``StepFailed``. The pieces:

* an event source: one event (``:event_id``, ``:payload``) or several (``:event_ids`` and
  ``:payloads``, ONE JSON array: an array parameter costs the client a codec call per element);
  each event's ``event_type`` is read from its payload;
* the insert into ``event_log`` at ``base + 1, base + 2, ...``;
* ``arts``: the artifacts, ONE JSON array of ``{"o": ordinal, "h": hash, "k": kind, "p": payload,
  "m": metadata}`` (``o`` is the 1-based position of the ``StepFinished`` listing it);
* ``errs``: the error rows, read from the inserted ``StepFailed`` payloads themselves, so a row
  copies its event by construction and costs no parameter;
* with ``records``, the flow's workflow run and stages (``records.appended_flow_records_ctes`` for
  one flow, ``records.appended_records_ctes`` for a group), merged only for a flow whose events
  ``ins`` inserted, at their ``ts``: the engine's records cost no
  statement and no transaction of their own, and commit or roll back with the events.

Three statements are built from them:

``lean_append``: the flow's last version (``:base``) is known (the caller's ``expected_version``, or
the store's cached guess); a plain insert guarded so it never leaves a gap (``:base`` must exist),
while ``UNIQUE (flow_id, flow_version)`` refuses a stale base and ``UNIQUE (event_id)`` a retried
event. Anything it does not write goes to ``judge_append``.

``judge_append``: decides every case: events already stored by an attempt whose answer was lost
come back as they are; a flow not at ``:expected`` gives one row with ``seq`` NULL and the actual
version (``ConcurrencyConflict``); otherwise it appends at the end.

``group_append``: several callers' batches for distinct flows in one statement (group commit),
each member judged on its own as ``judge_append`` judges a batch.

Two conflict modes. Outside a transaction (``in_tx=False``) a lost race raises a unique violation,
which costs nothing: the caller moves on to the next statement. Inside a caller's transaction an
error would poison it, so the inserts say ``ON CONFLICT DO NOTHING`` and a batch is inserted head
first: its first event alone, the rest only if the first went in, so a race can never leave half
a batch; "nothing written" comes back as a row count, and the next statement (which sees the
winner's commit) judges it.

Hot lookups are written so that no plan can scan ``event_log``, whatever the statistics say (a
table never analyzed, a generic plan cached while the table was small): each is an equality on a
unique index per key, in a ``LATERAL`` subquery or a correlated scalar subquery that the planner
cannot turn into a hash join (``tests/backends/postgres/test_plans.py`` reads the plans).
"""

from __future__ import annotations

from functools import cache

from chem_persistence_async.backends.postgres.sql.query import Query, query
from chem_persistence_async.backends.postgres.sql.queue import JOB_WRITES_AFTER, JOB_WRITES_BEFORE
from chem_persistence_async.backends.postgres.sql.records import (
    appended_flow_records_ctes,
    appended_records_ctes,
    stored_flow_records_ctes,
)

# --- pieces ---------------------------------------------------------------------------------------

_ONE_EVENT = "SELECT :event_id::uuid AS id, 1::bigint AS ord, :payload::jsonb AS p"
_MANY_EVENTS = """SELECT e.id, e.ord, e.p
    FROM ROWS FROM (unnest(:event_ids::uuid[]), jsonb_array_elements(:payloads::jsonb))
    WITH ORDINALITY AS e(id, p, ord)"""

_BASE_EXISTS = """(:base::int = 0 OR EXISTS (
        SELECT 1 FROM event_log b WHERE b.flow_id = :flow_id::uuid AND b.flow_version = :base
    ))"""
"""A lean insert goes after ``:base`` only if ``:base`` is there: never a gap."""

_INSERTED = "event_id, seq, flow_id, flow_version, ts"
_INSERTED_WITH_PAYLOAD = _INSERTED + ", event_type, payload"


def _insert(source: str, *, base: str, where: str, returning: str, skip_conflicts: bool) -> str:
    conflict = "\nON CONFLICT DO NOTHING" if skip_conflicts else ""
    # Several events go in in order (``seq`` ascends with the version); one needs no sort (a sort
    # node cost a one-event append about 8 µs of the server's time, measured).
    order = "" if source is _ONE_EVENT else "\n    ORDER BY e.ord"
    return f"""INSERT INTO event_log (event_id, flow_id, flow_version, event_type, payload)
    SELECT e.id, :flow_id::uuid, {base} + e.ord, e.p ->> 'event_type', e.p
    FROM ({source}) AS e
    WHERE {where}{order}{conflict}
    RETURNING {returning}"""


def _insert_ctes(source: str, *, base: str, guard: str, returning: str, in_tx: bool, many: bool) -> list[str]:
    """``ins`` (and, in a transaction, the ``head``/``tail`` it is made of)."""
    if not (in_tx and many):
        return [
            f"ins AS ({_insert(source, base=base, where=guard, returning=returning, skip_conflicts=in_tx)})"
        ]
    head = _insert(
        source, base=base, where=f"e.ord = 1 AND {guard}", returning=returning, skip_conflicts=True
    )
    tail = _insert(
        source,
        base=base,
        where=f"e.ord > 1 AND EXISTS (SELECT 1 FROM head) AND {guard}",
        returning=returning,
        skip_conflicts=True,
    )
    return [
        f"head AS ({head})",
        f"tail AS ({tail})",
        "ins AS (SELECT * FROM head UNION ALL SELECT * FROM tail)",
    ]


def _artifacts_cte(join: str) -> str:
    """``arts``: the first producer of a hash keeps it (``ON CONFLICT DO NOTHING``)."""
    return f"""arts AS (
    INSERT INTO workflow_step_artifacts (artifact_hash, kind, payload, metadata, produced_in_seq)
    SELECT a ->> 'h', a ->> 'k', a -> 'p', NULLIF(a -> 'm', 'null'::jsonb), ins.seq
    FROM jsonb_array_elements(:artifacts::jsonb) AS a {join}
    ON CONFLICT (artifact_hash) DO NOTHING
)"""


_ERRORS_CTE = """errs AS (
    INSERT INTO step_execution_errors (
        flow_id, step_id, attempt_number, error_class, error_message, details,
        retry_count, max_retries, event_seq, ts
    )
    SELECT ins.flow_id, ins.payload ->> 'step_id', (ins.payload ->> 'attempt')::int,
        ins.payload #>> '{error,error_class}', ins.payload #>> '{error,message}',
        NULLIF(ins.payload #> '{error,details}', 'null'::jsonb),
        (ins.payload ->> 'retry_count')::int, (ins.payload ->> 'max_retries')::int, ins.seq, ins.ts
    FROM ins WHERE ins.event_type = 'stepfailed'
)"""
"""One row per inserted ``StepFailed``, copied from the event itself."""


# --- the three statements -------------------------------------------------------------------------


_WRITTEN_ONE = "rec_w AS (SELECT ins.flow_id, ins.ts AS t FROM ins LIMIT 1)"
"""The one flow of a lean or judged append, if its events went in (``appended_flow_records_ctes``)."""


@cache
def lean_append(
    *,
    many: bool,
    artifacts: bool,
    errors: bool,
    in_tx: bool,
    records: bool = False,
    stored: bool = False,
    jobs: bool = False,
) -> Query:
    """Append after a known ``:base``. Parameters: ``:flow_id``, ``:base``, the event source's,
    ``:artifacts`` when ``artifacts``, with ``records`` those of ``appended_flow_records_ctes``
    (the flow's runs and stages, merged if the events go in; ``stored_flow_records_ctes``'s with
    ``stored``), and with ``jobs`` (never in a unit of work) ``:jobs`` as
    ``queue.JOB_WRITES_BEFORE`` reads it, for item 1: the job changed only if the events go in,
    the events only while a claimed job is held. Rows back: ``(event_id, seq,
    ts)`` for one event (its id names it in the server's answer), ``(flow_version, seq, ts)`` per
    event for several; none or fewer when the base was stale or an event id is stored. With
    ``jobs``, each row has a fourth column, NULL, and when the job to change is not held one row
    ``(NULL, NULL, NULL, 'lost' or 'cancelled')`` comes instead."""
    source = _MANY_EVENTS if many else _ONE_EVENT
    out = "flow_version, seq, ts" if many else "event_id, seq, ts"
    if not (artifacts or errors or records or jobs or (in_tx and many)):
        return query(
            _insert(source, base=":base::int", where=_BASE_EXISTS, returning=out, skip_conflicts=in_tx)
        )
    assert not (jobs and in_tx), "a job write is its own commit"
    ctes = [*JOB_WRITES_BEFORE] if jobs else []
    ctes += _insert_ctes(
        source,
        base=":base::int",
        guard=f"{_BASE_EXISTS} AND NOT EXISTS (SELECT 1 FROM unheld)" if jobs else _BASE_EXISTS,
        returning=_INSERTED_WITH_PAYLOAD if errors else _INSERTED,
        in_tx=in_tx,
        many=many,
    )
    if artifacts:
        ctes.append(_artifacts_cte("JOIN ins ON ins.flow_version = :base::int + (a ->> 'o')::int"))
    if errors:
        ctes.append(_ERRORS_CTE)
    if records:
        recorded = stored_flow_records_ctes if stored else appended_flow_records_ctes
        ctes += [_WRITTEN_ONE, *recorded("rec_w")]
    if not jobs:
        return query("WITH " + ",\n".join(ctes) + f"\nSELECT {out} FROM ins")
    ctes += ["ok AS (SELECT 1 AS item FROM ins LIMIT 1)", *JOB_WRITES_AFTER]
    return query(
        "WITH "
        + ",\n".join(ctes)
        + f"""
SELECT {out}, NULL::text FROM ins
UNION ALL
SELECT NULL, NULL, NULL, CASE WHEN u.cancelled THEN 'cancelled' ELSE 'lost' END FROM unheld u"""
    )


@cache
def judge_append(*, artifacts: bool, errors: bool, in_tx: bool, records: bool = False) -> Query:
    """Append a batch at the end unless its events are stored already or the flow is not at
    ``:expected`` (NULL: anywhere). Parameters: ``:flow_id``, ``:expected``, ``:event_ids``,
    ``:payloads`` (and ``:artifacts``; with ``records``, ``appended_flow_records_ctes``'s: nothing is
    recorded unless the events go in now). Rows back: ``(event_id, seq, flow_version, ts, flow_id,
    stored)`` per event inserted (``stored`` false) or already stored (true), else one row
    ``(NULL, NULL, actual version, NULL, NULL, false)``."""
    ctes = [
        """existing AS (
    SELECT l.event_id, l.seq, l.flow_version, l.ts, l.flow_id
    FROM unnest(:event_ids::uuid[]) AS q(id)
    CROSS JOIN LATERAL (
        SELECT event_id, seq, flow_version, ts, flow_id FROM event_log WHERE event_id = q.id OFFSET 0
    ) AS l
)""",
        """cur AS (
    SELECT COALESCE((
        SELECT flow_version FROM event_log
        WHERE flow_id = :flow_id::uuid ORDER BY flow_version DESC LIMIT 1
    ), 0) AS v
)""",
    ]
    ctes += _insert_ctes(
        _MANY_EVENTS,
        base="(SELECT v FROM cur)",
        guard="NOT EXISTS (SELECT 1 FROM existing)"
        " AND (:expected::int IS NULL OR (SELECT v FROM cur) = :expected)",
        returning=_INSERTED_WITH_PAYLOAD if errors else _INSERTED,
        in_tx=in_tx,
        many=True,
    )
    if artifacts:
        ctes.append(_artifacts_cte("JOIN ins ON ins.flow_version = (SELECT v FROM cur) + (a ->> 'o')::int"))
    if errors:
        ctes.append(_ERRORS_CTE)
    if records:
        ctes += [_WRITTEN_ONE, *appended_flow_records_ctes("rec_w")]
    return query(
        "WITH "
        + ",\n".join(ctes)
        + """
SELECT event_id, seq, flow_version, ts, flow_id, false FROM ins
UNION ALL
SELECT event_id, seq, flow_version, ts, flow_id, true FROM existing
UNION ALL
SELECT NULL, NULL, v, NULL, NULL, false FROM cur
WHERE NOT EXISTS (SELECT 1 FROM ins) AND NOT EXISTS (SELECT 1 FROM existing)"""
    )


_GROUP_ITEMS = """items AS (
    SELECT i.item, i.flow_id, i.expected, COALESCE((
        SELECT l.flow_version FROM event_log l
        WHERE l.flow_id = i.flow_id ORDER BY l.flow_version DESC LIMIT 1
    ), 0) AS v
    FROM unnest(:flow_ids::uuid[], :expected::int[]) WITH ORDINALITY AS i(flow_id, expected, item)
), evs AS (
    SELECT * FROM ROWS FROM (
        unnest(:items::int[], :ordinals::int[], :event_ids::uuid[]), jsonb_array_elements(:payloads::jsonb)
    ) AS e(item, ord, id, p)
), existing AS (
    SELECT e.item, l.event_id, l.seq, l.flow_version, l.ts, l.flow_id
    FROM evs e
    CROSS JOIN LATERAL (
        SELECT event_id, seq, flow_version, ts, flow_id FROM event_log WHERE event_id = e.id OFFSET 0
    ) AS l
)"""

_UNHELD = "NOT EXISTS (SELECT 1 FROM unheld u WHERE u.i = items.item)"
"""An item whose claimed job is not held writes nothing and gets no answer row: it falls back to
writing alone, which tells why (``queue.JOB_WRITES_BEFORE``)."""


def _group_ok(jobs: bool) -> str:
    held = f"\n      AND {_UNHELD}" if jobs else ""
    return (
        f"""ok AS (
    SELECT items.item, items.flow_id, items.v FROM items
    WHERE (items.expected IS NULL OR items.expected = items.v)
      AND NOT EXISTS (SELECT 1 FROM existing x WHERE x.item = items.item){held}
), ins AS (
    INSERT INTO event_log (event_id, flow_id, flow_version, event_type, payload)
    SELECT e.id, ok.flow_id, ok.v + e.ord, e.p ->> 'event_type', e.p
    FROM evs e JOIN ok ON ok.item = e.item
    ORDER BY e.item, e.ord
    RETURNING {_INSERTED_WITH_PAYLOAD}
), """
        + _artifacts_cte(
            "JOIN ok ON ok.item = (a ->> 'i')::int "
            "JOIN ins ON ins.flow_id = ok.flow_id AND ins.flow_version = ok.v + (a ->> 'o')::int"
        )
        + ",\n"
        + _ERRORS_CTE
    )


def _group_select(jobs: bool) -> str:
    held = f"\n  AND {_UNHELD}" if jobs else ""
    return f"""
SELECT ok.item, ins.event_id, ins.seq, ins.flow_version, ins.ts, ins.flow_id
FROM ins JOIN ok ON ok.flow_id = ins.flow_id
UNION ALL
SELECT item, event_id, seq, flow_version, ts, flow_id FROM existing
UNION ALL
SELECT item, NULL, NULL, v, NULL, NULL FROM items
WHERE NOT EXISTS (SELECT 1 FROM ok WHERE ok.item = items.item)
  AND NOT EXISTS (SELECT 1 FROM existing x WHERE x.item = items.item){held}
"""


@cache
def group_append(*, records: bool = False, jobs: bool = False) -> Query:
    """Several flows' batches (group commit). Parameters: ``:flow_ids`` and ``:expected`` per item
    (numbered from 1); ``:items``, ``:ordinals``, ``:event_ids`` per event and ``:payloads`` (one
    JSON array); ``:artifacts`` (one JSON array, each with its item ``i``); with ``records``,
    ``appended_records_ctes``'s ``:records`` for the members that carry them; with ``jobs``,
    ``:jobs`` for the members that change a job (``queue.JOB_WRITES_BEFORE``), written only with
    their events. Rows back: ``item`` then as ``judge_append``; no row for a member whose claimed
    job is not held. A unique violation (a writer outside the group took a version first) fails
    the whole statement; every member then goes through ``judge_append`` alone."""
    ctes = [_GROUP_ITEMS]
    if jobs:
        ctes += JOB_WRITES_BEFORE
    ctes.append(_group_ok(jobs))
    if records:
        ctes += [
            """rec_w AS (
    SELECT ok.item, ok.flow_id, min(ins.ts) AS t FROM ok JOIN ins ON ins.flow_id = ok.flow_id
    GROUP BY ok.item, ok.flow_id
)""",
            *appended_records_ctes("rec_w"),
        ]
    if jobs:
        ctes += JOB_WRITES_AFTER
    return query("WITH " + ",\n".join(ctes) + _group_select(jobs))


GROUP_APPEND = group_append()


# --- reads ----------------------------------------------------------------------------------------

MISSING_ARTIFACTS = query(
    """
SELECT h FROM unnest(:hashes::text[]) AS h
WHERE (SELECT true FROM workflow_step_artifacts WHERE artifact_hash = h) IS NULL
"""
)
"""Which of ``:hashes`` are not stored (a correlated lookup per hash: never an anti-join scan)."""

FLOW_VERSION = query(
    """
SELECT COALESCE((
    SELECT flow_version FROM event_log WHERE flow_id = :flow_id ORDER BY flow_version DESC LIMIT 1
), 0)
"""
)

_EVENT_COLUMNS = "seq, event_id, flow_version, ts, payload::text"
"""The payload as text: the driver decodes a text column in C, while the pool's ``jsonb`` codec (bytes
in and out, for the writes) is a Python call per row (measured: 4-5% of a read's client CPU)."""

LIST_EVENTS = query(f"SELECT {_EVENT_COLUMNS} FROM event_log WHERE flow_id = :flow_id ORDER BY flow_version")

READ_HORIZON = """(
    SELECT LEAST(
        pg_snapshot_xmax(s.snap),
        pg_current_xact_id_if_assigned(),
        (SELECT min(x) FROM pg_snapshot_xip(s.snap) AS x
         WHERE NOT EXISTS (
             SELECT 1 FROM pg_stat_activity a
             WHERE a.backend_xid = xid(x) AND a.datname IS DISTINCT FROM current_database()
         ))
    )
    FROM (SELECT pg_current_snapshot() AS snap) AS s
)"""
"""The transaction id below which every writer of this database's log has ended, as the
statement's snapshot sees it: the oldest transaction the snapshot sees running (``xip``) or this
one (its own uncommitted events are visible to it), else the snapshot's ``xmax``. A transaction
known to belong to another database (``pg_stat_activity``) is left out: it cannot write this log,
and ``pg_snapshot_xmin`` (cluster-wide) would let a long transaction there hold every subscriber
here back. Whatever is not known to be elsewhere counts (a transaction that ended since the
snapshot, one ``pg_stat_activity`` hides from an unprivileged role, a prepared one): that can
only lower the horizon, never let a later commit insert below what was read."""

READ_ALL = query(
    f"""
SELECT {_EVENT_COLUMNS}, flow_id, tx_id::text AS tx FROM event_log
WHERE (tx_id, seq) > (:after_tx::text::xid8, :after_seq::bigint)
  AND tx_id < {READ_HORIZON}
ORDER BY tx_id, seq
LIMIT :limit
"""
)
"""Every flow's events in the global order (SPEC 8.5), after a position, through
``event_log_tx_order_idx``, only below ``READ_HORIZON``: nothing can still commit before the last
row returned (migration 0011). The text of ``tx_id`` is named ``tx``: named ``tx_id``, it is what
``ORDER BY tx_id`` sorts (an output column's name comes first), in text order ("10" before "9")
and by a sort, not the index."""

LIST_EVENTS_AFTER = query(
    f"""
SELECT {_EVENT_COLUMNS} FROM event_log
WHERE flow_id = :flow_id AND flow_version > :after ORDER BY flow_version LIMIT :limit
"""
)

GET_ARTIFACTS = query(
    """
SELECT a.artifact_hash, a.kind, a.payload, a.metadata
FROM unnest(:hashes::text[]) AS q(h)
CROSS JOIN LATERAL (
    SELECT artifact_hash, kind, payload, metadata FROM workflow_step_artifacts
    WHERE artifact_hash = q.h OFFSET 0
) AS a
"""
)

_ERROR_COLUMNS = """flow_id, step_id, attempt_number, error_class, error_message, details,
retry_count, max_retries, ts, event_seq"""

_ERRORS_OF_FLOW = (
    f"SELECT {_ERROR_COLUMNS} FROM step_execution_errors"
    " WHERE flow_id = :flow_id AND (:step_id::text IS NULL OR step_id = :step_id)"
)

LIST_ERRORS = query(_ERRORS_OF_FLOW + " ORDER BY id")
ERROR_TIMELINE = query(_ERRORS_OF_FLOW + " ORDER BY attempt_number, ts, id")

COUNT_ERRORS = query(
    """
SELECT step_id, error_class, count(*) FROM step_execution_errors
WHERE flow_id = :flow_id GROUP BY step_id, error_class ORDER BY step_id, error_class
"""
)


_ERROR_ARRAY = """jsonb_build_array(
        step_id, attempt_number, error_class, error_message, details, retry_count, max_retries, ts, event_seq
    )"""


def _errors_json(flow: str) -> str:
    """The error rows of ``flow`` (an SQL expression) as ONE JSON array, as text."""
    return f"""(
    SELECT COALESCE(jsonb_agg({_ERROR_ARRAY} ORDER BY id), '[]'::jsonb)::text
    FROM step_execution_errors WHERE flow_id = {flow}
)"""


LOAD_FLOW = query(
    f"""
SELECT {_EVENT_COLUMNS} FROM event_log WHERE flow_id = :flow_id
UNION ALL
SELECT NULL, NULL, NULL, NULL, {_errors_json(":flow_id")}
ORDER BY flow_version NULLS LAST
"""
)
"""A flow's events, then one row whose payload is its error rows as a JSON array, in ONE statement
and so ONE snapshot: a ``StepFailed`` committed between two reads cannot make them disagree
(``FlowRepository`` checks one against the other)."""

LOAD_FLOW_AFTER = query(
    f"""
WITH errs AS MATERIALIZED (
    SELECT count(*) FILTER (WHERE event_seq IS NULL OR event_seq <= :after_seq) AS upto,
        COALESCE(
            jsonb_agg({_ERROR_ARRAY} ORDER BY id) FILTER (WHERE event_seq > :after_seq), '[]'::jsonb
        )::text AS newer
    FROM step_execution_errors WHERE flow_id = (SELECT :flow_id::uuid)
), mark AS MATERIALIZED (
    SELECT EXISTS (
        SELECT 1 FROM event_log
        WHERE flow_id = :flow_id AND flow_version = :after AND event_id = :after_id AND seq = :after_seq
    ) AND EXISTS (
        SELECT 1 FROM event_log WHERE flow_id = :flow_id AND flow_version = 1 AND seq = :first_seq
    ) AND errs.upto = :errors AS same, errs.newer
    FROM errs
)
SELECT {_EVENT_COLUMNS} FROM event_log
WHERE flow_id = :flow_id AND flow_version >= :after AND (SELECT same FROM mark)
UNION ALL
SELECT NULL, NULL, NULL, NULL, newer FROM mark WHERE same
ORDER BY flow_version NULLS LAST
"""
)
"""``LOAD_FLOW`` after a reader's mark, if the flow still has the reader's last event (``:after``,
``:after_id``, ``:after_seq``), its first one (``:first_seq``) and the ``:errors`` error rows up to
it: the event at ``:after`` (for the reader to check it again), those after it, and the error rows
after ``:after_seq`` (two probes of unique indexes, one pass over the flow's error rows). Else no
row at all: the reader reads the whole flow with ``LOAD_FLOW`` (rare: a flow deleted, or changed
behind the library's back).

Written to keep ONE generic plan: planned on every run (a custom plan per call), it cost a
10-event flow's load ~0.4 ms of the server's time, more than the read. PostgreSQL keeps the
generic plan only when a custom one is not estimated cheaper, so the flow id of the error rows'
pass is a subquery, which a custom plan cannot see through either (with the flow id known, it
estimated a flow with no failures at one row, the generic plan at the average); the whole flow
in the same statement, even in branches never run, kept the generic plan's estimate high too."""

LOAD_FLOWS = query(
    f"""
SELECT l.*, q.f
FROM unnest(:flow_ids::uuid[]) AS q(f)
CROSS JOIN LATERAL (
    SELECT {_EVENT_COLUMNS} FROM event_log WHERE flow_id = q.f ORDER BY flow_version OFFSET 0
) AS l
UNION ALL
SELECT NULL, NULL, NULL, NULL, {_errors_json("q.f")}, q.f
FROM unnest(:flow_ids::uuid[]) AS q(f)
"""
)
"""``LOAD_FLOW`` for several flows (``read_flows``), in ONE statement and so ONE snapshot: each
flow's events (its own index, a probe per flow), then per flow one row whose payload is its error
rows; the flow id last in every row."""
