"""JobRepository: the only writer of job state (spec 6.3).

The API, the activities and the reconciler all change processing_states through this class, so every
transition is guarded, appends exactly one event and is logged once, after its transaction commits
(``db.transaction``).
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import String, bindparam, func, select, text, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.ext.asyncio import AsyncEngine

from db import reads
from db.engine import db_error
from db.hierarchy import refuse_conflicting_jobs
from db.models import ProcessingState, ProcessingUnit
from db.persist import SAVERS
from db.results import target_scope_result
from db.terminal import terminal_write
from db.transaction import Tx, transaction
from db.transitions import RunProbe, append_event_to_terminal, claim, lock_job, transition
from db.units import (
    all_units_succeeded,
    failure_recorded,
    goal_scope_progress,
    mark_unit_failed,
    mark_unit_succeeded,
    plannable_units,
    succeeded_unit,
)
from domain.enums import ACTIVE_STATUSES, CancelledBy, EventType, ProcessingStatus, ProcessingType
from domain.errors import AppError, ErrorCode, InternalSignal, InternalSignalError
from domain.jobs import UNIT_TYPE_BY_JOB, NewJob, is_goal_scope
from domain.workflow_io import (
    FinalizeRequest,
    FinalizeResult,
    MarkProcessingResult,
    PersistUnitRequest,
    PersistUnitResult,
    workflow_id_for,
)

log = logging.getLogger("db.repository")
PS = ProcessingState
PU = ProcessingUnit
ACTIVE = list(ACTIVE_STATUSES)


class JobRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")

    # ------------------------------------------------------------------ API side

    async def create_job(self, job: NewJob) -> ProcessingState:
        """The PENDING row, its units and its CREATED event in one statement; a retry also appends
        RETRY_CREATED to its parent.

        A job whose target is a goal still to be created (``job.target_is_new``) has nothing to check: its
        one statement runs in autocommit, a single round trip. Any other job first takes the hierarchy
        check's lock and looks for conflicting jobs in the same transaction (db.hierarchy)."""
        fresh = job.target_is_new and job.parent_process_id is None
        try:
            async with transaction(self._autocommit if fresh else self.engine) as tx:
                if not fresh:
                    await refuse_conflicting_jobs(
                        tx.conn, job.user_id, job.target_type, job.target_id, job.parent_process_id
                    )
                if job.parent_process_id:
                    await append_event_to_terminal(
                        tx.conn,
                        job.parent_process_id,
                        EventType.RETRY_CREATED,
                        {"childProcessId": str(job.process_id)},
                    )
                row = (await tx.conn.execute(_INSERT_JOB, _insert_job_params(job))).one()
            return ProcessingState(**row._mapping)
        except sa_exc.IntegrityError as exc:
            raise await self._conflict(job, exc) from exc

    async def _conflict(self, job: NewJob, exc: sa_exc.IntegrityError) -> AppError:
        """The catalogue error of a new row that hit a unique index."""
        diag = getattr(exc.orig, "diag", None)
        name = getattr(diag, "constraint_name", None)
        async with self.engine.connect() as conn:
            if name in ("uq_ps_active_target", "uq_ps_parent") and job.parent_process_id:
                # Two concurrent retries aim at the same target; PostgreSQL may report either index.
                child = await reads.child_of(conn, job.parent_process_id)
                if child is not None:
                    return AppError(ErrorCode.ALREADY_RETRIED, {"childProcessId": str(child)})
            if name == "uq_ps_active_target":
                active = await reads.active_job_for(conn, job)
                return AppError(ErrorCode.JOB_ALREADY_RUNNING, {"processId": str(active) if active else None})
        return db_error(exc)

    async def get_job(self, process_id: uuid.UUID) -> ProcessingState | None:
        async with transaction(self.engine) as tx:
            row = (await tx.conn.execute(select(PS).where(PS.id == process_id))).one_or_none()
        return None if row is None else ProcessingState(**row._mapping)

    async def fail_start(self, process_id: uuid.UUID, internal: str) -> None:
        """PENDING → FAILED when the workflow could not be started, so that no row stays PENDING forever."""
        err = AppError(ErrorCode.WORKFLOW_START_ERROR)
        async with transaction(self.engine) as tx:
            t = await transition(
                tx.conn,
                process_id,
                [ProcessingStatus.PENDING],
                EventType.FAILED,
                {"errorCode": err.code.value, "source": "api"},
                status=ProcessingStatus.FAILED,
                error=err.stored(),
                error_code=err.code.value,
                error_internal=internal[:500],
            )
            tx.log_after_commit(t, errorCode=err.code.value)

    async def cancel_by_user(
        self, process_id: uuid.UUID, reason: str
    ) -> tuple[ProcessingState, ProcessingStatus] | None:
        """PENDING or PROCESSING → CANCELLED by the owner. Returns the updated row and the previous status,
        or None when the job is not active.

        A goal-scope job keeps the units saved so far, and its ``result`` lists them (spec 6.8)."""
        req = FinalizeRequest(
            process_id=process_id,
            status=ProcessingStatus.CANCELLED,
            error_code=ErrorCode.CANCELLED.value,
            cancel_reason=reason,
            cancelled_by=CancelledBy.USER,
            source="api",
        )
        async with transaction(self.engine) as tx:
            current = await lock_job(tx.conn, process_id)
            if current is None or current.status not in ACTIVE:
                return None
            t = await terminal_write(tx, current, req)
            if t is None:  # pragma: no cover - the row is locked and active
                return None
            row = (await tx.conn.execute(select(PS).where(PS.id == process_id))).one()
        return ProcessingState(**row._mapping), t.from_status

    # ------------------------------------------------------------------ worker side

    async def mark_processing(
        self, process_id: uuid.UUID, run_id: str, deadline_seconds: int, probe: RunProbe
    ) -> MarkProcessingResult:
        """PENDING → PROCESSING with the job's deadline (or, through the claim check, the reopen of a reset
        run). Idempotent for a repeated attempt. A reopen that meets another active job on the same target
        fails with JOB_ALREADY_RUNNING and changes nothing (spec 6.9)."""
        try:
            return await self._mark_processing(process_id, run_id, deadline_seconds, probe)
        except sa_exc.IntegrityError as exc:
            diag = getattr(exc.orig, "diag", None)
            if getattr(diag, "constraint_name", None) == "uq_ps_active_target":
                raise AppError(ErrorCode.JOB_ALREADY_RUNNING) from exc
            raise db_error(exc) from exc

    async def _mark_processing(
        self, process_id: uuid.UUID, run_id: str, deadline_seconds: int, probe: RunProbe
    ) -> MarkProcessingResult:
        async with transaction(self.engine) as tx:
            claimed = await claim(tx.conn, process_id, run_id, probe)
            deadline = func.now() + timedelta(seconds=deadline_seconds)
            if claimed.row.status == ProcessingStatus.PENDING:
                t = await transition(
                    tx.conn,
                    process_id,
                    [ProcessingStatus.PENDING],
                    EventType.STARTED,
                    {"workflowRunId": run_id},
                    status=ProcessingStatus.PROCESSING,
                    started_at=func.now(),
                    deadline_at=deadline,
                    workflow_run_id=run_id,
                )
                tx.log_after_commit(t, workflowRunId=run_id)
            elif claimed.reopened:
                # The new run gets a fresh job deadline; REOPENED was its event.
                await tx.conn.execute(update(PS).where(PS.id == process_id).values(deadline_at=deadline))
            fresh = await lock_job(tx.conn, process_id)
        return MarkProcessingResult(
            deadline_at=fresh.deadline_at, progress=fresh.progress, reopened=claimed.reopened
        )

    async def planned_units(self, process_id: uuid.UUID) -> tuple[ProcessingState, list[Any]]:
        """The job's units in ordinal order, without those whose target row no longer exists.

        The API writes the plan with the row (it needs it for the target checks and total_units).
        An empty plan fails the job with TARGET_NOT_READY.
        """
        async with transaction(self.engine) as tx:
            job = (await tx.conn.execute(select(PS).where(PS.id == process_id))).one_or_none()
            if job is None:
                raise InternalSignalError(InternalSignal.JOB_NOT_ACTIVE)
            units = await plannable_units(tx.conn, job)
            if not units:
                raise AppError(ErrorCode.TARGET_NOT_READY)
        return ProcessingState(**job._mapping), units

    async def claim_unit(
        self, process_id: uuid.UUID, unit_id: uuid.UUID, run_id: str, probe: RunProbe
    ) -> tuple[ProcessingState, bool]:
        """Claim check for generate_unit; returns the job row and whether the unit is already saved."""
        async with transaction(self.engine) as tx:
            row = (await claim(tx.conn, process_id, run_id, probe)).row
            saved = await succeeded_unit(tx.conn, process_id, unit_id) is not None
        return ProcessingState(**row._mapping), saved

    async def record_progress(
        self,
        process_id: uuid.UUID,
        progress: int,
        event_type: EventType,
        payload: dict[str, Any],
    ) -> bool:
        """PROCESSING → PROCESSING with a progress event; progress never decreases and stays ≤ 99."""
        async with transaction(self.engine) as tx:
            t = await transition(
                tx.conn,
                process_id,
                [ProcessingStatus.PROCESSING],
                event_type,
                payload,
                progress=func.greatest(PS.progress, min(progress, 99)),
            )
        return t is not None

    async def record_event(
        self, process_id: uuid.UUID, event_type: EventType, payload: dict[str, Any]
    ) -> bool:
        """An event on a PROCESSING job that leaves its progress alone (ATTEMPT_FAILED)."""
        async with transaction(self.engine) as tx:
            t = await transition(tx.conn, process_id, [ProcessingStatus.PROCESSING], event_type, payload)
        return t is not None

    async def persist_unit(self, req: PersistUnitRequest, run_id: str, probe: RunProbe) -> PersistUnitResult:
        """Step 10: the unit's rows, its SUCCEEDED mark and (target scope) COMPLETED in one transaction.

        Idempotent per (processId, unit): a repeat after a lost completion returns the stored summary.
        """
        async with transaction(self.engine) as tx:
            result = await _persist(tx, req, run_id, probe)
        log.info(
            "unit persisted",
            extra={
                "event": "unit_persisted",
                "processId": str(req.process_id),
                "unitId": str(req.unit.unit_id),
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
        """Mark the unit FAILED with its final code and write UNIT_FAILED (with goal-scope progress).

        Idempotent per unit: a repeat after a lost completion finds the failure on record and writes nothing.
        """
        async with transaction(self.engine) as tx:
            job = (await claim(tx.conn, process_id, run_id, probe)).row
            if await failure_recorded(tx.conn, process_id, unit_id):
                return
            await mark_unit_failed(tx.conn, process_id, unit_id, error)
            values: dict[str, Any] = {}
            if is_goal_scope(job):
                values["progress"] = func.greatest(
                    PS.progress, await goal_scope_progress(tx.conn, process_id)
                )
            await transition(
                tx.conn,
                process_id,
                [ProcessingStatus.PROCESSING],
                EventType.UNIT_FAILED,
                {"unitId": str(unit_id), "errorCode": error.code.value},
                **values,
            )

    async def finalize(self, req: FinalizeRequest, run_id: str, probe: RunProbe) -> FinalizeResult:
        """The one terminal write of a workflow run: COMPLETED (goal scope), FAILED, TIMEOUT or CANCELLED."""
        async with transaction(self.engine) as tx:
            current = await lock_job(tx.conn, req.process_id)
            if current is None:
                return FinalizeResult(applied=False, status=req.status)
            if req.status is ProcessingStatus.CANCELLED and current.status == ProcessingStatus.CANCELLED:
                return FinalizeResult(applied=True, status=ProcessingStatus.CANCELLED)
            try:
                row = (await claim(tx.conn, req.process_id, run_id, probe)).row
            except InternalSignalError:
                # The same write by this run again: an earlier attempt committed, its completion was lost.
                repeated = current.status == req.status and current.workflow_run_id == run_id
                return FinalizeResult(
                    applied=False, status=ProcessingStatus(current.status), repeated=repeated
                )
            t = await terminal_write(tx, row, req)
        return FinalizeResult(applied=t is not None, status=req.status)

    async def reconcile(self, req: FinalizeRequest) -> bool:
        """The reconciler ends an open row whose workflow has closed (no claim check: it is no run).

        A COMPLETED request becomes FAILED (with ``req.error_code``, else UNKNOWN_ERROR) unless every unit
        of the job was saved: a closed workflow is only a success if the data is there.
        """
        async with transaction(self.engine) as tx:
            row = await lock_job(tx.conn, req.process_id)
            if row is None or row.status not in ACTIVE:
                return False
            write = req
            if req.status is ProcessingStatus.COMPLETED and not await all_units_succeeded(
                tx.conn, req.process_id
            ):
                write = req.model_copy(update={"status": ProcessingStatus.FAILED})
            t = await terminal_write(tx, row, write, source=req.source)
        return t is not None


async def _persist(tx: Tx, req: PersistUnitRequest, run_id: str, probe: RunProbe) -> PersistUnitResult:
    unit_id = req.unit.unit_id
    job = await lock_job(tx.conn, req.process_id)
    if job is None:
        raise InternalSignalError(InternalSignal.JOB_NOT_ACTIVE)
    done = await succeeded_unit(tx.conn, req.process_id, unit_id)
    if done is not None:
        return PersistUnitResult(
            created_count=done.created_count,
            deleted_count=done.deleted_count,
            job_completed=job.status == ProcessingStatus.COMPLETED,
            progress=job.progress,
        )
    job = (await claim(tx.conn, req.process_id, run_id, probe)).row
    saved = await SAVERS[ProcessingType(job.type)](tx.conn, job, unit_id, req.output)
    await mark_unit_succeeded(tx.conn, req, saved)
    event = {"unitId": str(unit_id), "createdCount": len(saved.items), "deletedCount": saved.deleted}
    processing = [ProcessingStatus.PROCESSING]
    if is_goal_scope(job):
        progress = await goal_scope_progress(tx.conn, req.process_id)
        t = await transition(
            tx.conn,
            req.process_id,
            processing,
            EventType.UNIT_SUCCEEDED,
            event,
            progress=func.greatest(PS.progress, progress),
        )
        return PersistUnitResult(
            created_count=len(saved.items),
            deleted_count=saved.deleted,
            progress=t.progress if t else progress,
        )
    await transition(tx.conn, req.process_id, processing, EventType.UNIT_SUCCEEDED, event)
    t = await transition(
        tx.conn,
        req.process_id,
        processing,
        EventType.COMPLETED,
        {"source": "workflow"},
        status=ProcessingStatus.COMPLETED,
        progress=100,
        result=target_scope_result(job.type, saved, req.output.metadata),
    )
    if t is None:  # pragma: no cover - the claim holds the row lock
        raise InternalSignalError(InternalSignal.JOB_NOT_ACTIVE)
    tx.log_after_commit(t)
    return PersistUnitResult(
        created_count=len(saved.items), deleted_count=saved.deleted, job_completed=True, progress=100
    )


# A new job's row, its units and its CREATED event (seq 1) as one statement: the units and the event are
# inserted from the row the first part returns (their foreign keys are checked at the statement's end).
_INSERT_JOB = text(
    """
WITH job AS (
    INSERT INTO processing_states (id, user_id, type, status, target_type, target_id, params, progress,
        retry_count, parent_process_id, root_process_id, workflow_id, event_seq, total_units,
        estimated_completion_at, request_id, created_at, updated_at)
    VALUES (:id, :user_id, :type, 'PENDING', :target_type, :target_id, :params, 0,
        :retry_count, :parent_process_id, :root_process_id, :workflow_id, 1, :total_units,
        :estimated_completion_at, :request_id, :created_at, :created_at)
    RETURNING *
), units AS (
    INSERT INTO processing_units (process_id, unit_id, unit_type, ordinal)
    SELECT job.id, u.unit_id, CAST(u.unit_type AS target_type), u.ordinal - 1
    FROM job, unnest(:unit_ids, :unit_types) WITH ORDINALITY AS u(unit_id, unit_type, ordinal)
), created AS (
    INSERT INTO processing_events (process_id, seq, type, status, progress, payload)
    SELECT job.id, 1, :event_type, 'PENDING', 0, :payload FROM job
)
SELECT * FROM job
"""
).bindparams(
    bindparam("params", type_=JSONB),
    bindparam("payload", type_=JSONB),
    bindparam("unit_ids", type_=ARRAY(PG_UUID(as_uuid=True))),
    bindparam("unit_types", type_=ARRAY(String)),
)


def _insert_job_params(job: NewJob) -> dict[str, Any]:
    units = job.units or [(job.target_id, UNIT_TYPE_BY_JOB[job.type])]
    payload: dict[str, Any] = {
        "type": job.type.value,
        "targetType": job.target_type.value,
        "targetId": str(job.target_id),
    }
    if job.parent_process_id:
        payload["parentProcessId"] = str(job.parent_process_id)
    return {
        "id": job.process_id,
        "user_id": job.user_id,
        "type": job.type.value,
        "target_type": job.target_type.value,
        "target_id": job.target_id,
        "params": job.params,
        "retry_count": job.retry_count,
        "parent_process_id": job.parent_process_id,
        "root_process_id": job.root_process_id or job.process_id,
        "workflow_id": workflow_id_for(job.process_id),
        "total_units": job.total_units,
        "estimated_completion_at": job.estimated_completion_at,
        "request_id": job.request_id,
        "created_at": job.created_at,
        "unit_ids": [unit_id for unit_id, _ in units],
        "unit_types": [unit_type.value for _, unit_type in units],
        "event_type": EventType.CREATED.value,
        "payload": payload,
    }
