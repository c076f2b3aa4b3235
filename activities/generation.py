"""GenerationActivities: every side effect GenerationWorkflow needs (spec 3.1, 6.4)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import activity

from activities.boundary import boundary
from activities.infrastructure import until_available
from ai.pipeline import SamplingConfig, generate_validated, output_kind
from ai.prompts import build_prompt
from ai.provider import AIProvider, CallContext
from db.context import load_context
from db.repository import JobRepository
from db.transitions import RunStatus
from domain.enums import EventType, ProcessingType, Scope, UnitStatus
from domain.errors import AppError, ErrorCode
from domain.text import clean_text
from domain.workflow_io import (
    Act,
    FinalizeRequest,
    FinalizeResult,
    GenerateUnitResult,
    JobRef,
    MarkProcessingResult,
    PersistUnitRequest,
    PersistUnitResult,
    PlanResult,
    UnitFailure,
    UnitRef,
    UnitRequest,
)
from settings import Settings

log = logging.getLogger("activities.generation")
T = TypeVar("T")
TARGET_CHECKPOINT = 50


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from _strings(getattr(value, f.name))
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)


async def heartbeating(work: Awaitable[T], every: float) -> T:
    """Await ``work`` while heartbeating every ``every`` seconds.

    A cancel arrives in a heartbeat response and cancels ``work`` (the provider call); the activity then
    waits until the call has really stopped, so no request outlives its activity. A call that ignores the
    cancel and still returns hands back its result: the workflow has not waited for it (TRY_CANCEL), and
    the claim check and the guarded writes refuse anything it would change (spec 6.8).
    """
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=every)
            if done:
                return task.result()
            activity.heartbeat()
    except asyncio.CancelledError:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            return await asyncio.shield(task)
        raise


class GenerationActivities:
    def __init__(self, repo: JobRepository, provider: AIProvider, settings: Settings) -> None:
        self.repo = repo
        self.provider = provider
        self.settings = settings

    async def _probe(self) -> RunStatus:
        info = activity.info()
        desc = await activity.client().get_workflow_handle(info.workflow_id or "").describe()
        extended = desc.raw_description.workflow_extended_info
        return RunStatus(
            current=desc.run_id == info.workflow_run_id, reset=extended.HasField("last_reset_time")
        )

    def _beat_every(self) -> float:
        """The heartbeat cadence: the worker's heartbeat throttle (spec 3.1 step 5), never slower than a
        third of the heartbeat timeout."""
        timeout = activity.info().heartbeat_timeout or timedelta(
            seconds=self.settings.heartbeat_timeout_seconds
        )
        return min(self.settings.heartbeat_throttle_seconds, timeout.total_seconds() / 3)

    async def _durably(self, step: Callable[[], Awaitable[T]], what: str) -> T:
        """A database or Temporal step of generate_unit: outages are waited out while heartbeating."""
        return await heartbeating(until_available(step, what), self._beat_every())

    @staticmethod
    def _run_id() -> str:
        return activity.info().workflow_run_id or ""

    async def record_attempt_failed(self, request: Any, attempt: int, code: ErrorCode) -> None:
        """ATTEMPT_FAILED (kind ACTIVITY_RETRY) for a failure Temporal will retry."""
        unit = getattr(request, "unit", None)
        try:
            await self.repo.record_event(
                request.process_id,
                EventType.ATTEMPT_FAILED,
                {
                    "unitId": str(unit.unit_id) if unit else None,
                    "activity": activity.info().activity_type,
                    "attempt": attempt,
                    "errorCode": code.value,
                    "kind": "ACTIVITY_RETRY",
                },
            )
        except Exception:  # the attempt's own failure is what matters; this is best effort
            log.warning("attempt event not written", extra={"event": "attempt_event_failed"})

    @activity.defn(name=Act.MARK_PROCESSING)
    @boundary
    async def mark_processing(self, ref: JobRef) -> MarkProcessingResult:
        s = self.settings
        deadline = s.goal_scope_deadline_seconds if ref.scope is Scope.GOAL else s.job_deadline_seconds
        return await until_available(
            lambda: self.repo.mark_processing(ref.process_id, self._run_id(), deadline, self._probe),
            "mark_processing",
        )

    @activity.defn(name=Act.PLAN_UNITS)
    @boundary
    async def plan_units(self, ref: JobRef) -> PlanResult:
        job, units = await until_available(lambda: self.repo.planned_units(ref.process_id), "plan_units")
        s = self.settings
        return PlanResult(
            units=[
                UnitRef(unit_id=u.unit_id, unit_type=u.unit_type, ordinal=u.ordinal)
                for u in units
                if u.status != UnitStatus.SUCCEEDED
            ],
            already_succeeded=[u.unit_id for u in units if u.status == UnitStatus.SUCCEEDED],
            concurrency=s.goal_scope_concurrency,
            generate_timeout_seconds=s.activity_timeout_seconds(str(job.type)),
            heartbeat_timeout_seconds=s.heartbeat_timeout_seconds,
        )

    @activity.defn(name=Act.GENERATE_UNIT)
    @boundary
    async def generate_unit(self, req: UnitRequest) -> GenerateUnitResult:
        info = activity.info()
        job, saved = await self._durably(
            lambda: self.repo.claim_unit(req.process_id, req.unit.unit_id, self._run_id(), self._probe),
            "claim_unit",
        )
        if saved:
            return GenerateUnitResult(already_saved=True)
        ctx, action_type = await self._durably(
            lambda: load_context(self.repo.engine, job, req.unit.unit_id, self.settings.prompt_timezone),
            "load_context",
        )
        for text in _strings(ctx):
            pattern = clean_text(text).pattern_id
            if pattern:
                log.warning(
                    "prompt injection in stored context",
                    extra={
                        "event": "prompt_injection_detected",
                        "processId": str(req.process_id),
                        "pattern": pattern,
                    },
                )
                raise AppError(ErrorCode.PROMPT_INJECTION_DETECTED)
        job_type = ProcessingType(job.type)
        call = CallContext(
            process_id=req.process_id,
            unit_id=req.unit.unit_id,
            type=job_type,
            attempt=info.attempt,
            retry_count=job.retry_count,
        )

        async def bad_output(generation: int, code: ErrorCode) -> None:
            payload = {
                "unitId": str(req.unit.unit_id),
                "activity": Act.GENERATE_UNIT,
                "attempt": info.attempt,
                "generation": generation,
                "errorCode": code.value,
                "kind": "REGENERATION",
            }
            await until_available(
                lambda: self.repo.record_event(req.process_id, EventType.ATTEMPT_FAILED, payload),
                "record_event",
            )

        s = self.settings
        sampling = SamplingConfig(
            temperature=s.ai_temperature,
            max_tokens=s.ai_max_tokens,
            top_p=s.ai_top_p,
            cost_per_1k_tokens_usd=s.cost_per_1k_tokens_usd,
            log_payloads=s.log_ai_payloads,
        )
        output = await heartbeating(
            generate_validated(
                self.provider,
                build_prompt(ctx),
                output_kind(job_type, action_type),
                call,
                sampling,
                bad_output,
            ),
            self._beat_every(),
        )
        if req.scope is Scope.TARGET:
            await self._durably(
                lambda: self.repo.record_progress(
                    req.process_id, TARGET_CHECKPOINT, EventType.PROGRESS, {"stage": "GENERATED"}
                ),
                "record_progress",
            )
        return GenerateUnitResult(output=output)

    @activity.defn(name=Act.PERSIST_UNIT)
    @boundary
    async def persist_unit(self, req: PersistUnitRequest) -> PersistUnitResult:
        return await until_available(
            lambda: self.repo.persist_unit(req, self._run_id(), self._probe), "persist_unit"
        )

    @activity.defn(name=Act.RECORD_UNIT_FAILURE)
    @boundary
    async def record_unit_failure(self, failure: UnitFailure) -> None:
        err = AppError(ErrorCode(failure.error_code), failure.details)
        await until_available(
            lambda: self.repo.record_unit_failure(
                failure.process_id, failure.unit.unit_id, err, self._run_id(), self._probe
            ),
            "record_unit_failure",
        )

    @activity.defn(name=Act.FINALIZE)
    @boundary
    async def finalize(self, req: FinalizeRequest) -> FinalizeResult:
        return await until_available(lambda: self.repo.finalize(req, self._run_id(), self._probe), "finalize")

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.mark_processing,
            self.plan_units,
            self.generate_unit,
            self.persist_unit,
            self.record_unit_failure,
            self.finalize,
        ]
