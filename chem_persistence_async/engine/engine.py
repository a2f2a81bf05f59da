"""``FlowEngine``: decides the next step by replay, runs one attempt, commits its outcome.

Deciding (replay) and running (one attempt of one step) are separate, and every append passes
the version the decision was made on as ``expected_version``: two engines on one flow can both
run a step, but only one can commit its outcome, so nothing is ever written twice.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import anyio

from chem_persistence_async.domain.artifacts import Artifact
from chem_persistence_async.domain.canonical import content_hash, normalize_json
from chem_persistence_async.domain.events import (
    FlowCompleted,
    FlowEvent,
    FlowInitialized,
    RetryScheduled,
    StepFailed,
    StepFinished,
    StepSignal,
    StepStarted,
)
from chem_persistence_async.domain.failures import StepErrorInfo
from chem_persistence_async.domain.fingerprints import (
    failure_fingerprint,
    flow_fingerprint,
    step_fingerprint,
)
from chem_persistence_async.domain.flow import FlowDefinition, FlowInstance, StepSlot
from chem_persistence_async.domain.ids import to_flow_id
from chem_persistence_async.engine.repository import FlowLoader
from chem_persistence_async.engine.retry_policy import RetryPolicy
from chem_persistence_async.engine.step import (
    Step,
    StepContext,
    StepOutput,
    StepValidationError,
    classify_error,
)
from chem_persistence_async.errors import (
    ConcurrencyConflict,
    FlowNotFoundError,
    MissingArtifactError,
    UnstorableValueError,
)
from chem_persistence_async.ports.event_store import AsyncEventStore
from chem_persistence_async.replay import apply_events

logger = logging.getLogger("chem_persistence_async.engine")

_MAX_MESSAGE = 10_000


class FlowEngine:
    """Runs flows of one ``FlowDefinition`` against a store, through a repository."""

    def __init__(
        self,
        store: AsyncEventStore,
        repository: FlowLoader,
        definition: FlowDefinition,
        *,
        retry_policy: RetryPolicy | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        for step in definition.steps:
            if not isinstance(step, Step):
                raise TypeError(f"step {step.id!r} has no async run(ctx) method")
        self._store = store
        self._repository = repository
        self._definition = definition
        self._policy = retry_policy or RetryPolicy()
        self._clock = clock or (lambda: datetime.now(UTC))
        self._artifact_cache: dict[str, Artifact] = {}

    @property
    def definition(self) -> FlowDefinition:
        return self._definition

    @property
    def retry_policy(self) -> RetryPolicy:
        return self._policy

    # --- the public API ---------------------------------------------------------------------

    async def start(self, *, flow_id: UUID | str | None = None) -> UUID:
        """Append the ``FlowInitialized`` of a new flow and return its id."""
        fid = uuid4() if flow_id is None else to_flow_id(flow_id)
        definition = self._definition
        await self._store.append_kind(
            fid,
            FlowInitialized(
                definition_name=definition.name,
                definition_hash=definition.hash,
                step_count=len(definition.steps),
            ),
            expected_version=0,
        )
        return fid

    async def load(self, flow_id: UUID | str) -> FlowInstance:
        return await self._repository.load(self._store, flow_id, self._definition)

    async def run_next(self, flow_id: UUID | str) -> FlowInstance:
        """One attempt of the next step (or the ``FlowCompleted``); returns the flow afterwards.

        Raises ``ConcurrencyConflict`` if another engine advanced the flow meanwhile.
        """
        return await self._advance(await self._load_existing(flow_id))

    async def run_to_end(self, flow_id: UUID | str | None = None) -> UUID:
        """Run a flow until it completes or a step fails for good; start one if no id is given.

        Resumes a flow from wherever its events leave it, whoever wrote them; a conflict with
        another engine on the same flow is resolved by reloading and going on.
        """
        fid = await self.start() if flow_id is None else to_flow_id(flow_id)
        instance = await self._load_existing(fid)
        while not (instance.completed or instance.failed):
            try:
                instance = await self._advance(instance)
            except ConcurrencyConflict:
                logger.info("flow %s advanced elsewhere; reloading", fid)
                instance = await self.load(fid)
        return fid

    async def event_codes(self, flow_id: UUID | str) -> list[str]:
        return [event.code for event in await self._store.list(flow_id)]

    async def event_variants(self, flow_id: UUID | str) -> list[str]:
        return list(dict.fromkeys(await self.event_codes(flow_id)))

    async def flow_fingerprint(self, flow_id: UUID | str) -> str | None:
        return (await self.load(flow_id)).fingerprint

    # --- one step ---------------------------------------------------------------------------

    async def _load_existing(self, flow_id: UUID | str) -> FlowInstance:
        instance = await self.load(flow_id)
        if instance.version == 0:
            raise FlowNotFoundError(f"flow {flow_id} has no events")
        return instance

    async def _advance(self, instance: FlowInstance) -> FlowInstance:
        if instance.completed or instance.failed:
            return instance
        definition = self._definition
        if instance.cursor == len(definition.steps):
            fingerprints = [slot.fingerprint or "" for slot in instance.steps]
            completed = await self._store.append_kind(
                instance.flow_id,
                FlowCompleted(flow_fingerprint=flow_fingerprint(definition.hash, fingerprints)),
                expected_version=instance.version,
            )
            return apply_events(instance, [completed], definition)
        return await self._attempt(instance, instance.cursor)

    async def _attempt(self, instance: FlowInstance, index: int) -> FlowInstance:
        flow_id = instance.flow_id
        slot = instance.steps[index]
        step: Any = self._definition.steps[index]
        if slot.not_before is not None:
            wait = (slot.not_before - self._clock()).total_seconds()
            if wait > 0:
                await anyio.sleep(wait)

        attempt = slot.attempts + 1
        started = await self._store.append_kind(
            flow_id,
            StepStarted(step_index=index, step_id=slot.step_id, attempt=attempt),
            expected_version=instance.version,
        )
        previous = instance.steps[index - 1].fingerprint if index else self._definition.hash
        assert previous is not None
        params = self._definition.params_of(index)
        inputs = await self._inputs(instance.steps[index - 1] if index else None)
        ctx = StepContext(
            flow_id=flow_id,
            step_index=index,
            step_id=slot.step_id,
            attempt=attempt,
            inputs=inputs,
            params=params,
        )
        try:
            output = _check_output(await step.run(ctx))
        except Exception as exc:
            appended = await self._record_failure(ctx, slot, previous, exc, started.flow_version)
        else:
            hashes = tuple(artifact.hash for artifact in output.artifacts)
            kinds: list[Any] = []
            if output.signal is not None:
                kinds.append(
                    StepSignal(
                        step_index=index, step_id=slot.step_id, signal=output.signal, data=output.signal_data
                    )
                )
            kinds.append(
                StepFinished(
                    step_index=index,
                    step_id=slot.step_id,
                    outputs=hashes,
                    fingerprint=step_fingerprint(previous, slot.step_id, hashes),
                )
            )
            appended = await self._store.append_many(
                flow_id, kinds, artifacts=output.artifacts, expected_version=started.flow_version
            )
            for artifact in output.artifacts:
                self._artifact_cache[artifact.hash] = artifact
        # The appends succeeded at the versions this instance was decided on, so these events are
        # exactly what the log now holds after it: apply them rather than read the flow back.
        return apply_events(instance, [started, *appended], self._definition)

    async def _record_failure(
        self, ctx: StepContext, slot: StepSlot, previous: str, exc: Exception, version: int
    ) -> list[FlowEvent]:
        """Append the ``StepFailed`` (and its ``RetryScheduled`` when the policy retries) in one go."""
        index, attempt, inputs, params = ctx.step_index, ctx.attempt, ctx.inputs, ctx.params
        error_class = classify_error(exc)
        message = (str(exc) or type(exc).__name__)[:_MAX_MESSAGE]
        details: dict[str, Any] = {
            "stack_trace": "".join(traceback.format_exception(exc))[-_MAX_MESSAGE:],
            "input_hash": content_hash([artifact.hash for artifact in inputs]),
            "params": _jsonable(params),
            "exception_type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        }
        extra = getattr(exc, "details", None)
        if isinstance(extra, Mapping) and extra:
            details["extra"] = _jsonable(extra)
        retry_count = slot.retry_count
        policy = self._policy
        failed = StepFailed(
            step_index=index,
            step_id=slot.step_id,
            attempt=attempt,
            error=StepErrorInfo(error_class=error_class, message=message, details=details),
            retry_count=retry_count,
            max_retries=policy.max_retries,
            fingerprint=failure_fingerprint(previous, slot.step_id, attempt, error_class.value),
        )
        kinds: list[Any] = [failed]
        if policy.should_retry(error_class, retry_count):
            kinds.append(
                RetryScheduled(
                    step_index=index,
                    step_id=slot.step_id,
                    retry_index=retry_count + 1,
                    reason=f"{error_class.value}: {message[:200]}",
                    not_before=self._clock() + policy.backoff(retry_count + 1),
                )
            )
        logger.info(
            "step %s attempt %d failed (%s)%s",
            slot.step_id,
            attempt,
            error_class.value,
            "; retry scheduled" if len(kinds) == 2 else "; no retry",
        )
        return await self._store.append_many(ctx.flow_id, kinds, expected_version=version)

    async def _inputs(self, previous: StepSlot | None) -> tuple[Artifact, ...]:
        if previous is None or not previous.outputs:
            return ()
        missing = [h for h in previous.outputs if h not in self._artifact_cache]
        if missing:
            self._artifact_cache.update(await self._store.get_artifacts(missing))
        absent = [h for h in previous.outputs if h not in self._artifact_cache]
        if absent:
            raise MissingArtifactError(
                f"inputs of the step after {previous.step_id!r} are not stored: "
                + ", ".join(h[:16] + "…" for h in absent)
            )
        return tuple(self._artifact_cache[h] for h in previous.outputs)


def _check_output(output: object) -> StepOutput:
    if not isinstance(output, StepOutput):
        raise StepValidationError(f"step returned {type(output).__name__}, not StepOutput")
    for artifact in output.artifacts:
        if not isinstance(artifact, Artifact):
            raise StepValidationError(f"step output holds {type(artifact).__name__}, not Artifact")
        if not artifact.content_matches():
            raise StepValidationError(f"artifact {artifact.hash[:16]}… does not match its content")
    if output.signal is None:
        return output
    try:
        data = normalize_json(output.signal_data)
    except UnstorableValueError as exc:
        raise StepValidationError(f"signal data cannot be stored: {exc}") from None
    return replace(output, signal_data=data)


def _jsonable(value: Mapping[str, Any]) -> Any:
    try:
        return normalize_json(dict(value))
    except UnstorableValueError:
        return {key: repr(item) for key, item in value.items()}
