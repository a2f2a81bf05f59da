"""The workflow records' SQL (SPEC 9.1). ``updated_at`` is kept by the database: the projection of an
engine flow sets it to ``now()`` in its own updates, and the ``BEFORE UPDATE`` triggers set it for
every other update (they run only for a row that would not hold ``now()``: migration 0009).

Statements that can meet a missing parent (a stage of a run, a log of a stage) check for it in the
same statement (locking it ``FOR KEY SHARE`` so it cannot vanish before the insert) and report
what was missing as a row, so a unit of work is never poisoned by a foreign-key error; keys that
are taken come back the same way (``ON CONFLICT DO NOTHING``).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from chem_persistence_async.backends.postgres.sql.query import Query, query

RUN_COLUMNS = """id, created_at, updated_at, workflow_id, workflow_name, workflow_type, status, started_at,
    completed_at, duration, input, output, config, total_cost, total_tokens, priority, flow_version"""

STAGE_COLUMNS = """id, created_at, updated_at, workflow_run_id, stage_id, stage_name, stage_number,
    execution_group, status, started_at, completed_at, duration, input_data, output_data, config,
    suspended_state, resume_data, next_poll_at, poll_interval, max_wait_until, metrics, embedding_info,
    error_message"""

ARTIFACT_COLUMNS = """id, created_at, updated_at, workflow_run_id, workflow_stage_id, key, type, data, size,
    metadata"""

LOG_COLUMNS = "id, created_at, workflow_run_id, workflow_stage_id, level, message, metadata"

_STAGE_ORDER = "execution_group, stage_number, created_at, id"
_STAGE_ORDER_DESC = "execution_group DESC, stage_number DESC, created_at DESC, id DESC"

FLOW_IDS = query(
    """
SELECT flow_id FROM event_log
WHERE flow_version = 1 AND (:after::uuid IS NULL OR flow_id > :after)
ORDER BY flow_id
LIMIT :limit
"""
)
"""The event store's flows in id order (``PgEventStore.flow_ids``, for ``records rebuild``): one
row per flow through the unique ``(flow_id, flow_version)`` index."""

# --- runs ---------------------------------------------------------------------------------------

CREATE_RUN = query(
    f"""
INSERT INTO workflow_runs (id, workflow_id, workflow_name, workflow_type, input, config, priority)
VALUES (:id, :workflow_id, :workflow_name, :workflow_type, :input::jsonb, :config::jsonb, :priority)
ON CONFLICT (id) DO NOTHING
RETURNING {RUN_COLUMNS}
"""
)
"""No row back: the id is taken."""

GET_RUN = query(f"SELECT {RUN_COLUMNS} FROM workflow_runs WHERE id = :id")

GET_RUN_STATUS = query("SELECT status FROM workflow_runs WHERE id = :id")

RUNS_BY_STATUS = query(
    f"""
SELECT {RUN_COLUMNS} FROM workflow_runs
WHERE status = :status
ORDER BY created_at, id
LIMIT :limit::bigint
"""
)
"""Served by ``workflow_runs_status_idx (status, created_at, id)`` in index order (no sort)."""

LIST_RUNS = query(
    f"""
SELECT {RUN_COLUMNS} FROM workflow_runs
WHERE (:status::text IS NULL OR status = :status)
  AND (:workflow_type::text IS NULL OR workflow_type = :workflow_type)
ORDER BY created_at DESC, id DESC
LIMIT :limit
"""
)

DELETE_RUN = query("DELETE FROM workflow_runs WHERE id = :id RETURNING id")

# --- stages -------------------------------------------------------------------------------------

CREATE_STAGE = query(
    f"""
WITH run AS (SELECT id FROM workflow_runs WHERE id = :run_id FOR KEY SHARE)
INSERT INTO workflow_stages (
    id, workflow_run_id, stage_id, stage_name, stage_number, execution_group, status, started_at,
    config, input_data
)
SELECT :id, run.id, :stage_id, :stage_name, :stage_number, :execution_group, :status,
       :started_at::timestamptz, :config::jsonb, :input_data::jsonb
FROM run
ON CONFLICT (workflow_run_id, stage_id) DO NOTHING
RETURNING {STAGE_COLUMNS}
"""
)
"""No row back: the run does not exist or already has this stage id (``RUN_EXISTS`` tells)."""

UPSERT_STAGE = query(
    f"""
WITH run AS (SELECT id FROM workflow_runs WHERE id = :run_id FOR KEY SHARE)
INSERT INTO workflow_stages AS s (
    id, workflow_run_id, stage_id, stage_name, stage_number, execution_group, status, started_at,
    config, input_data
)
SELECT :id, run.id, :stage_id, :stage_name, :stage_number, :execution_group, :status,
       :started_at::timestamptz, :config::jsonb, :input_data::jsonb
FROM run
ON CONFLICT (workflow_run_id, stage_id) DO UPDATE SET
    stage_name = EXCLUDED.stage_name,
    stage_number = EXCLUDED.stage_number,
    execution_group = EXCLUDED.execution_group,
    status = CASE WHEN :set_status THEN EXCLUDED.status ELSE s.status END,
    started_at = CASE WHEN :set_started_at THEN EXCLUDED.started_at ELSE s.started_at END,
    config = CASE WHEN :set_config THEN EXCLUDED.config ELSE s.config END,
    input_data = CASE WHEN :set_input_data THEN EXCLUDED.input_data ELSE s.input_data END
RETURNING {STAGE_COLUMNS}
"""
)
"""No row back: the run does not exist."""

RUN_EXISTS = query("SELECT EXISTS (SELECT 1 FROM workflow_runs WHERE id = :id)")

GET_STAGE = query(
    f"SELECT {STAGE_COLUMNS} FROM workflow_stages WHERE workflow_run_id = :run_id AND stage_id = :stage_id"
)

GET_STAGE_BY_ID = query(f"SELECT {STAGE_COLUMNS} FROM workflow_stages WHERE id = :id")

STAGES_BY_RUN = query(
    f"""
SELECT {STAGE_COLUMNS} FROM workflow_stages
WHERE workflow_run_id = :run_id
  AND (:status::text IS NULL OR status = :status)
  AND (:execution_group::int IS NULL OR execution_group = :execution_group)
ORDER BY {_STAGE_ORDER}
"""
)

SUSPENDED_STAGES = query(
    f"""
SELECT {STAGE_COLUMNS} FROM workflow_stages
WHERE status = 'SUSPENDED' AND next_poll_at IS NOT NULL AND next_poll_at <= :before
ORDER BY next_poll_at, id
"""
)

FIRST_SUSPENDED_READY = query(
    f"""
SELECT {STAGE_COLUMNS} FROM workflow_stages
WHERE workflow_run_id = :run_id AND status = 'SUSPENDED' AND next_poll_at IS NULL
ORDER BY {_STAGE_ORDER}
LIMIT 1
"""
)

FIRST_FAILED = query(
    f"""
SELECT {STAGE_COLUMNS} FROM workflow_stages
WHERE workflow_run_id = :run_id AND status = 'FAILED'
ORDER BY {_STAGE_ORDER}
LIMIT 1
"""
)

LAST_COMPLETED = query(
    f"""
SELECT {STAGE_COLUMNS} FROM workflow_stages
WHERE workflow_run_id = :run_id AND status = 'COMPLETED'
  AND (:before_group::int IS NULL OR execution_group < :before_group)
ORDER BY {_STAGE_ORDER_DESC}
LIMIT 1
"""
)

DELETE_STAGE = query("DELETE FROM workflow_stages WHERE id = :id RETURNING id")

STAGE_ID = query("SELECT id FROM workflow_stages WHERE workflow_run_id = :run_id AND stage_id = :stage_id")


@lru_cache(maxsize=512)
def update(table: str, columns: Sequence[str], where: str) -> Query:
    """``UPDATE table SET column = :column ... WHERE where RETURNING id`` for a fixed set of the
    table's own column names (never caller text: ``columns`` come from the checked field names)."""
    casts = _CASTS[table]
    sets = ", ".join(f"{column} = :{column}{casts.get(column, '')}" for column in columns)
    return query(f"UPDATE {table} SET {sets} WHERE {where} RETURNING id")


@lru_cache(maxsize=16)
def exists(table: str, where: str) -> Query:
    """Whether ``table`` has a row ``where`` (an update with nothing to change still checks)."""
    return query(f"SELECT EXISTS (SELECT 1 FROM {table} WHERE {where})")


_JSONB = "::jsonb"
_CASTS: dict[str, dict[str, str]] = {
    "workflow_runs": {
        "output": _JSONB,
        "started_at": "::timestamptz",
        "completed_at": "::timestamptz",
        "duration": "::bigint",
        "total_cost": "::float8",
        "total_tokens": "::bigint",
    },
    "workflow_stages": {
        "output_data": _JSONB,
        "config": _JSONB,
        "suspended_state": _JSONB,
        "resume_data": _JSONB,
        "metrics": _JSONB,
        "embedding_info": _JSONB,
        "started_at": "::timestamptz",
        "completed_at": "::timestamptz",
        "next_poll_at": "::timestamptz",
        "max_wait_until": "::timestamptz",
        "duration": "::bigint",
        "poll_interval": "::int",
        "error_message": "::text",
    },
}

# --- logs ---------------------------------------------------------------------------------------

CREATE_LOG = query(
    """
WITH run AS (SELECT 1 FROM workflow_runs WHERE id = :run_id FOR KEY SHARE),
stage AS (SELECT 1 FROM workflow_stages WHERE id = :stage_id FOR KEY SHARE),
ins AS (
    INSERT INTO workflow_logs (id, workflow_run_id, workflow_stage_id, level, message, metadata)
    SELECT :id, :run_id::uuid, :stage_id::uuid, :level, :message, :metadata::jsonb
    WHERE (:run_id::uuid IS NULL OR EXISTS (SELECT 1 FROM run))
      AND (:stage_id::uuid IS NULL OR EXISTS (SELECT 1 FROM stage))
    RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM ins), EXISTS (SELECT 1 FROM run), EXISTS (SELECT 1 FROM stage)
"""
)
"""One row: ``(written, run found, stage found)``."""

GET_LOGS = query(
    f"SELECT {LOG_COLUMNS} FROM workflow_logs WHERE workflow_run_id = :run_id ORDER BY seq LIMIT :limit"
)

# --- artifacts ----------------------------------------------------------------------------------

SAVE_ARTIFACT = query(
    f"""
WITH run AS (SELECT 1 FROM workflow_runs WHERE id = :run_id FOR KEY SHARE),
stage AS (SELECT 1 FROM workflow_stages WHERE id = :stage_id FOR KEY SHARE),
ins AS (
    INSERT INTO workflow_artifacts AS a (
        id, workflow_run_id, workflow_stage_id, key, type, data, size, metadata
    )
    SELECT :id, :run_id, :stage_id::uuid, :key, :type, :data::jsonb, :size, :metadata::jsonb
    WHERE EXISTS (SELECT 1 FROM run) AND (:stage_id::uuid IS NULL OR EXISTS (SELECT 1 FROM stage))
    ON CONFLICT (workflow_run_id, key) DO UPDATE SET
        workflow_stage_id = EXCLUDED.workflow_stage_id,
        type = EXCLUDED.type,
        data = EXCLUDED.data,
        size = EXCLUDED.size,
        metadata = EXCLUDED.metadata
    RETURNING {ARTIFACT_COLUMNS}
)
SELECT true, EXISTS (SELECT 1 FROM run), EXISTS (SELECT 1 FROM stage), ins.* FROM ins
UNION ALL
SELECT false, EXISTS (SELECT 1 FROM run), EXISTS (SELECT 1 FROM stage),
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
WHERE NOT EXISTS (SELECT 1 FROM ins)
"""
)
"""One row: ``(written, run found, stage found, the artifact's columns...)``."""

LOAD_ARTIFACT = query("SELECT data FROM workflow_artifacts WHERE workflow_run_id = :run_id AND key = :key")

HAS_ARTIFACT = query(
    "SELECT EXISTS (SELECT 1 FROM workflow_artifacts WHERE workflow_run_id = :run_id AND key = :key)"
)

DELETE_ARTIFACT = query(
    "DELETE FROM workflow_artifacts WHERE workflow_run_id = :run_id AND key = :key RETURNING id"
)

LIST_ARTIFACTS = query(
    f"SELECT {ARTIFACT_COLUMNS} FROM workflow_artifacts WHERE workflow_run_id = :run_id ORDER BY key"
)

# --- the projection of an engine flow -----------------------------------------------------------

_TERMINAL = "('COMPLETED', 'FAILED', 'CANCELLED', 'SKIPPED')"


def _started(old: str, new: str) -> str:
    return f"CASE WHEN :replace THEN {new}.started_at ELSE COALESCE({old}.started_at, {new}.started_at) END"


def _completed(old: str, new: str) -> str:
    return (
        f"CASE WHEN {new}.status NOT IN {_TERMINAL} THEN NULL "
        f"WHEN :replace THEN {new}.completed_at "
        f"ELSE COALESCE({new}.completed_at, {old}.completed_at) END"
    )


_INSERT_RUN = """INSERT INTO workflow_runs AS r (
        id, workflow_id, workflow_name, workflow_type, status, input, output, config, created_at,
        started_at, completed_at, duration, flow_version
    )"""
_INSERT_STAGE = """INSERT INTO workflow_stages AS s (
        id, created_at, workflow_run_id, stage_id, stage_name, stage_number, execution_group, status,
        started_at, completed_at, duration, config, output_data, metrics, error_message, next_poll_at
    )"""
_RUN_FROM_PROJECTION = """ON CONFLICT (id) DO UPDATE SET
        status = EXCLUDED.status,
        output = EXCLUDED.output,
        flow_version = EXCLUDED.flow_version,
        updated_at = now(),"""
"""The run and stage inserts a projection makes, and what it sets on an existing run, in
``RECORD_FLOW`` and in the records an append carries (``appended_records_ctes``): what an append
can change. Not what the flow's start fixed (its workflow id, name, type, config and input): they
never change after the flow's first event, so a merge leaves them as the row has them (an
operator's edit included, as the in-memory backend does), and setting the input again wrote the
whole input to the table and the WAL at every recorded append. A rebuild (``RECORD_FLOW``'s
``:replace``) writes them from the log."""

_RUN_FIXED_AT_START = ("workflow_id", "workflow_name", "workflow_type", "config", "input")
_STAGE_FIXED_AT_START = ("stage_name", "stage_number", "execution_group", "config")


def _replaced(row: str, columns: tuple[str, ...]) -> str:
    """The SET of the columns a merge leaves alone and a rebuild (``:replace``) writes."""
    return ",\n        ".join(
        f"{column} = CASE WHEN :replace THEN EXCLUDED.{column} ELSE {row}.{column} END" for column in columns
    )


_STAGE_FROM_PROJECTION = """status = EXCLUDED.status,
        output_data = EXCLUDED.output_data,
        metrics = EXCLUDED.metrics,
        error_message = EXCLUDED.error_message,
        next_poll_at = EXCLUDED.next_poll_at,
        updated_at = now(),"""
"""What a projected stage sets on its row, in ``RECORD_FLOW`` and in the records an append carries
(not its name, number, group or config: see ``_RUN_FROM_PROJECTION``)."""


RECORD_FLOW = query(
    f"""
WITH old AS (
    SELECT flow_version FROM workflow_runs WHERE id = :run_id
), run AS (
    {_INSERT_RUN}
    VALUES (
        :run_id, :workflow_id, :workflow_name, :workflow_type, :status, :input::jsonb, :output::jsonb,
        :config::jsonb, COALESCE(:created_at::timestamptz, now()), :started_at::timestamptz,
        :completed_at::timestamptz, chem_duration_ms(:started_at, :completed_at), :flow_version
    )
    {_RUN_FROM_PROJECTION}
        {_replaced("r", _RUN_FIXED_AT_START)},
        created_at = COALESCE(:created_at::timestamptz, r.created_at),
        started_at = {_started("r", "EXCLUDED")},
        completed_at = {_completed("r", "EXCLUDED")},
        duration = chem_duration_ms({_started("r", "EXCLUDED")}, {_completed("r", "EXCLUDED")})
    WHERE COALESCE(r.flow_version, 0) <= EXCLUDED.flow_version
    RETURNING r.created_at
), stages AS (
    {_INSERT_STAGE}
    SELECT g.id, run.created_at, :run_id, g.stage_id, g.stage_name, g.n, g.n, g.status,
           g.started_at, g.completed_at, chem_duration_ms(g.started_at, g.completed_at), g.config,
           g.output_data, g.metrics, g.error_message, g.next_poll_at
    FROM unnest(
        :stage_ids::uuid[], :step_ids::text[], :stage_names::text[], :numbers::int[], :statuses::text[],
        :error_messages::text[], :next_polls::timestamptz[], :starts::timestamptz[],
        :completions::timestamptz[], :configs::jsonb[], :outputs::jsonb[], :metrics::jsonb[],
        :touched::bool[]
    ) AS g(id, stage_id, stage_name, n, status, error_message, next_poll_at, started_at, completed_at,
           config, output_data, metrics, touched)
    CROSS JOIN run
    WHERE g.touched OR :replace
       OR NOT EXISTS (SELECT 1 FROM old WHERE old.flow_version = :previous_version)
    ON CONFLICT (workflow_run_id, stage_id) DO UPDATE SET
        {_STAGE_FROM_PROJECTION}
        {_replaced("s", _STAGE_FIXED_AT_START)},
        created_at = CASE WHEN :replace THEN EXCLUDED.created_at ELSE s.created_at END,
        started_at = {_started("s", "EXCLUDED")},
        completed_at = {_completed("s", "EXCLUDED")},
        duration = chem_duration_ms({_started("s", "EXCLUDED")}, {_completed("s", "EXCLUDED")})
    WHERE :replace
       OR EXCLUDED.started_at IS NOT NULL
       OR EXCLUDED.completed_at IS NOT NULL
       OR (s.status, s.output_data, s.metrics, s.error_message, s.next_poll_at)
          IS DISTINCT FROM
          (EXCLUDED.status, EXCLUDED.output_data, EXCLUDED.metrics, EXCLUDED.error_message,
           EXCLUDED.next_poll_at)
    RETURNING 1
)
SELECT (SELECT count(*) FROM run), (SELECT count(*) FROM stages)
"""
)
"""A flow's run and its stages, merged (``:replace`` false: the projection of the events just
appended, rules of ``domain.records.merged_times``) or replaced (a projection of the whole log).
Only the stages the events name are written when the stored run is at ``:previous_version`` (the
others cannot have changed); all of them otherwise (records turned on midway, or rows deleted).
A stage whose projection changed nothing is left untouched (no new row version). Nothing is
written when the run already reflects a later version of the flow. One row back:
``(runs written, stages written)``."""


# --- the projection of an engine flow, inside its append --------------------------------------

_MERGED_STARTED = "COALESCE({old}.started_at, {new}.started_at)"
_MERGED_COMPLETED = (
    f"CASE WHEN {{new}}.status NOT IN {_TERMINAL} THEN NULL "
    "ELSE COALESCE({new}.completed_at, {old}.completed_at) END"
)


def _merged_times(old: str, new: str = "EXCLUDED") -> str:
    """The SET of a merged row's times: ``old`` the stored row, ``new`` the projected one."""
    started = _MERGED_STARTED.format(old=old, new=new)
    completed = _MERGED_COMPLETED.format(old=old, new=new)
    return f"""started_at = {started},
        completed_at = {completed},
        duration = chem_duration_ms({started}, {completed})"""


_STORED_VERSION = "(SELECT x.flow_version FROM workflow_runs x WHERE x.id = {run})"
"""The stored run's version (before the statement): looked up only for a stage the events do not
name, which needs writing only when the stored records are not at the version before them."""

_STAGE_JSON_COLUMNS = """id uuid, k text, n text, x int, s text, e text, np timestamptz, sn bool, dn bool,
        c jsonb, o jsonb, m jsonb, t bool"""
"""A projected stage's fields as its JSON carries them (``jsonb_to_recordset``)."""


def _stage_changed(new: str) -> str:
    """Whether a projected stage ``new`` changes its stored row ``s`` in something an operator reads."""
    return f"""{new}.started_at IS NOT NULL
       OR {new}.completed_at IS NOT NULL
       OR (s.status, s.output_data, s.metrics, s.error_message, s.next_poll_at)
          IS DISTINCT FROM
          ({new}.status, {new}.output_data, {new}.metrics, {new}.error_message,
           {new}.next_poll_at)"""


_STAGE_MERGED = f"""ON CONFLICT (workflow_run_id, stage_id) DO UPDATE SET
        {_STAGE_FROM_PROJECTION}
        {_merged_times("s")}
    WHERE {_stage_changed("EXCLUDED")}"""
"""How a stage an append projects merges into its row (only if something an operator reads
changed), in the group's and the one-flow forms alike."""


def appended_records_ctes(written: str) -> list[str]:
    """``RECORD_FLOW``'s merge (``:replace`` false) as CTEs to compose into an append statement, for
    the flows its ``written`` CTE lists: ``(item, flow_id, t)``, one row per flow whose events the
    statement inserted, ``t`` their ``ts`` (the time ``APPEND_TIME`` stands for). A flow the append
    did not write (a conflict, events stored already) is not in it, so nothing of it is recorded.

    One parameter, ``:records``: ONE JSON array (an array parameter per column would cost the
    client a codec call per element), per recorded flow ``{"i": item, "w": workflow_id, "n": name,
    "y": type, "s": status, "in": input, "o": output, "c": config, "v": flow_version, "p": previous
    version, "cn"/"sn"/"dn": created/started/completed at the append's time, "g": stages}``, each
    stage ``{"id", "k": stage_id, "n": name, "x": number, "s": status, "e": error message, "np":
    next poll, "sn"/"dn", "c": config, "o": output, "m": metrics, "t": touched}``.

    A member whose writer knows its run is stored (``RunProjection.stored``) sends no input
    (``"in": null``, which is how the statement tells such a member): the run exists, so the insert
    meets it and updates it, which leaves the input as it is; a run or stage row deleted by hand
    meanwhile is not made again (as ``stored_flow_records_ctes`` leaves it). Parsing a large input
    again at every grouped append cost the server in proportion to its size. (A deletion committed
    between this statement's snapshot and its insert would let the insert make the run with ``{}``
    for input; ``records rebuild`` writes it from the log.) The rows are looked up by correlated
    scalar subqueries on their unique keys, which the planner cannot turn into a hashed subplan
    over a scan (an ``EXISTS`` in an ``OR`` it could).

    As lean as ``appended_flow_records_ctes`` per member: no sort (the members are distinct flows,
    whose rows no other statement writes at once: see there), the stored run's version looked up
    only for an untouched stage, and the runs created now found once per statement (an init plan),
    not by a subquery per updated run.
    """
    return [
        f"""rec AS (
    SELECT n.*, w_.flow_id AS run_id, w_.t
    FROM jsonb_to_recordset(:records::jsonb) AS n(
        i int, w text, n text, y text, s text, "in" jsonb, o jsonb, c jsonb, v int, p int,
        cn bool, sn bool, dn bool, g jsonb
    )
    JOIN {written} w_ ON w_.item = n.i
)""",
        f"""rec_run AS (
    {_INSERT_RUN}
    SELECT n.run_id, n.w, n.n, n.y, n.s, COALESCE(n."in", '{{}}'::jsonb), NULLIF(n.o, 'null'::jsonb), n.c,
           CASE WHEN n.cn THEN n.t ELSE now() END, CASE WHEN n.sn THEN n.t END, CASE WHEN n.dn THEN n.t END,
           chem_duration_ms(CASE WHEN n.sn THEN n.t END, CASE WHEN n.dn THEN n.t END), n.v
    FROM rec n
    WHERE n."in" IS NOT NULL OR (SELECT true FROM workflow_runs x WHERE x.id = n.run_id)
    {_RUN_FROM_PROJECTION}
        created_at = CASE WHEN r.id = ANY (ARRAY(SELECT c.run_id FROM rec c WHERE c.cn))
                          THEN EXCLUDED.created_at ELSE r.created_at END,
        {_merged_times("r")}
    WHERE COALESCE(r.flow_version, 0) <= EXCLUDED.flow_version
    RETURNING r.id, r.created_at
)""",
        f"""rec_stages AS (
    {_INSERT_STAGE}
    SELECT g.id, run.created_at, run.id, g.k, g.n, g.x, g.x, g.s,
           CASE WHEN g.sn THEN n.t END, CASE WHEN g.dn THEN n.t END,
           chem_duration_ms(CASE WHEN g.sn THEN n.t END, CASE WHEN g.dn THEN n.t END),
           g.c, NULLIF(g.o, 'null'::jsonb), g.m, g.e, g.np
    FROM rec n
    JOIN rec_run run ON run.id = n.run_id
    CROSS JOIN LATERAL jsonb_to_recordset(n.g) AS g(
        {_STAGE_JSON_COLUMNS}
    )
    WHERE (g.t OR {_STORED_VERSION.format(run="run.id")} IS DISTINCT FROM n.p)
      AND (n."in" IS NOT NULL
           OR (SELECT true FROM workflow_stages x WHERE x.workflow_run_id = run.id AND x.stage_id = g.k))
    {_STAGE_MERGED}
)""",
    ]


def appended_flow_records_ctes(written: str) -> list[str]:
    """``appended_records_ctes`` for a statement that appends to ONE flow (``lean_append``,
    ``judge_append``): its ``written`` CTE has at most one row ``(item, flow_id, t)``. The run
    comes as scalar parameters and the stages as one JSON array, so the statement has no join,
    sort or set-returning function for the run (each costs the server a plan node to set up at
    every execution): ``:rec_w`` workflow id, ``:rec_n`` name, ``:rec_y`` type, ``:rec_s``
    status, ``:rec_in``/``:rec_o``/``:rec_c`` input, output, config (JSON), ``:rec_v`` flow
    version, ``:rec_p`` previous version, ``:rec_cn``/``:rec_sn``/``:rec_dn`` created/started/
    completed at the append's time, ``:rec_g`` the stages (as ``appended_records_ctes``'s ``g``).
    No order is needed among the rows: appends to one flow are serialized by the event log (a
    second writer of the same version waits for the first and writes nothing)."""
    return [
        f"""rec_run AS (
    {_INSERT_RUN}
    SELECT w_.flow_id, :rec_w::text, :rec_n::text, :rec_y::text, :rec_s::text, :rec_in::jsonb,
           :rec_o::jsonb, :rec_c::jsonb, CASE WHEN :rec_cn::bool THEN w_.t ELSE now() END,
           CASE WHEN :rec_sn::bool THEN w_.t END, CASE WHEN :rec_dn::bool THEN w_.t END,
           chem_duration_ms(CASE WHEN :rec_sn THEN w_.t END, CASE WHEN :rec_dn THEN w_.t END), :rec_v::int
    FROM {written} w_
    {_RUN_FROM_PROJECTION}
        created_at = CASE WHEN :rec_cn THEN EXCLUDED.created_at ELSE r.created_at END,
        {_merged_times("r")}
    WHERE COALESCE(r.flow_version, 0) <= EXCLUDED.flow_version
    RETURNING r.id, r.created_at
)""",
        f"""rec_stages AS (
    {_INSERT_STAGE}
    SELECT g.id, run.created_at, run.id, g.k, g.n, g.x, g.x, g.s,
           CASE WHEN g.sn THEN w_.t END, CASE WHEN g.dn THEN w_.t END,
           chem_duration_ms(CASE WHEN g.sn THEN w_.t END, CASE WHEN g.dn THEN w_.t END),
           g.c, NULLIF(g.o, 'null'::jsonb), g.m, g.e, g.np
    FROM rec_run run
    CROSS JOIN {written} w_
    CROSS JOIN jsonb_to_recordset(:rec_g::jsonb) AS g(
        {_STAGE_JSON_COLUMNS}
    )
    WHERE g.t OR {_STORED_VERSION.format(run="run.id")} IS DISTINCT FROM :rec_p::int
    {_STAGE_MERGED}
)""",
    ]


_STORED_STAGE_JSON_COLUMNS = "k text, s text, e text, np timestamptz, sn bool, dn bool, o jsonb, m jsonb"
"""What a stored stage's JSON carries (``stored_flow_records_ctes``): what an append can change."""


def stored_flow_records_ctes(written: str) -> list[str]:
    """``appended_flow_records_ctes`` for a flow whose writer knows the stored records are at the
    version before this append (``RunProjection.stored``: its own last append left them there), so
    the run and every stage row exist: plain updates of what an append can change, by the keys
    of ``:flow_id`` (the statement's own), with no insert to try first (an upsert looks its key
    up once more and locks the row before it updates), and none of what the flow's start fixed
    sent again (names, input, config: the flow's input could be large). Parameters: ``:rec_s``,
    ``:rec_o``, ``:rec_v``, ``:rec_sn``, ``:rec_dn`` as there, ``:rec_g`` the stages' JSON with
    ``_STORED_STAGE_JSON_COLUMNS`` only. A row deleted since is not written again (as a stage the
    events do not name is not: ``records rebuild`` restores both)."""
    return [
        f"""rec_run AS (
    UPDATE workflow_runs r SET
        status = n.status, output = n.output, flow_version = n.flow_version, updated_at = now(),
        {_merged_times("r", "n")}
    FROM (
        SELECT :rec_s::text AS status, :rec_o::jsonb AS output, :rec_v::int AS flow_version,
               CASE WHEN :rec_sn::bool THEN w_.t END AS started_at,
               CASE WHEN :rec_dn::bool THEN w_.t END AS completed_at
        FROM {written} w_
    ) AS n
    WHERE r.id = :flow_id::uuid AND COALESCE(r.flow_version, 0) <= n.flow_version
    RETURNING r.id
)""",
        f"""rec_stages AS (
    UPDATE workflow_stages s SET
        status = n.status, output_data = n.output_data, metrics = n.metrics,
        error_message = n.error_message, next_poll_at = n.next_poll_at, updated_at = now(),
        {_merged_times("s", "n")}
    FROM (
        SELECT g.k, g.s AS status, NULLIF(g.o, 'null'::jsonb) AS output_data, g.m AS metrics,
               g.e AS error_message, g.np AS next_poll_at,
               CASE WHEN g.sn THEN w_.t END AS started_at, CASE WHEN g.dn THEN w_.t END AS completed_at
        FROM rec_run
        CROSS JOIN {written} w_
        CROSS JOIN jsonb_to_recordset(:rec_g::jsonb) AS g({_STORED_STAGE_JSON_COLUMNS})
    ) AS n
    WHERE s.workflow_run_id = :flow_id::uuid AND s.stage_id = n.k
      AND ({_stage_changed("n")})
)""",
    ]


# --- the projections of many flows' whole logs, in one statement --------------------------------

_RUN_PROJECTED = ("status", "output", "started_at", "completed_at", "duration", *_RUN_FIXED_AT_START)
_STAGE_PROJECTED = (
    "stage_name",
    "stage_number",
    "execution_group",
    "status",
    "started_at",
    "completed_at",
    "duration",
    "config",
    "output_data",
    "metrics",
    "error_message",
    "next_poll_at",
)


def _differs(row: str, columns: tuple[str, ...]) -> str:
    """Whether the stored ``row`` differs from ``EXCLUDED`` in any of ``columns``."""
    stored = ", ".join(f"{row}.{c}" for c in columns)
    projected = ", ".join(f"EXCLUDED.{c}" for c in columns)
    return f"({stored}) IS DISTINCT FROM ({projected})"


def _set_all(columns: tuple[str, ...]) -> str:
    return ",\n        ".join(f"{c} = EXCLUDED.{c}" for c in columns)


RECORD_FLOWS = query(
    f"""
WITH f AS (
    SELECT * FROM jsonb_to_recordset(:flows::jsonb) AS f(
        id uuid, w text, n text, y text, s text, "in" jsonb, o jsonb, c jsonb, ca timestamptz,
        sa timestamptz, da timestamptz, v int, g jsonb
    )
), newer AS (
    SELECT f.id FROM f JOIN workflow_runs x ON x.id = f.id WHERE x.flow_version > f.v
), run AS (
    {_INSERT_RUN}
    SELECT f.id, f.w, f.n, f.y, f.s, f."in", NULLIF(f.o, 'null'::jsonb), f.c, f.ca, f.sa,
           CASE WHEN f.s IN {_TERMINAL} THEN f.da END,
           chem_duration_ms(f.sa, CASE WHEN f.s IN {_TERMINAL} THEN f.da END), f.v
    FROM f
    ON CONFLICT (id) DO UPDATE SET
        {_set_all(_RUN_PROJECTED)},
        created_at = EXCLUDED.created_at,
        flow_version = EXCLUDED.flow_version,
        updated_at = now()
    WHERE COALESCE(r.flow_version, 0) < EXCLUDED.flow_version
       OR (r.flow_version = EXCLUDED.flow_version
           AND {_differs("r", (*_RUN_PROJECTED, "created_at"))})
    RETURNING r.id
), stages AS (
    {_INSERT_STAGE}
    SELECT g.id, f.ca, f.id, g.k, g.n, g.x, g.x, g.s, g.sa,
           CASE WHEN g.s IN {_TERMINAL} THEN g.da END,
           chem_duration_ms(g.sa, CASE WHEN g.s IN {_TERMINAL} THEN g.da END),
           g.c, NULLIF(g.o, 'null'::jsonb), g.m, g.e, g.np
    FROM f
    JOIN run ON run.id = f.id
    CROSS JOIN LATERAL jsonb_to_recordset(f.g) AS g(
        id uuid, k text, n text, x int, s text, e text, np timestamptz, sa timestamptz,
        da timestamptz, c jsonb, o jsonb, m jsonb
    )
    ON CONFLICT (workflow_run_id, stage_id) DO UPDATE SET
        {_set_all(_STAGE_PROJECTED)},
        created_at = EXCLUDED.created_at,
        updated_at = now()
    WHERE {_differs("s", (*_STAGE_PROJECTED, "created_at"))}
    RETURNING 1
)
SELECT ARRAY(SELECT id FROM newer), (SELECT count(*) FROM run), (SELECT count(*) FROM stages)
"""
)
"""``RECORD_FLOW``'s replace (a projection of each flow's whole log) for many flows at once
(``:flows``: a JSON array, per flow ``{"id", "w": workflow_id, "n": name, "y": type, "s": status,
"in": input, "o": output, "c": config, "ca"/"sa"/"da": created/started/completed at, "v": flow
version, "g": stages}``, each stage ``{"id", "k": stage_id, "n": name, "x": number, "s": status,
"e": error message, "np": next poll, "sa"/"da", "c": config, "o": output, "m": metrics}``), as
``RecordsFollower`` writes a batch. A run already at a later version is left with its stages (its
id comes back in the first column); a run at the same version that already equals its projection
is not written again, nor are its stages (no new row versions for flows a batch saw before), and
of a run written only the stages that differ are. One row: ``(ids of flows with newer records,
runs written, stages written)``."""
