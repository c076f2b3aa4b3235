"""JobRepository: the only writer of job state (spec 6.3).

The API, the activities and the reconciler all change processing_states through this class, so every
transition is guarded, appends exactly one event and is logged once.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import exc as sa_exc
from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db.engine import db_error
from db.hierarchy import refuse_conflicting_jobs
from db.models import Action, ProcessingState, ProcessingUnit, SubGoal, User
from db.persist import Saved, save_actions, save_subgoals, save_tasks
from db.transitions import (
    InternalSignalError,
    RunProbe,
    Transition,
    append_event,
    append_event_to_terminal,
    claim,
    lock_job,
    transition,
)
from domain.enums import (
    ACTIVE_STATUSES,
    CancelledBy,
    EventType,
    ProcessingStatus,
    ProcessingType,
    TargetType,
    UnitStatus,
)
from domain.errors import AppError, ErrorCode, InternalSignal, entry
from domain.generation import GeneratedUnit, GenerationMetadata
from domain.timefmt import iso_ms
from domain.workflow_io import (
    FinalizeRequest,
    FinalizeResult,
    MarkProcessingResult,
    PersistUnitRequest,
    PersistUnitResult,
    workflow_id_for,
)
from observability import metrics

log = logging.getLogger("db.repository")
PS = ProcessingState
PU = ProcessingUnit
T = TypeVar("T")

ACTIVE = list(ACTIVE_STATUSES)
REOPENABLE = (ProcessingStatus.FAILED, ProcessingStatus.TIMEOUT, ProcessingStatus.CANCELLED)
USER_CANCEL_REASON = "ユーザーによるキャンセル"
OPERATOR_CANCEL_REASON = "オペレーターによるキャンセル"


@dataclass(frozen=True)
class NewJob:
    process_id: uuid.UUID
    user_id: uuid.UUID
    type: ProcessingType
    target_type: TargetType
    target_id: uuid.UUID
    params: dict[str, Any]
    total_units: int
    created_at: datetime
    estimated_completion_at: datetime
    request_id: str | None
    parent_process_id: uuid.UUID | None = None
    root_process_id: uuid.UUID | None = None
    retry_count: int = 0
    units: list[tuple[uuid.UUID, TargetType]] = field(default_factory=list)


UNIT_TYPE_BY_JOB: dict[ProcessingType, TargetType] = {
    ProcessingType.SUBGOAL_GENERATION: TargetType.GOAL,
    ProcessingType.ACTION_GENERATION: TargetType.SUB_GOAL,
    ProcessingType.TASK_GENERATION: TargetType.ACTION,
}


def _constraint(exc: sa_exc.IntegrityError) -> str | None:
    diag = getattr(exc.orig, "diag", None)
    return getattr(diag, "constraint_name", None)


def log_transition(t: Transition, **extra: Any) -> None:
    fields: dict[str, Any] = {
        "event": "state_transition",
        "processId": str(t.process_id),
        "userId": str(t.user_id),
        "type": t.type,
        "fromStatus": t.from_status.value,
        "toStatus": t.to_status.value,
        "status": t.to_status.value,
        "progress": t.progress,
    }
    if t.to_status.is_terminal and t.completed_at is not None:
        duration_ms = (t.completed_at - t.created_at).total_seconds() * 1000
        fields["durationMs"] = int(duration_ms)
        # Called once per applied transition, after commit: each terminal metric counts exactly once (6.3).
        error_code, cancelled_by = extra.get("errorCode"), extra.get("cancelledBy")
        metrics.job_finished(
            str(t.type),
            t.to_status,
            duration_ms,
            error_type=None if error_code is None else str(error_code),
            cancelled_by=None if cancelled_by is None else str(cancelled_by),
        )
    fields.update(extra)
    log.info("state transition", extra=fields)


class JobRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def _tx(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run ``work`` in one transaction, mapping driver failures to catalogue codes."""
        try:
            async with self.engine.begin() as conn:
                return await work(conn)
        except (AppError, InternalSignalError):
            raise
        except sa_exc.IntegrityError:
            raise
        except (sa_exc.SQLAlchemyError, OSError) as exc:
            raise db_error(exc) from exc

    # ------------------------------------------------------------------ API side

    async def create_job(self, job: NewJob) -> ProcessingState:
        async def work(conn: AsyncConnection) -> ProcessingState:
            await refuse_conflicting_jobs(
                conn, job.user_id, job.target_type, job.target_id, job.parent_process_id
            )
            row = (
                await conn.execute(
                    insert(PS)
                    .values(
                        id=job.process_id,
                        user_id=job.user_id,
                        type=job.type,
                        status=ProcessingStatus.PENDING,
                        target_type=job.target_type,
                        target_id=job.target_id,
                        params=job.params,
                        progress=0,
                        retry_count=job.retry_count,
                        parent_process_id=job.parent_process_id,
                        root_process_id=job.root_process_id or job.process_id,
                        workflow_id=workflow_id_for(job.process_id),
                        event_seq=1,
                        total_units=job.total_units,
                        estimated_completion_at=job.estimated_completion_at,
                        request_id=job.request_id,
                        created_at=job.created_at,
                        updated_at=job.created_at,
                    )
                    .returning(PS)
                )
            ).one()
            units = job.units or [(job.target_id, UNIT_TYPE_BY_JOB[job.type])]
            await conn.execute(
                insert(PU),
                [
                    {"process_id": job.process_id, "unit_id": uid, "unit_type": utype, "ordinal": i}
                    for i, (uid, utype) in enumerate(units)
                ],
            )
            payload: dict[str, Any] = {
                "type": job.type.value,
                "targetType": job.target_type.value,
                "targetId": str(job.target_id),
            }
            if job.parent_process_id:
                payload["parentProcessId"] = str(job.parent_process_id)
                await append_event_to_terminal(
                    conn,
                    job.parent_process_id,
                    EventType.RETRY_CREATED,
                    {"childProcessId": str(job.process_id)},
                )
            await append_event(
                conn, job.process_id, 1, EventType.CREATED, ProcessingStatus.PENDING, 0, payload
            )
            return ProcessingState(**row._mapping)

        try:
            return await self._tx(work)
        except sa_exc.IntegrityError as exc:
            name = _constraint(exc)
            if name in ("uq_ps_active_target", "uq_ps_parent") and job.parent_process_id:
                # Two concurrent retries aim at the same target; PostgreSQL may report either index.
                child = await self._child_of(job.parent_process_id)
                if child is not None:
                    raise AppError(ErrorCode.ALREADY_RETRIED, {"childProcessId": str(child)}) from exc
            if name == "uq_ps_active_target":
                active = await self._active_job_for(job)
                raise AppError(
                    ErrorCode.JOB_ALREADY_RUNNING, {"processId": str(active) if active else None}
                ) from exc
            raise db_error(exc) from exc

    async def _active_job_for(self, job: NewJob) -> uuid.UUID | None:
        async with self.engine.connect() as conn:
            return (
                await conn.execute(
                    select(PS.id).where(
                        PS.user_id == job.user_id,
                        PS.type == job.type,
                        PS.target_id == job.target_id,
                        PS.status.in_(ACTIVE),
                    )
                )
            ).scalar_one_or_none()

    async def _child_of(self, parent_id: uuid.UUID) -> uuid.UUID | None:
        async with self.engine.connect() as conn:
            return (
                await conn.execute(select(PS.id).where(PS.parent_process_id == parent_id))
            ).scalar_one_or_none()

    async def get_job(self, process_id: uuid.UUID) -> ProcessingState | None:
        async def work(conn: AsyncConnection) -> ProcessingState | None:
            row = (await conn.execute(select(PS).where(PS.id == process_id))).one_or_none()
            return None if row is None else ProcessingState(**row._mapping)

        return await self._tx(work)

    async def fail_start(self, process_id: uuid.UUID, internal: str) -> None:
        """T9: the workflow could not be started; the row must not stay PENDING (D-20)."""
        err = AppError(ErrorCode.WORKFLOW_START_ERROR)

        async def work(conn: AsyncConnection) -> Transition | None:
            return await transition(
                conn,
                process_id,
                [ProcessingStatus.PENDING],
                EventType.FAILED,
                {"errorCode": err.code.value, "source": "api"},
                status=ProcessingStatus.FAILED,
                error=err.stored(),
                error_code=err.code.value,
                error_internal=internal[:500],
            )

        t = await self._tx(work)
        if t:
            log_transition(t, errorCode=err.code.value)

    async def cancel_by_user(
        self, process_id: uuid.UUID, reason: str
    ) -> tuple[ProcessingState, ProcessingStatus] | None:
        """T7. Returns the updated row and the previous status, or None when not active.

        A goal-scope job keeps the units saved so far, and its ``result`` lists them (spec 6.8)."""
        req = FinalizeRequest(
            process_id=process_id,
            status=ProcessingStatus.CANCELLED,
            error_code=ErrorCode.CANCELLED.value,
            cancel_reason=reason,
            cancelled_by=CancelledBy.USER,
            source="api",
        )

        async def work(conn: AsyncConnection) -> tuple[ProcessingState, Transition] | None:
            current = await lock_job(conn, process_id)
            if current is None or current.status not in ACTIVE:
                return None
            t = await terminal_write(conn, current, req)
            if t is None:  # pragma: no cover - the row is locked and active
                return None
            row = (await conn.execute(select(PS).where(PS.id == process_id))).one()
            return ProcessingState(**row._mapping), t

        out = await self._tx(work)
        if out is None:
            return None
        row, t = out
        log_transition(t, errorCode=req.error_code, cancelledBy=cancelled_by(req))
        return row, t.from_status

    # ------------------------------------------------------------------ worker side

    async def mark_processing(
        self, process_id: uuid.UUID, run_id: str, deadline_seconds: int, probe: RunProbe
    ) -> MarkProcessingResult:
        """T2 (or T11 through the claim check's reopen). Idempotent for a repeated attempt."""

        async def work(conn: AsyncConnection) -> tuple[MarkProcessingResult, Transition | None]:
            claimed = await claim(conn, process_id, run_id, probe)
            deadline = func.now() + timedelta(seconds=deadline_seconds)
            t = None
            if claimed.row.status == ProcessingStatus.PENDING:
                t = await transition(
                    conn,
                    process_id,
                    [ProcessingStatus.PENDING],
                    EventType.STARTED,
                    {"workflowRunId": run_id},
                    status=ProcessingStatus.PROCESSING,
                    started_at=func.now(),
                    deadline_at=deadline,
                    workflow_run_id=run_id,
                )
            elif claimed.reopened:
                # The new run gets a fresh job deadline; REOPENED was its event.
                await conn.execute(update(PS).where(PS.id == process_id).values(deadline_at=deadline))
            fresh = await lock_job(conn, process_id)
            return MarkProcessingResult(
                deadline_at=fresh.deadline_at, progress=fresh.progress, reopened=claimed.reopened
            ), t

        result, t = await self._tx(work)
        if t:
            log_transition(t, workflowRunId=run_id)
        return result

    async def planned_units(self, process_id: uuid.UUID) -> tuple[ProcessingState, list[Any]]:
        """The job's units in ordinal order, without those whose target row no longer exists.

        The API writes the plan with the row (it needs it for the target checks and total_units).
        An empty plan fails the job with TARGET_NOT_READY.
        """

        async def work(conn: AsyncConnection) -> tuple[ProcessingState, list[Any]]:
            job = (await conn.execute(select(PS).where(PS.id == process_id))).one_or_none()
            if job is None:
                raise InternalSignalError(InternalSignal.JOB_NOT_ACTIVE)
            units = (
                await conn.execute(select(PU).where(PU.process_id == process_id).order_by(PU.ordinal))
            ).all()
            if is_goal_scope(job):
                model = SubGoal if job.type == ProcessingType.ACTION_GENERATION else Action
                alive = set(
                    (
                        await conn.execute(select(model.id).where(model.id.in_([u.unit_id for u in units])))
                    ).scalars()
                )
                for gone in [u for u in units if u.unit_id not in alive and u.status != UnitStatus.SUCCEEDED]:
                    log.info(
                        "unit dropped from plan",
                        extra={
                            "event": "unit_dropped",
                            "processId": str(process_id),
                            "unitId": str(gone.unit_id),
                        },
                    )
                units = [u for u in units if u.unit_id in alive or u.status == UnitStatus.SUCCEEDED]
            if not units:
                raise AppError(ErrorCode.TARGET_NOT_READY)
            return ProcessingState(**job._mapping), list(units)

        return await self._tx(work)

    async def claim_unit(
        self, process_id: uuid.UUID, unit_id: uuid.UUID, run_id: str, probe: RunProbe
    ) -> tuple[ProcessingState, bool]:
        """Claim check for generate_unit; returns the job row and whether the unit is already saved."""

        async def work(conn: AsyncConnection) -> tuple[ProcessingState, bool]:
            row = (await claim(conn, process_id, run_id, probe)).row
            status = (
                await conn.execute(
                    select(PU.status).where(PU.process_id == process_id, PU.unit_id == unit_id)
                )
            ).scalar_one_or_none()
            return ProcessingState(**row._mapping), status == UnitStatus.SUCCEEDED

        return await self._tx(work)

    async def record_progress(
        self,
        process_id: uuid.UUID,
        progress: int,
        event_type: EventType,
        payload: dict[str, Any],
    ) -> bool:
        """T3: PROCESSING → PROCESSING; progress never decreases and stays ≤ 99."""

        async def work(conn: AsyncConnection) -> Transition | None:
            return await transition(
                conn,
                process_id,
                [ProcessingStatus.PROCESSING],
                event_type,
                payload,
                progress=func.greatest(PS.progress, min(progress, 99)),
            )

        return await self._tx(work) is not None

    async def record_event(
        self, process_id: uuid.UUID, event_type: EventType, payload: dict[str, Any]
    ) -> bool:
        """An event on a PROCESSING job that leaves its progress alone (ATTEMPT_FAILED)."""

        async def work(conn: AsyncConnection) -> Transition | None:
            return await transition(conn, process_id, [ProcessingStatus.PROCESSING], event_type, payload)

        return await self._tx(work) is not None

    async def persist_unit(self, req: PersistUnitRequest, run_id: str, probe: RunProbe) -> PersistUnitResult:
        """Step 10: the unit's rows, its SUCCEEDED mark and (target scope) COMPLETED in one transaction.

        Idempotent per (processId, unit): a repeat after a lost completion returns the stored summary.
        """
        unit_id = req.unit.unit_id

        async def work(conn: AsyncConnection) -> tuple[PersistUnitResult, list[Transition]]:
            job = await lock_job(conn, req.process_id)
            if job is None:
                raise InternalSignalError(InternalSignal.JOB_NOT_ACTIVE)
            done = (
                await conn.execute(
                    select(PU).where(
                        PU.process_id == req.process_id,
                        PU.unit_id == unit_id,
                        PU.status == UnitStatus.SUCCEEDED,
                    )
                )
            ).one_or_none()
            if done is not None:
                return PersistUnitResult(
                    created_count=done.created_count,
                    deleted_count=done.deleted_count,
                    job_completed=job.status == ProcessingStatus.COMPLETED,
                    progress=job.progress,
                ), []
            job = (await claim(conn, req.process_id, run_id, probe)).row
            saved = await SAVERS[ProcessingType(job.type)](conn, job, unit_id, req.output, req.process_id)
            meta = req.output.metadata
            await upsert_unit_succeeded(
                conn,
                req.process_id,
                unit_id,
                req.unit.unit_type,
                req.unit.ordinal,
                created=len(saved.items),
                deleted=saved.deleted,
                attempts=meta.generation_attempts,
                tokens_in=meta.input_tokens,
                tokens_out=meta.output_tokens,
            )
            event = {"unitId": str(unit_id), "createdCount": len(saved.items), "deletedCount": saved.deleted}
            transitions: list[Transition] = []
            if is_goal_scope(job):
                progress = await goal_scope_progress(conn, req.process_id)
                t = await transition(
                    conn,
                    req.process_id,
                    [ProcessingStatus.PROCESSING],
                    EventType.UNIT_SUCCEEDED,
                    event,
                    progress=func.greatest(PS.progress, progress),
                )
                return PersistUnitResult(
                    created_count=len(saved.items),
                    deleted_count=saved.deleted,
                    progress=t.progress if t else progress,
                ), []
            await transition(
                conn, req.process_id, [ProcessingStatus.PROCESSING], EventType.UNIT_SUCCEEDED, event
            )
            result = target_scope_result(job.type, saved, meta)
            t = await transition(
                conn,
                req.process_id,
                [ProcessingStatus.PROCESSING],
                EventType.COMPLETED,
                {"source": "workflow"},
                status=ProcessingStatus.COMPLETED,
                progress=100,
                result=result,
            )
            if t is None:  # pragma: no cover - the claim holds the row lock
                raise InternalSignalError(InternalSignal.JOB_NOT_ACTIVE)
            transitions.append(t)
            return PersistUnitResult(
                created_count=len(saved.items), deleted_count=saved.deleted, job_completed=True, progress=100
            ), transitions

        result, transitions = await self._tx(work)
        for t in transitions:
            log_transition(t)
        log.info(
            "unit persisted",
            extra={
                "event": "unit_persisted",
                "processId": str(req.process_id),
                "unitId": str(unit_id),
                "createdCount": result.created_count,
                "deletedCount": result.deleted_count,
            },
        )
        return result

    async def record_unit_failure(
        self,
        process_id: uuid.UUID,
        unit_id: uuid.UUID,
        error: AppError,
        run_id: str,
        probe: RunProbe,
    ) -> None:
        """Mark the unit FAILED with its final code and write UNIT_FAILED (with goal-scope progress)."""

        async def work(conn: AsyncConnection) -> None:
            job = (await claim(conn, process_id, run_id, probe)).row
            await conn.execute(
                update(PU)
                .where(PU.process_id == process_id, PU.unit_id == unit_id, PU.status != UnitStatus.SUCCEEDED)
                .values(
                    status=UnitStatus.FAILED,
                    error={"code": error.code.value, "retryable": error.entry.retryable},
                    finished_at=func.now(),
                    updated_at=func.now(),
                )
            )
            values: dict[str, Any] = {}
            if is_goal_scope(job):
                values["progress"] = func.greatest(PS.progress, await goal_scope_progress(conn, process_id))
            await transition(
                conn,
                process_id,
                [ProcessingStatus.PROCESSING],
                EventType.UNIT_FAILED,
                {"unitId": str(unit_id), "errorCode": error.code.value},
                **values,
            )

        await self._tx(work)

    async def finalize(self, req: FinalizeRequest, run_id: str, probe: RunProbe) -> FinalizeResult:
        """T4 (goal scope) / T5 / T6 / T8: the one terminal write of a workflow run."""

        async def work(conn: AsyncConnection) -> tuple[FinalizeResult, Transition | None]:
            current = await lock_job(conn, req.process_id)
            if current is None:
                return FinalizeResult(applied=False, status=req.status), None
            if req.status is ProcessingStatus.CANCELLED and current.status == ProcessingStatus.CANCELLED:
                return FinalizeResult(applied=True, status=ProcessingStatus.CANCELLED), None
            try:
                row = (await claim(conn, req.process_id, run_id, probe)).row
            except InternalSignalError:
                return FinalizeResult(applied=False, status=ProcessingStatus(current.status)), None
            t = await terminal_write(conn, row, req)
            return FinalizeResult(applied=t is not None, status=req.status), t

        result, t = await self._tx(work)
        if t:
            log_transition(t, errorCode=req.error_code, cancelledBy=cancelled_by(req))
        return result

    async def reconcile(self, req: FinalizeRequest) -> bool:
        """T10: the reconciler ends an open row whose workflow has closed (no claim: it is no run).

        A COMPLETED request becomes FAILED (with ``req.error_code``, else UNKNOWN_ERROR) unless every unit
        of the job was saved: a closed workflow is only a success if the data is there.
        """

        async def work(conn: AsyncConnection) -> Transition | None:
            row = await lock_job(conn, req.process_id)
            if row is None or row.status not in ACTIVE:
                return None
            if req.status is ProcessingStatus.COMPLETED and not await all_units_succeeded(
                conn, req.process_id
            ):
                req_failed = req.model_copy(update={"status": ProcessingStatus.FAILED})
                return await terminal_write(conn, row, req_failed)
            return await terminal_write(conn, row, req)

        t = await self._tx(work)
        if t:
            log_transition(t, errorCode=req.error_code, cancelledBy=cancelled_by(req), source=req.source)
        return t is not None


def cancelled_by(req: FinalizeRequest) -> str | None:
    """Who a CANCELLED write names: the request's canceller, an operator by default."""
    if req.status is not ProcessingStatus.CANCELLED:
        return None
    return (req.cancelled_by or CancelledBy.OPERATOR).value


async def terminal_write(conn: AsyncConnection, row: Any, req: FinalizeRequest) -> Transition | None:
    """The guarded write of one terminal state with its event (goal scope: with the rebuilt result)."""
    values: dict[str, Any] = {"status": req.status}
    payload: dict[str, Any] = {"source": req.source}
    if req.status is ProcessingStatus.COMPLETED:
        values["progress"] = 100
    else:
        code = ErrorCode(req.error_code or ErrorCode.UNKNOWN_ERROR)
        err = AppError(code, req.details)
        values.update(error=err.stored(), error_code=code.value, error_internal=req.internal)
        payload["errorCode"] = code.value
    by = cancelled_by(req)
    if by is not None:
        values.update(
            cancel_requested_at=func.coalesce(PS.cancel_requested_at, func.now()),
            cancel_reason=(req.cancel_reason or OPERATOR_CANCEL_REASON)[:500],
            cancelled_by=by,
        )
        payload["cancelledBy"] = by
    if is_goal_scope(row):
        values["result"] = await goal_scope_result(conn, row)
    return await transition(conn, row.id, ACTIVE, EventType(req.status.value), payload, **values)


async def all_units_succeeded(conn: AsyncConnection, process_id: uuid.UUID) -> bool:
    pending = (
        await conn.execute(
            select(func.count()).where(PU.process_id == process_id, PU.status != UnitStatus.SUCCEEDED)
        )
    ).scalar_one()
    return bool(pending == 0)


async def _save_subgoals(
    conn: AsyncConnection, job: Any, unit_id: uuid.UUID, output: GeneratedUnit, process_id: uuid.UUID
) -> Saved:
    return await save_subgoals(conn, job, output, process_id)


SAVERS = {
    ProcessingType.SUBGOAL_GENERATION: _save_subgoals,
    ProcessingType.ACTION_GENERATION: save_actions,
    ProcessingType.TASK_GENERATION: save_tasks,
}


def target_scope_result(job_type: str, saved: Saved, meta: GenerationMetadata) -> dict[str, Any]:
    """The target-scope ``result`` of spec 3.8."""
    key = {"SUBGOAL_GENERATION": "subGoals", "ACTION_GENERATION": "actions", "TASK_GENERATION": "tasks"}
    metadata: dict[str, Any] = {
        "provider": meta.provider,
        "model": meta.model,
        "generatedAt": iso_ms(datetime.now(UTC)),
        "generationAttempts": meta.generation_attempts,
        "tokensUsed": {"input": meta.input_tokens, "output": meta.output_tokens, "total": meta.total_tokens},
        "estimatedCostUsd": meta.estimated_cost_usd,
        "durationMs": meta.duration_ms,
        "replacedCount": saved.deleted,
    }
    context = dict(saved.context)
    for k in ("goalContext", "actionContext", "taskCount", "totalEstimatedMinutes"):
        if k in context:
            metadata[k] = context.pop(k)
    return {**context, key[job_type]: saved.items, "metadata": metadata}


async def goal_scope_progress(conn: AsyncConnection, process_id: uuid.UUID) -> int:
    """Spec 6.5: min(floor(100 × done / total), 99) over units saved or failed for good."""
    total, done = (
        await conn.execute(
            select(
                func.count(),
                func.count().filter(PU.status != UnitStatus.PENDING),
            ).where(PU.process_id == process_id)
        )
    ).one()
    return min(100 * done // max(total, 1), 99)


def is_goal_scope(job: Any) -> bool:
    return bool(job.target_type == TargetType.GOAL and job.type != ProcessingType.SUBGOAL_GENERATION)


async def goal_scope_result(conn: AsyncConnection, job: Any) -> dict[str, Any]:
    """The goal-scope ``result`` of spec 3.8, rebuilt from processing_units."""
    units: Sequence[Any] = (
        await conn.execute(select(PU).where(PU.process_id == job.id).order_by(PU.ordinal))
    ).all()
    succeeded = [u for u in units if u.status == UnitStatus.SUCCEEDED]
    failed = [u for u in units if u.status == UnitStatus.FAILED]
    pending = [u for u in units if u.status == UnitStatus.PENDING]
    tokens_in = sum(u.input_tokens for u in units)
    tokens_out = sum(u.output_tokens for u in units)
    return {
        "goalId": str(job.target_id),
        "scope": "GOAL",
        "totalUnits": len(units),
        "succeededUnits": [
            {"unitId": str(u.unit_id), "unitType": str(u.unit_type), "createdCount": u.created_count}
            for u in succeeded
        ],
        "failedUnits": [
            {
                "unitId": str(u.unit_id),
                "unitType": str(u.unit_type),
                "error": u.error or {"code": "UNKNOWN_ERROR", "retryable": entry("UNKNOWN_ERROR").retryable},
            }
            for u in failed
        ],
        "notAttemptedUnits": [str(u.unit_id) for u in pending],
        "metadata": {
            "generationAttempts": sum(u.generation_attempts for u in units),
            "tokensUsed": {"input": tokens_in, "output": tokens_out, "total": tokens_in + tokens_out},
            "createdCount": sum(u.created_count for u in units),
            "replacedCount": sum(u.deleted_count for u in units),
        },
    }


async def upsert_unit_succeeded(
    conn: AsyncConnection,
    process_id: uuid.UUID,
    unit_id: uuid.UUID,
    unit_type: TargetType,
    ordinal: int,
    created: int,
    deleted: int,
    attempts: int,
    tokens_in: int,
    tokens_out: int,
) -> None:
    values = {
        "status": UnitStatus.SUCCEEDED,
        "created_count": created,
        "deleted_count": deleted,
        "generation_attempts": attempts,
        "input_tokens": tokens_in,
        "output_tokens": tokens_out,
        "error": None,
        "finished_at": func.now(),
        "updated_at": func.now(),
    }
    stmt = pg_insert(PU).values(
        process_id=process_id, unit_id=unit_id, unit_type=unit_type, ordinal=ordinal, **values
    )
    await conn.execute(stmt.on_conflict_do_update(index_elements=[PU.process_id, PU.unit_id], set_=values))


async def owner_profile(conn: AsyncConnection, user_id: uuid.UUID) -> Any:
    return (await conn.execute(select(User.industry, User.job_type).where(User.id == user_id))).one()
