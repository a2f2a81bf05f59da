"""The write path's shortcuts give what the plain way gives: ids, canonical bytes, stored rows."""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from chem_persistence_async import Artifact, Database, InvalidEventError, PgEventStore
from chem_persistence_async.codec.ids import new_event_ids
from chem_persistence_async.codec.prepare import StoreLimits, prepare_append
from chem_persistence_async.domain.canonical import canonical_json, dumps_normalized, normalize_json
from chem_persistence_async.domain.events import StepStarted
from chem_persistence_async.errors import UnstorableValueError
from tests.factories import artifact, failed, finished, started


@pytest.mark.parametrize("count", [1, 2, 1000])
def test_new_event_ids_are_distinct_random_version_4_uuids(count: int) -> None:
    ids = new_event_ids(count)
    assert len(set(ids)) == count
    for made in ids:
        again = uuid.UUID(str(made))
        assert made == again
        assert hash(made) == hash(again)
        assert made.version == 4
        assert made.variant == uuid.RFC_4122
        assert made.is_safe is uuid.SafeUUID.unknown


@pytest.mark.parametrize(
    "value",
    [
        {"run": "x", "i": 0, "values": list(range(10)), "nested": {"b": [None, True, 1.5]}},
        ["é", "\u2028", '"\\', ("t", ("u",))],
        {"big": 1e16, "bigger": [-1e300], "small": 1e-7},
        "plain",
        12345678901234567890,
        None,
    ],
)
def test_canonical_json_equals_the_normalised_encoding(value: Any) -> None:
    expected = json.dumps(
        normalize_json(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()
    assert canonical_json(value) == expected == dumps_normalized(normalize_json(value))


@pytest.mark.parametrize(
    "value", [{"a": "\x00"}, ["\ud800"], {1: "x"}, {"f": math.nan}, [math.inf], {"o": object()}]
)
def test_canonical_json_still_rejects_what_jsonb_cannot_store(value: Any) -> None:
    with pytest.raises(UnstorableValueError):
        canonical_json(value)


def test_one_malformed_event_is_named_as_in_a_batch() -> None:
    malformed = StepStarted.model_construct(step_index=-1, step_id="", attempt=0)
    for kinds in ([malformed], [started(0), malformed]):
        with pytest.raises(InvalidEventError, match=rf"event {len(kinds) - 1} is malformed"):
            prepare_append(
                uuid.uuid4(),
                kinds,
                artifacts=(),
                expected_version=None,
                event_ids=None,
                limits=StoreLimits(),
            )


async def test_append_many_stores_each_payload_with_its_type(db: Database, conn: asyncpg.Connection) -> None:
    """The lean many-event statement sends the payloads as one JSON array and reads each type from it."""
    store = PgEventStore(db, group_commit=False)
    flow = uuid.uuid4()
    kinds = [started(0), finished(0), started(1), finished(1)]
    await store.append_kind(flow, started(9))  # the store now knows the flow's version: the lean path
    written = await store.append_many(flow, kinds)
    rows = await conn.fetch(
        "SELECT event_type, payload::text, flow_version FROM event_log WHERE flow_id = $1 AND flow_version > 1"
        " ORDER BY flow_version",
        flow,
    )
    assert [row[0] for row in rows] == [k.event_type for k in kinds]
    assert [json.loads(row[1]) for row in rows] == [k.model_dump(mode="json") for k in kinds]
    assert [e.flow_version for e in written] == [row[2] for row in rows] == [2, 3, 4, 5]
    assert [e.kind for e in written] == kinds
    assert written == (await store.list(flow))[1:]


async def test_lean_single_appends_return_what_a_list_reads(db: Database) -> None:
    store = PgEventStore(db, group_commit=False)
    flow = uuid.uuid4()
    art = artifact(3)
    written = [
        await store.append_kind(flow, started(0)),
        await store.append_kind(flow, finished(0, outputs=(art.hash,)), artifacts=[art]),
        await store.append_kind(flow, finished(1, outputs=(art.hash,))),  # listed, stored already
        await store.append_kind(flow, failed(2), expected_version=3),
    ]
    assert written == await store.list(flow)
    assert all(e.ts <= datetime.now(UTC) for e in written)


async def test_a_wrong_cached_version_is_probed_and_leaves_no_gap(db: Database) -> None:
    """The cached version is a guess: the lean append probes for the base and, not finding it,
    falls back to the full statement instead of writing after a gap."""
    store = PgEventStore(db, group_commit=False)
    flow = uuid.uuid4()
    await store.append_kind(flow, started(0))
    store._versions[flow] = 5  # "version 5 seen": wrong
    event = await store.append_kind(flow, started(1))
    assert event.flow_version == 2
    assert [e.flow_version for e in await store.list(flow)] == [1, 2]


async def test_artifacts_sent_as_one_json_document_are_stored_as_given(db: Database) -> None:
    store = PgEventStore(db, group_commit=False)
    flow = uuid.uuid4()
    arts = [
        Artifact.of('kind "quoted" é\\', {"values": [1, 2.5, None], "text": "ü\n"}, metadata={"m": [True]}),
        Artifact.of("plain", [1, {"a": "b"}]),
        Artifact.of("scalar", "just a string", metadata="note"),
    ]
    await store.append_kind(flow, started(0))
    for first in (True, False):
        chosen = arts if first else [Artifact.of("again", {"first": first})]
        await store.append_kind(flow, finished(0, outputs=tuple(a.hash for a in chosen)), artifacts=chosen)
        assert await store.get_artifacts(a.hash for a in chosen) == {a.hash: a for a in chosen}
