"""The records benchmark's floor: raw asyncpg writing the bench flow's events, with and without the
least SQL that keeps its run and stages current in the same statement.

The flow is ``records.flow_definition()`` as the engine writes it: five appends, each ONE
autocommit statement (``FlowInitialized``; ``StepStarted`` a; then three times a ``StepFinished``
with its artifact and the next ``StepStarted`` or the ``FlowCompleted``), the payloads the size the
engine's are. With records, each statement also writes what the engine's records hold after it:
the run (created PENDING with its three PENDING stages, then RUNNING, then COMPLETED with its
output and times; its ``flow_version`` at every append) and the stages the events name (status,
times, duration, output, metrics), by their keys, with no projection of any kind on the client.

What this raw pair adds is what the same-transaction records cost the server at the least: the
floor under the library's "time added with WorkflowRecords".
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from uuid import UUID, uuid4

import asyncpg

_STEPS = ("a", "b", "c")


def _one_event(version: int, event_type: str) -> str:
    return f"""INSERT INTO event_log (event_id, flow_id, flow_version, event_type, payload)
    VALUES ($1, $2, {version}, '{event_type}', $3::jsonb)"""


def _with_one_event(insert: str) -> str:
    """``insert`` as the statement's first CTE, ``ins``, giving back the event's time."""
    return f"WITH ins AS (\n    {insert}\n    RETURNING ts\n)"


_FIRST = _one_event(1, "flowinitialized")

_FIRST_RECORDED = f"""
{_with_one_event(_FIRST)}, run AS (
    INSERT INTO workflow_runs (id, workflow_id, workflow_name, workflow_type, status, input, config,
                               created_at, flow_version)
    SELECT $2, 'bench-records@raw', 'bench-records', 'bench-records', 'PENDING', '{{}}', $4::jsonb, ins.ts, 1
    FROM ins
    RETURNING created_at
)
INSERT INTO workflow_stages (id, created_at, workflow_run_id, stage_id, stage_name, stage_number,
                             execution_group, status, config, metrics)
SELECT gen_random_uuid(), run.created_at, $2, s.k, 'Noop', s.n - 1, s.n - 1, 'PENDING', '{{}}',
       '{{"attempts": 0, "retry_count": 0}}'
FROM run, unnest('{{a,b,c}}'::text[]) WITH ORDINALITY AS s(k, n)
"""

_START = _one_event(2, "stepstarted")

_START_RECORDED = f"""
{_with_one_event(_START)}, run AS (
    UPDATE workflow_runs r SET status = 'RUNNING', started_at = ins.ts, flow_version = 2, updated_at = now()
    FROM ins WHERE r.id = $2
)
UPDATE workflow_stages s SET status = 'RUNNING', started_at = ins.ts, updated_at = now(),
    metrics = '{{"attempts": 1, "retry_count": 0}}'
FROM ins WHERE s.workflow_run_id = $2 AND s.stage_id = 'a'
"""

_FINISH_CTES = """ins AS (
    INSERT INTO event_log (event_id, flow_id, flow_version, event_type, payload)
    VALUES ($1, $3, $5, 'stepfinished', $6::jsonb), ($2, $3, $5 + 1, $4, $7::jsonb)
    RETURNING seq, flow_version, ts
), arts AS (
    INSERT INTO workflow_step_artifacts (artifact_hash, kind, payload, produced_in_seq)
    SELECT $8, 'value', $9::jsonb, ins.seq FROM ins WHERE ins.flow_version = $5
    ON CONFLICT (artifact_hash) DO NOTHING
)"""
"""A step's end: its ``StepFinished`` with its artifact, and the next ``StepStarted`` (``$4``)."""

_FINISH = f"WITH {_FINISH_CTES}\nSELECT count(*) FROM ins"

_FINISH_RECORDED = f"""
WITH {_FINISH_CTES}, t AS (
    SELECT max(ts) AS ts FROM ins
), run AS (
    UPDATE workflow_runs r SET
        status = CASE WHEN $4 = 'flowcompleted' THEN 'COMPLETED' ELSE r.status END,
        output = CASE WHEN $4 = 'flowcompleted' THEN $11::jsonb END,
        completed_at = CASE WHEN $4 = 'flowcompleted' THEN t.ts END,
        duration = CASE WHEN $4 = 'flowcompleted'
                        THEN floor(extract(epoch FROM t.ts - r.started_at) * 1000)::bigint END,
        flow_version = $5 + 1, updated_at = now()
    FROM t WHERE r.id = $3
), done AS (
    UPDATE workflow_stages s SET status = 'COMPLETED', completed_at = t.ts,
        duration = floor(extract(epoch FROM t.ts - s.started_at) * 1000)::bigint,
        output_data = $10::jsonb, updated_at = now()
    FROM t WHERE s.workflow_run_id = $3 AND s.stage_id = $12
)
UPDATE workflow_stages s SET status = 'RUNNING', started_at = t.ts, updated_at = now(),
    metrics = '{{"attempts": 1, "retry_count": 0}}'
FROM t WHERE s.workflow_run_id = $3 AND s.stage_id = $13
"""
"""``$13`` NULL for the last step (its statement completes the flow: no stage starts)."""


def _payload(**fields: Any) -> str:
    return json.dumps(fields)


async def run_raw_flow(conn: asyncpg.Connection, *, records: bool) -> UUID:
    """One bench flow's five appends, as raw autocommit statements (with ``records``, each also
    keeps the run and stages current)."""
    fid = uuid4()
    definition_hash = "0" * 64
    await conn.execute(
        _FIRST_RECORDED if records else _FIRST,
        uuid4(),
        fid,
        _payload(
            inputs={},
            event_type="flowinitialized",
            step_count=3,
            definition_hash=definition_hash,
            definition_name="bench-records",
        ),
        *((_payload(definition_hash=definition_hash, steps=3),) if records else ()),
    )
    await conn.execute(
        _START_RECORDED if records else _START,
        uuid4(),
        fid,
        _payload(
            attempt=1, step_id="a", event_type="stepstarted", step_index=0, lease_until="2026-11-28T00:00:00Z"
        ),
    )
    for index, step in enumerate(_STEPS):
        version = 3 + 2 * index
        artifact = _payload(flow=str(fid), step=step)
        artifact_hash = hashlib.sha256(artifact.encode()).hexdigest()
        fingerprint = hashlib.sha256(artifact_hash.encode()).hexdigest()
        finished = _payload(
            outputs=[artifact_hash],
            step_id=step,
            event_type="stepfinished",
            step_index=index,
            fingerprint=fingerprint,
        )
        last = index == len(_STEPS) - 1
        following = (
            _payload(event_type="flowcompleted", flow_fingerprint=fingerprint)
            if last
            else _payload(
                attempt=1,
                step_id=_STEPS[index + 1],
                event_type="stepstarted",
                step_index=index + 1,
                lease_until="2026-11-28T00:00:00Z",
            )
        )
        args: list[Any] = [
            uuid4(),
            uuid4(),
            fid,
            "flowcompleted" if last else "stepstarted",
            version,
            finished,
            following,
            artifact_hash,
            artifact,
        ]
        if records:
            output = _payload(artifacts=[artifact_hash], fingerprint=fingerprint)
            args += [output, output if last else None, step, None if last else _STEPS[index + 1]]
        await conn.execute(_FINISH_RECORDED if records else _FINISH, *args)
    return fid
