"""Bad input, on both backends: a clear exception from the package's hierarchy, and nothing written.

"Nothing written" is checked through the store (``list``, ``flow_version``, ``list_errors``,
``get_artifacts``) and, on PostgreSQL, by counting the rows of all three tables with a raw connection.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from pydantic import ValidationError

from chem_persistence_async import (
    Artifact,
    ArtifactHashMismatchError,
    ChemPersistError,
    ConcurrencyConflict,
    CorruptEventError,
    Database,
    DatabaseClosedError,
    ErrorClass,
    FlowInitialized,
    InvalidEventError,
    InvalidExpectedVersionError,
    InvalidFlowIdError,
    InvalidInputError,
    MissingArtifactError,
    PayloadTooLargeError,
    PgEventStore,
    RetryScheduled,
    StepErrorInfo,
    StepFailed,
    StepFinished,
    StepSignal,
    StepStarted,
    UnlistedArtifactError,
    UnstorableValueError,
    ValueOutOfRangeError,
    artifact_hash,
    content_hash,
)
from chem_persistence_async.domain.ids import MAX_BATCH_SIZE
from tests.support.harness import Harness

FP = content_hash("fingerprint")

Counts = Callable[[], Awaitable[tuple[int, int, int]]]


@pytest.fixture
def counts(harness: Harness, store: Any) -> Counts:
    """``(events, artifacts, error rows)`` held by the whole backend."""
    return lambda: harness.counts(store)


def _started(index: int = 0) -> StepStarted:
    return StepStarted(step_index=index, step_id="s", attempt=1)


def _finished(*artifacts: Artifact, outputs: tuple[str, ...] | None = None) -> StepFinished:
    hashes = tuple(a.hash for a in artifacts) if outputs is None else outputs
    return StepFinished(step_index=0, step_id="s", outputs=hashes, fingerprint=FP)


def _failed(message: str = "boom", details: dict[str, Any] | None = None) -> StepFailed:
    return StepFailed(
        step_index=0,
        step_id="s",
        attempt=1,
        error=StepErrorInfo(error_class=ErrorClass.RUNTIME, message=message, details=details),
        retry_count=0,
        max_retries=3,
        fingerprint=FP,
    )


async def _assert_nothing_written(
    store: Any, counts: Counts, flow: uuid.UUID, before: Any = (0, 0, 0)
) -> None:
    assert await store.list(flow) == []
    assert await store.flow_version(flow) == 0
    assert await store.list_errors(flow) == []
    assert await counts() == before


# --- flow ids, kinds, expected versions ------------------------------------------------------------


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "", "1234", 1234, None, b"0" * 16, 1.5])
async def test_flow_id_that_is_not_a_uuid(store: Any, counts: Counts, bad_id: Any) -> None:
    with pytest.raises(InvalidFlowIdError, match="flow id must be a UUID"):
        await store.append_kind(bad_id, _started())
    with pytest.raises(InvalidFlowIdError):
        await store.append_many(bad_id, [_started()])
    with pytest.raises(InvalidFlowIdError):
        await store.list(bad_id)
    with pytest.raises(InvalidFlowIdError):
        await store.flow_version(bad_id)
    with pytest.raises(InvalidFlowIdError):
        await store.list_errors(bad_id)
    assert await counts() == (0, 0, 0)


async def test_a_uuid_string_is_accepted_as_a_flow_id(store: Any) -> None:
    flow = uuid.uuid4()
    event = await store.append_kind(str(flow), _started())
    assert event.flow_id == flow
    assert [e.event_id for e in await store.list(str(flow).upper())] == [event.event_id]


class NotAKind:
    event_type = "stepstarted"


@pytest.mark.parametrize(
    "bad_kind",
    [
        {"event_type": "stepstarted", "step_index": 0, "step_id": "s", "attempt": 1},
        '{"event_type": "stepstarted"}',
        None,
        42,
        NotAKind(),
        StepErrorInfo(error_class=ErrorClass.RUNTIME, message="a model, but not an event"),
    ],
    ids=["dict", "json-text", "none", "int", "lookalike-object", "other-pydantic-model"],
)
async def test_object_that_is_not_a_flow_event_kind(store: Any, counts: Counts, bad_kind: Any) -> None:
    flow = uuid.uuid4()
    with pytest.raises(InvalidEventError, match="expected a FlowEventKind") as info:
        await store.append_kind(flow, bad_kind)
    assert isinstance(info.value, TypeError | ChemPersistError)
    with pytest.raises(InvalidEventError):
        await store.append_many(flow, [_started(), bad_kind])
    await _assert_nothing_written(store, counts, flow)


async def test_kinds_that_are_not_a_sequence(store: Any, counts: Counts) -> None:
    flow = uuid.uuid4()
    with pytest.raises(InvalidEventError, match="sequence"):
        await store.append_many(flow, _started())
    with pytest.raises(InvalidEventError, match="sequence"):
        await store.append_many(flow, "stepstarted")
    await _assert_nothing_written(store, counts, flow)


async def test_malformed_kind_built_without_validation(store: Any, counts: Counts) -> None:
    flow = uuid.uuid4()
    malformed = StepStarted.model_construct(step_index=-1, step_id="", attempt=0)
    with pytest.raises(InvalidEventError):
        await store.append_kind(flow, malformed)
    await _assert_nothing_written(store, counts, flow)


@pytest.mark.parametrize("bad_version", [-1, -100, True, False, 1.0, "0", "3"])
async def test_negative_bool_or_non_int_expected_version(
    store: Any, counts: Counts, bad_version: Any
) -> None:
    flow = uuid.uuid4()
    with pytest.raises(InvalidExpectedVersionError, match="expected_version must be None or an int >= 0"):
        await store.append_kind(flow, _started(), expected_version=bad_version)
    with pytest.raises(InvalidExpectedVersionError):
        await store.append_many(flow, [_started()], expected_version=bad_version)
    await _assert_nothing_written(store, counts, flow)


# --- payloads PostgreSQL cannot store, and payloads too large ----------------------------------


@pytest.mark.parametrize(
    "make_kind",
    [
        lambda: StepSignal(step_index=0, step_id="s", signal="x", data={"text": "a\u0000b"}),
        lambda: StepSignal(step_index=0, step_id="s", signal="x", data={"a\u0000": 1}),
        lambda: StepSignal(step_index=0, step_id="s", signal="x", data={"v": float("nan")}),
        lambda: StepSignal(step_index=0, step_id="s", signal="x", data=[1.0, float("inf")]),
        lambda: StepSignal(step_index=0, step_id="s", signal="x", data={"v": float("-inf")}),
        lambda: StepSignal(step_index=0, step_id="s", signal="x", data="lone \ud800 surrogate"),
        lambda: StepStarted(step_index=0, step_id="s\u0000", attempt=1),
        lambda: _failed(message="nul \u0000 in a message"),
        lambda: _failed(details={"stack_trace": "x", "params": {"p": float("nan")}}),
    ],
    ids=[
        "nul-value",
        "nul-key",
        "nan",
        "inf",
        "-inf",
        "surrogate",
        "nul-step-id",
        "nul-message",
        "nan-details",
    ],
)
async def test_payload_postgres_cannot_store(store: Any, counts: Counts, make_kind: Any) -> None:
    flow = uuid.uuid4()
    kind = make_kind()
    with pytest.raises(UnstorableValueError):
        await store.append_kind(flow, kind)
    with pytest.raises(UnstorableValueError):
        await store.append_many(flow, [_started(), kind])
    await _assert_nothing_written(store, counts, flow)


async def test_artifact_payload_postgres_cannot_store(store: Any, counts: Counts) -> None:
    flow = uuid.uuid4()
    bad = Artifact(hash="0" * 64, kind="numbers", payload={"v": float("nan")})
    with pytest.raises(UnstorableValueError):
        await store.append_kind(flow, _finished(bad), artifacts=[bad])
    await _assert_nothing_written(store, counts, flow)


@pytest.fixture
def small_store(harness: Harness) -> Any:
    """A store of this backend with a 2 KiB payload limit."""
    return harness.event_store(max_payload_bytes=2048)


async def test_payload_over_the_size_limit(small_store: Any, harness: Harness) -> None:
    small_counts: Counts = lambda: harness.counts(small_store)  # noqa: E731
    flow = uuid.uuid4()
    big = StepSignal(step_index=0, step_id="s", signal="x", data={"blob": "x" * 4000})
    with pytest.raises(PayloadTooLargeError, match=r"is \d+ bytes; the limit is 2048"):
        await small_store.append_kind(flow, big)
    with pytest.raises(PayloadTooLargeError):
        await small_store.append_many(flow, [_started(), big])
    big_artifact = Artifact.of("blob", {"data": "y" * 4000})
    with pytest.raises(PayloadTooLargeError, match="artifact"):
        await small_store.append_kind(flow, _finished(big_artifact), artifacts=[big_artifact])
    await _assert_nothing_written(small_store, small_counts, flow)
    assert await small_store.get_artifacts([big_artifact.hash]) == {}
    # Just under the limit is fine.
    ok = StepSignal(step_index=0, step_id="s", signal="x", data={"blob": "x" * 1500})
    assert (await small_store.append_kind(flow, ok)).flow_version == 1


# --- artifacts -----------------------------------------------------------------------------------


async def test_artifact_whose_hash_does_not_match_its_content(store: Any, counts: Counts) -> None:
    flow = uuid.uuid4()
    forged = Artifact(hash=artifact_hash("numbers", {"values": [1]}), kind="numbers", payload={"values": [2]})
    with pytest.raises(ArtifactHashMismatchError, match="does not match its content"):
        await store.append_kind(flow, _finished(forged), artifacts=[forged])
    relabelled = Artifact(
        hash=artifact_hash("numbers", {"values": [1]}), kind="other", payload={"values": [1]}
    )
    with pytest.raises(ArtifactHashMismatchError):
        await store.append_many(flow, [_started(), _finished(relabelled)], artifacts=[relabelled])
    not_hex = Artifact(hash="not-a-hash", kind="numbers", payload={})
    with pytest.raises(ArtifactHashMismatchError):
        await store.append_kind(flow, _finished(outputs=()), artifacts=[not_hex])
    await _assert_nothing_written(store, counts, flow)
    assert await store.get_artifacts([forged.hash]) == {}


async def test_an_artifact_is_stored_as_artifact_of_made_it(store: Any) -> None:
    """``Artifact.of`` hands the store the canonical bytes its hash is of: a payload changed in
    place afterwards is neither stored nor refused (the artifact is its content at ``of``), while a
    copy with other content is checked as any hand-built artifact and refused."""
    flow = uuid.uuid4()
    artifact = Artifact.of("numbers", {"values": [1, 2]})
    artifact.payload["values"].append(3)  # type: ignore[index,union-attr]
    copied = artifact.model_copy()
    with pytest.raises(ArtifactHashMismatchError):
        await store.append_kind(flow, _finished(copied), artifacts=[copied])
    await store.append_kind(flow, _finished(artifact), artifacts=[artifact])
    stored = (await store.get_artifacts([artifact.hash]))[artifact.hash]
    assert stored.payload == {"values": [1, 2]}
    assert stored.content_matches()


async def test_artifact_the_event_does_not_list(store: Any, counts: Counts) -> None:
    flow = uuid.uuid4()
    listed, unlisted = Artifact.of("numbers", {"n": 1}), Artifact.of("numbers", {"n": 2})
    with pytest.raises(UnlistedArtifactError, match="not listed in the outputs"):
        await store.append_kind(flow, _finished(listed), artifacts=[listed, unlisted])
    with pytest.raises(UnlistedArtifactError):
        await store.append_kind(flow, _started(), artifacts=[listed])  # not a StepFinished at all
    with pytest.raises(InvalidInputError, match="Artifact objects"):
        await store.append_kind(flow, _finished(listed), artifacts=[{"hash": listed.hash}])
    await _assert_nothing_written(store, counts, flow)
    assert await store.get_artifacts([listed.hash, unlisted.hash]) == {}


async def test_outputs_hash_with_no_artifact_passed_and_none_stored(store: Any, counts: Counts) -> None:
    flow = uuid.uuid4()
    absent = Artifact.of("numbers", {"never": "stored"})
    with pytest.raises(MissingArtifactError, match="no artifact passed and none stored"):
        await store.append_kind(flow, _finished(absent))
    with pytest.raises(MissingArtifactError):
        await store.append_many(flow, [_started(), _finished(absent)])
    await _assert_nothing_written(store, counts, flow)

    # Once stored by an earlier event, the same hash may be listed without passing it again.
    first = await store.append_kind(flow, _finished(absent), artifacts=[absent])
    again = await store.append_kind(flow, _finished(absent))
    assert (first.flow_version, again.flow_version) == (1, 2)
    assert await counts() == (2, 1, 0)


# --- a whole batch is refused when any part of it is bad ------------------------------------------


async def test_batch_with_an_invalid_kind_last_writes_nothing(store: Any, counts: Counts) -> None:
    flow = uuid.uuid4()
    art = Artifact.of("numbers", {"batch": 1})
    good = [_started(), _finished(art), _failed()]
    with pytest.raises(InvalidEventError):
        await store.append_many(flow, [*good, {"event_type": "flowcompleted"}], artifacts=[art])
    with pytest.raises(UnstorableValueError):
        await store.append_many(
            flow,
            [*good, StepSignal(step_index=0, step_id="s", signal="x", data=float("nan"))],
            artifacts=[art],
        )
    await _assert_nothing_written(store, counts, flow)
    assert await store.get_artifacts([art.hash]) == {}
    written = await store.append_many(flow, good, artifacts=[art])  # the same batch, minus the bad kind
    assert [e.flow_version for e in written] == [1, 2, 3]
    assert await counts() == (3, 1, 1)


async def test_reused_event_ids_with_other_events_are_refused(store: Any, counts: Counts) -> None:
    flow = uuid.uuid4()
    event_id = uuid.uuid4()
    await store.append_kind(flow, _started(), event_id=event_id)
    with pytest.raises(InvalidInputError, match="event ids must not be reused"):
        await store.append_kind(uuid.uuid4(), _started(), event_id=event_id)
    with pytest.raises(InvalidInputError, match="distinct"):
        await store.append_many(flow, [_started(), _started()], event_ids=[event_id, event_id])
    assert await counts() == (1, 0, 0)


# --- PostgreSQL only: a closed Database, a row that no longer decodes ------------------------------


async def test_closed_database(harness: Harness, db_url: str) -> None:
    harness.require("database")
    db = await Database.open(db_url, min_connections=1, max_connections=2)
    store = PgEventStore(db)
    flow = uuid.uuid4()
    await store.append_kind(flow, _started())
    await db.close()
    await db.close()  # closing twice is harmless
    assert db.closed
    calls = [
        lambda: store.append_kind(flow, _started(1)),
        lambda: store.append_many(flow, [_started(1)]),
        lambda: store.list(flow),
        lambda: store.flow_version(flow),
        lambda: store.list_errors(flow),
        lambda: store.get_artifacts(["0" * 64]),
        lambda: store.count_errors_by_flow(flow),
        lambda: db.run(lambda c: c.fetchval("SELECT 1")),
        lambda: db.migrate(),
    ]
    for call in calls:
        with pytest.raises(DatabaseClosedError, match=r"Database postgresql://\S+ is closed"):
            await call()
    with pytest.raises(DatabaseClosedError, match="is closed"):
        async with db.acquire():
            pass
    with pytest.raises(DatabaseClosedError):
        db.pool  # noqa: B018
    check = await asyncpg.connect(db_url)
    try:
        assert await check.fetchval("SELECT count(*) FROM event_log") == 1
    finally:
        await check.close()


async def test_row_that_no_longer_decodes_names_its_seq(
    harness: Harness, store: Any, counts: Counts, request: pytest.FixtureRequest
) -> None:
    harness.require("sql")  # (a row written behind the library's back)
    conn: asyncpg.Connection = request.getfixturevalue("conn")
    flow = uuid.uuid4()
    good = await store.append_kind(flow, _started())
    # Passes the table's CHECKs (an object whose event_type matches) but not the model (step_index < 0).
    payload = {"event_type": "stepstarted", "step_index": -1, "step_id": "s", "attempt": 1}
    bad_seq = await conn.fetchval(
        "INSERT INTO event_log (event_id, flow_id, flow_version, event_type, payload)"
        " VALUES ($1, $2, 2, 'stepstarted', $3::jsonb) RETURNING seq",
        uuid.uuid4(),
        flow,
        json.dumps(payload),
    )
    with pytest.raises(CorruptEventError, match=rf"event_log row seq={bad_seq} does not decode") as info:
        await store.list(flow)
    assert info.value.seq == bad_seq != good.seq
    with pytest.raises(CorruptEventError) as streamed:
        async for _ in store.stream(flow):
            pass
    assert streamed.value.seq == bad_seq
    # A payload with a field the model does not know fails the same way.
    extra = {"event_type": "stepstarted", "step_index": 0, "step_id": "s", "attempt": 1, "surprise": True}
    other_flow = uuid.uuid4()
    extra_seq = await conn.fetchval(
        "INSERT INTO event_log (event_id, flow_id, flow_version, event_type, payload)"
        " VALUES ($1, $2, 1, 'stepstarted', $3::jsonb) RETURNING seq",
        uuid.uuid4(),
        other_flow,
        json.dumps(extra),
    )
    with pytest.raises(CorruptEventError, match=f"seq={extra_seq}"):
        await store.list(other_flow)
    assert await counts() == (3, 0, 0)


# --- integers PostgreSQL's INT cannot hold (SPEC 11): the same typed error on both backends --------


async def test_expected_version_beyond_postgres_int(store: Any, counts: Counts) -> None:
    flow = uuid.uuid4()
    cases = [(2**31, 1), (2**31 - 1, 1), (2**31 - 2, 2), (2**63, 1), (10**30, 3)]
    for version, events in cases:  # the last version written would not fit the INT column
        kinds = [_started(i) for i in range(events)]
        with pytest.raises(ValueOutOfRangeError, match="beyond the INT range of flow versions") as info:
            await store.append_many(flow, kinds, expected_version=version)
        assert isinstance(info.value, InvalidInputError)
        if events == 1:
            with pytest.raises(ValueOutOfRangeError):
                await store.append_kind(flow, kinds[0], expected_version=version)
    await _assert_nothing_written(store, counts, flow)


async def test_expected_version_at_the_top_of_the_range_is_an_ordinary_conflict(
    store: Any, counts: Counts
) -> None:
    flow = uuid.uuid4()
    for kinds in ([_started()], [_started(), _failed()]):
        with pytest.raises(ConcurrencyConflict) as info:
            await store.append_many(flow, kinds, expected_version=2**31 - 1 - len(kinds))
        assert (info.value.expected_version, info.value.actual_version) == (2**31 - 1 - len(kinds), 0)
    await _assert_nothing_written(store, counts, flow)


_H = "a" * 64
OUT_OF_RANGE_KINDS = [
    ("StepStarted.attempt", lambda v: StepStarted.model_construct(step_index=0, step_id="s", attempt=v)),
    ("StepStarted.step_index", lambda v: StepStarted.model_construct(step_index=v, step_id="s", attempt=1)),
    ("StepFailed.attempt", lambda v: _failed().model_copy(update={"attempt": v})),
    ("StepFailed.retry_count", lambda v: _failed().model_copy(update={"retry_count": v})),
    ("StepFailed.max_retries", lambda v: _failed().model_copy(update={"max_retries": v})),
    ("StepFailed.step_index", lambda v: _failed().model_copy(update={"step_index": v})),
    (
        "StepFinished.step_index",
        lambda v: StepFinished.model_construct(step_index=v, step_id="s", outputs=(), fingerprint=_H),
    ),
    (
        "StepSignal.step_index",
        lambda v: StepSignal.model_construct(step_index=v, step_id="s", signal="x", data=None),
    ),
    (
        "RetryScheduled.retry_index",
        lambda v: RetryScheduled.model_construct(
            step_index=0, step_id="s", retry_index=v, reason="r", not_before=None
        ),
    ),
    (
        "RetryScheduled.step_index",
        lambda v: RetryScheduled.model_construct(
            step_index=v, step_id="s", retry_index=1, reason="r", not_before=None
        ),
    ),
    (
        "FlowInitialized.step_count",
        lambda v: FlowInitialized.model_construct(definition_name="d", definition_hash=_H, step_count=v),
    ),
]


@pytest.mark.parametrize(("field", "build"), OUT_OF_RANGE_KINDS, ids=[f for f, _ in OUT_OF_RANGE_KINDS])
async def test_event_integer_fields_beyond_postgres_int(
    store: Any, counts: Counts, field: str, build: Any
) -> None:
    """Built with validation, the model refuses them (``ValidationError``); built without, every store
    refuses them as a malformed event, before anything is written (``ValueOutOfRangeError``'s rule)."""
    flow = uuid.uuid4()
    for value in (2**31, 2**63, -(2**31) - 1):
        kind = build(value)
        with pytest.raises(InvalidEventError, match="malformed"):
            await store.append_kind(flow, kind)
        with pytest.raises(InvalidEventError, match="malformed"):
            await store.append_many(flow, [_started(), kind])
        with pytest.raises(ValidationError):
            type(kind)(**{**kind.model_dump(), field.split(".")[1]: value})
    await _assert_nothing_written(store, counts, flow)
    accepted = await store.append_kind(flow, build(2**31 - 1))  # the top of the range is fine
    assert (await store.list(flow))[0].kind == accepted.kind


# --- query arguments: text PostgreSQL cannot compare, and wrong types ------------------------------


async def test_text_query_argument_postgres_cannot_hold(store: Any, counts: Counts) -> None:
    flow = uuid.uuid4()
    await store.append_kind(flow, _failed())
    before = await counts()
    for bad in ("a\x00", "\x00", "\ud800", "x\udfffy"):
        with pytest.raises(UnstorableValueError, match="step_id: string") as info:
            await store.list_errors(flow, bad)
        assert isinstance(info.value, InvalidInputError)
        with pytest.raises(UnstorableValueError, match="step_id"):
            await store.list_errors(flow, step_id=bad)
        with pytest.raises(UnstorableValueError, match="step_id"):
            await store.get_error_timeline(flow, bad)
        with pytest.raises(UnstorableValueError, match="hash: string"):
            await store.get_artifacts(["0" * 64, "0" * 63 + bad])
        with pytest.raises(UnstorableValueError, match="hash"):
            await store.get_artifacts(h for h in [bad])
    assert await counts() == before
    assert len(await store.list_errors(flow, "s")) == 1


async def test_step_id_query_argument_of_the_wrong_type(store: Any) -> None:
    flow = uuid.uuid4()
    await store.append_kind(flow, _failed())
    for bad in (5, 1.5, b"s", ["s"], uuid.uuid4()):
        with pytest.raises(InvalidInputError, match="step_id must be None or a str"):
            await store.list_errors(flow, bad)
        with pytest.raises(InvalidInputError, match="step_id must be None or a str"):
            await store.get_error_timeline(flow, bad)


async def test_hashes_argument_of_the_wrong_type(store: Any) -> None:
    for bad in ("a" * 64, b"a" * 64, None, 5, [5], [b"a" * 64], [None], [["a" * 64]]):
        with pytest.raises(InvalidInputError, match="hashes must be"):
            await store.get_artifacts(bad)


async def test_hashes_that_are_text_but_no_hash_find_nothing_alike(store: Any) -> None:
    art = Artifact.of("numbers", {"n": 1})
    await store.append_kind(uuid.uuid4(), _finished(art), artifacts=[art])
    assert await store.get_artifacts(["", "not a hash", "é" * 64, art.hash.upper()]) == {}
    assert list(await store.get_artifacts([art.hash, "x", art.hash])) == [art.hash]
    assert await store.get_artifacts([]) == {}


async def test_stream_batch_size_of_the_wrong_type_or_range(store: Any) -> None:
    flow = uuid.uuid4()
    await store.append_kind(flow, _started())
    for bad in ("10", 1.5, 10.0, True, False, None, 0, -1, MAX_BATCH_SIZE + 1, 2**63):
        with pytest.raises(InvalidInputError, match=f"batch_size must be an int from 1 to {MAX_BATCH_SIZE}"):
            async for _ in store.stream(flow, batch_size=bad):
                pass
    assert [e.flow_version async for e in store.stream(flow, batch_size=MAX_BATCH_SIZE)] == [1]


async def test_artifacts_argument_that_is_not_iterable(store: Any, counts: Counts) -> None:
    flow = uuid.uuid4()
    for bad in (None, 5, object()):
        with pytest.raises(InvalidInputError, match="artifacts must be an iterable of Artifact"):
            await store.append_kind(flow, _started(), artifacts=bad)
        with pytest.raises(InvalidInputError, match="artifacts must be an iterable of Artifact"):
            await store.append_many(flow, [_started()], artifacts=bad)
    await _assert_nothing_written(store, counts, flow)


async def test_event_ids_that_are_not_a_sequence_of_uuids(store: Any, counts: Counts) -> None:
    flow = uuid.uuid4()
    for bad in ((uuid.uuid4() for _ in range(1)), 5, str(uuid.uuid4()), [str(uuid.uuid4())]):
        with pytest.raises(InvalidInputError, match="event_ids must be one UUID per kind"):
            await store.append_many(flow, [_started()], event_ids=bad)
    await _assert_nothing_written(store, counts, flow)


async def test_a_batch_that_reuses_one_stored_event_id_with_a_new_one_is_refused(
    store: Any, counts: Counts
) -> None:
    """Found by the lockstep machine: PostgreSQL called this a concurrency conflict, memory refused
    it as a reused id. One stored id and one fresh one is a reused id on both."""
    flow = uuid.uuid4()
    stored = uuid.uuid4()
    await store.append_kind(flow, _started(), event_id=stored)
    before = await counts()
    with pytest.raises(InvalidInputError, match="event ids must not be reused"):
        await store.append_many(flow, [_started(), _started()], event_ids=[stored, uuid.uuid4()])
    assert await counts() == before
