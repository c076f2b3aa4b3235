"""The first write of a workflow run: PENDING → PROCESSING (or the claim of a reopened run) and its plan."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import Interval, bindparam, func, update
from sqlalchemy import exc as sa_exc

from db.engine import db_error
from db.models import ProcessingState
from db.transaction import Tx
from db.transitions import RunProbe, apply, claim_locked, guarded, lock_job
from db.units import plannable_units
from domain.enums import EventType, ProcessingStatus
from domain.errors import AppError, ErrorCode
from domain.workflow_io import MarkProcessingResult

PS = ProcessingState

STARTED = guarded(
    [ProcessingStatus.PENDING],
    status=ProcessingStatus.PROCESSING,
    started_at=func.now(),
    deadline_at=func.now() + bindparam("deadline", type_=Interval()),
    workflow_run_id=bindparam("run_id"),
)


def reopen_collision(exc: sa_exc.IntegrityError) -> AppError:
    """A reopen that met another active job on the same target is JOB_ALREADY_RUNNING (spec 6.9)."""
    diag = getattr(exc.orig, "diag", None)
    if getattr(diag, "constraint_name", None) == "uq_ps_active_target":
        return AppError(ErrorCode.JOB_ALREADY_RUNNING)
    return db_error(exc)


async def mark(
    tx: Tx, process_id: uuid.UUID, run_id: str, deadline_seconds: int, probe: RunProbe
) -> tuple[MarkProcessingResult, Any]:
    """The PROCESSING write (mark_processing); also returns the row as locked before it."""
    deadline = timedelta(seconds=deadline_seconds)
    row, reopened = await lock_job(tx.conn, process_id), False
    if row is None or row.status != ProcessingStatus.PENDING or row.workflow_run_id not in (None, run_id):
        # Not the first claim of a new job (whose STARTED transition records the run itself).
        claimed = await claim_locked(tx.conn, row, process_id, run_id, probe)
        row, reopened = claimed.row, claimed.reopened
    if row.status == ProcessingStatus.PENDING:
        t = await apply(
            tx.conn, STARTED, process_id, EventType.STARTED, {"workflowRunId": run_id},
            deadline=deadline, run_id=run_id,
        )  # fmt: skip
        tx.log_after_commit(t, workflowRunId=run_id)
        if t is not None:  # always: the row is locked and PENDING
            return MarkProcessingResult(deadline_at=t.deadline_at, progress=t.progress, reopened=False), row
    elif reopened:
        # The new run gets a fresh job deadline; REOPENED was its event.
        await tx.conn.execute(update(PS).where(PS.id == process_id).values(deadline_at=func.now() + deadline))
    fresh = await lock_job(tx.conn, process_id)
    return MarkProcessingResult(
        deadline_at=fresh.deadline_at, progress=fresh.progress, reopened=reopened
    ), row


async def plan_of(tx: Tx, job: Any) -> list[Any]:
    """The job's plannable units (``plannable_units``); TARGET_NOT_READY when there are none."""
    units = await plannable_units(tx.conn, job)
    if not units:
        raise AppError(ErrorCode.TARGET_NOT_READY)
    return units
