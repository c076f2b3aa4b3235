"""JobRepository: the only writer of job state (spec 6.3).

The API, the activities and the reconciler all change processing_states through this class, so every
transition is guarded, appends exactly one event and is logged once, after its transaction commits
(``db.transaction``).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import SmallInteger, bindparam, func, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncEngine

from db.begin import mark, plan_of, reopen_collision
from db.context import load_context
from db.hierarchy import refuse_conflicting_jobs
from db.models import ProcessingState, ProcessingUnit
from db.new_jobs import INSERT_JOB, creation_conflict, insert_job_params
from db.persist import SAVERS
from db.results import target_scope_result
from db.terminal import terminal_write
from db.transaction import Tx, single_statement, transaction
from db.transitions import (
    PST,
    RunProbe,
    append_event_to_terminal,
    apply,
    claim,
    claim_locked,
    guarded,
    lock_job,
    transition,
)
from db.units import (
    all_units_succeeded,
    failure_recorded,
    goal_scope_progress,
    job_of,
    lock_job_and_unit,
    mark_unit_failed,
    mark_unit_succeeded,
    succeeded_unit,
)
from domain.enums import ACTIVE_STATUSES, ActionType, CancelledBy, EventType, ProcessingStatus, ProcessingType
from domain.errors import AppError, ErrorCode, InternalSignal, InternalSignalError
from domain.jobs import NewJob, is_goal_scope
from domain.prompt_context import PromptContext
from domain.workflow_io import (
    FinalizeRequest,
    FinalizeResult,
    MarkProcessingResult,
    PersistUnitRequest,
    PersistUnitResult,
)

log = logging.getLogger("db.repository")
PS = ProcessingState
PU = ProcessingUnit
ACTIVE = list(ACTIVE_STATUSES)
PROCESSING = [ProcessingStatus.PROCESSING]

# The guarded writes every job makes, built once (one round trip each, compiled once).
_PROGRESS = guarded(
    PROCESSING, progress=func.greatest(PST.c.progress, bindparam("progress", type_=SmallInteger()))
)
_EVENT = guarded(PROCESSING)
_COMPLETED = guarded(
    PROCESSING,
    status=ProcessingStatus.COMPLETED,
    progress=100,
    result=bindparam("result", type_=JSONB()),
)
_ROW = select(PST).where(PST.c.id == bindparam("process_id"))


@dataclass(frozen=True, slots=True)
class ClaimedUnit:
    """generate_unit's claim check: the job row and the unit's prompt context (None: already saved)."""

    job: ProcessingState
    context: PromptContext | None
    action_type: ActionType | None = None


class JobRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    # ------------------------------------------------------------------ API side

    async def create_job(self, job: NewJob) -> ProcessingState:
        """The PENDING row, its units and its CREATED event in one statement; a retry also appends
        RETRY_CREATED to its parent.

        A job whose target is a goal still to be created (``job.target_is_new``) has nothing to check: its
        one statement runs in autocommit, a single round trip. Any other job first takes the hierarchy
        check's lock and looks for conflicting jobs in the same transaction (db.hierarchy)."""
        fresh = job.target_is_new and job.parent_process_id is None
        try:
            async with (single_statement if fresh else transaction)(self.engine) as tx:
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
                row = (await tx.conn.execute(INSERT_JOB, insert_job_params(job))).one()
            return ProcessingState(**row._mapping)
        except sa_exc.IntegrityError as exc:
            raise await creation_conflict(self.engine, job, exc) from exc

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
            async with transaction(self.engine) as tx:
                marked, _ = await mark(tx, process_id, run_id, deadline_seconds, probe)
            return marked
        except sa_exc.IntegrityError as exc:
            raise reopen_collision(exc) from exc

    async def planned_units(self, process_id: uuid.UUID) -> tuple[ProcessingState, list[Any]]:
        """The job's units in ordinal order, without those whose target row no longer exists.

        The API writes the plan with the row (it needs it for the target checks and total_units).
        An empty plan fails the job with TARGET_NOT_READY.
        """
        async with transaction(self.engine) as tx:
            job = (await tx.conn.execute(_ROW, {"process_id": process_id})).one_or_none()
            if job is None:
                raise InternalSignalError(InternalSignal.JOB_NOT_ACTIVE)
            return ProcessingState(**job._mapping), await plan_of(tx, job)

    async def begin_job(
        self, process_id: uuid.UUID, run_id: str, deadline_seconds: int, probe: RunProbe
    ) -> tuple[MarkProcessingResult, tuple[ProcessingState, list[Any]] | AppError]:
        """``mark_processing`` and ``planned_units`` in one transaction. A plan that cannot be made
        (TARGET_NOT_READY) is returned as its error, with the PROCESSING write committed.

        The plan's job is the row as locked before the PROCESSING write (no second read): its type,
        target and params are what a plan needs, and the write does not change them."""
        try:
            async with transaction(self.engine) as tx:
                marked, row = await mark(tx, process_id, run_id, deadline_seconds, probe)
                try:
                    plan = ProcessingState(**row._mapping), await plan_of(tx, row)
                except AppError as exc:
                    return marked, exc
        except sa_exc.IntegrityError as exc:
            raise reopen_collision(exc) from exc
        return marked, plan

    async def claim_unit(
        self, process_id: uuid.UUID, unit_id: uuid.UUID, run_id: str, probe: RunProbe, timezone: str
    ) -> ClaimedUnit:
        """generate_unit's claim check and context load (spec 3.1 steps 1-2) in one transaction: the job
        row and, unless the unit is already saved, the unit's prompt context."""
        async with transaction(self.engine) as tx:
            locked, saved = await lock_job_and_unit(tx.conn, process_id, unit_id)
            row = (await claim_locked(tx.conn, locked, process_id, run_id, probe)).row
            if saved:
                return ClaimedUnit(job_of(row), context=None)
            context, action_type = await load_context(tx.conn, row, unit_id, timezone)
        return ClaimedUnit(job_of(row), context, action_type)

    async def record_progress(
        self,
        process_id: uuid.UUID,
        progress: int,
        event_type: EventType,
        payload: dict[str, Any],
    ) -> bool:
        """PROCESSING → PROCESSING with a progress event; progress never decreases and stays ≤ 99."""
        async with single_statement(self.engine) as tx:
            t = await apply(tx.conn, _PROGRESS, process_id, event_type, payload, progress=min(progress, 99))
        return t is not None

    async def record_event(
        self, process_id: uuid.UUID, event_type: EventType, payload: dict[str, Any]
    ) -> bool:
        """An event on a PROCESSING job that leaves its progress alone (ATTEMPT_FAILED)."""
        async with single_statement(self.engine) as tx:
            t = await apply(tx.conn, _EVENT, process_id, event_type, payload)
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
    locked, already = await lock_job_and_unit(tx.conn, req.process_id, unit_id)
    if locked is None:
        raise InternalSignalError(InternalSignal.JOB_NOT_ACTIVE)
    if already:
        done = await succeeded_unit(tx.conn, req.process_id, unit_id)
        return PersistUnitResult(
            created_count=done.created_count,
            deleted_count=done.deleted_count,
            job_completed=locked.status == ProcessingStatus.COMPLETED,
            progress=locked.progress,
        )
    job = (await claim_locked(tx.conn, locked, req.process_id, run_id, probe)).row
    saved = await SAVERS[ProcessingType(job.type)](tx.conn, job, unit_id, req.output)
    await mark_unit_succeeded(tx.conn, req, saved)
    event = {"unitId": str(unit_id), "createdCount": len(saved.items), "deletedCount": saved.deleted}
    if is_goal_scope(job):
        progress = await goal_scope_progress(tx.conn, req.process_id)
        t = await apply(
            tx.conn, _PROGRESS, req.process_id, EventType.UNIT_SUCCEEDED, event, progress=progress
        )
        return PersistUnitResult(
            created_count=len(saved.items),
            deleted_count=saved.deleted,
            progress=t.progress if t else progress,
        )
    await apply(tx.conn, _EVENT, req.process_id, EventType.UNIT_SUCCEEDED, event)
    t = await apply(
        tx.conn, _COMPLETED, req.process_id, EventType.COMPLETED, {"source": "workflow"},
        result=target_scope_result(job.type, saved, req.output.metadata),
    )  # fmt: skip
    if t is None:  # pragma: no cover - the claim holds the row lock
        raise InternalSignalError(InternalSignal.JOB_NOT_ACTIVE)
    tx.log_after_commit(t)
    return PersistUnitResult(
        created_count=len(saved.items), deleted_count=saved.deleted, job_completed=True, progress=100
    )
