"""The guarded state machine of spec 6.2/6.3: conditional updates, events with gap-free seq, claim check.

Every function takes an open connection inside a transaction; the caller owns the commit.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from db.models import ProcessingEvent, ProcessingState
from domain.enums import ACTIVE_STATUSES, EventType, ProcessingStatus
from domain.errors import InternalSignal, InternalSignalError

log = logging.getLogger("db.transitions")
PS = ProcessingState


@dataclass(frozen=True, slots=True)
class RunStatus:
    """What Temporal says about the workflow run asking: is it the current run, was the workflow reset."""

    current: bool
    reset: bool = False


RunProbe = Callable[[], Awaitable[RunStatus]]


@dataclass(frozen=True, slots=True)
class Transition:
    process_id: uuid.UUID
    user_id: uuid.UUID
    type: str
    from_status: ProcessingStatus
    to_status: ProcessingStatus
    progress: int
    seq: int
    created_at: datetime
    completed_at: datetime | None


async def append_event(
    conn: AsyncConnection,
    process_id: uuid.UUID,
    seq: int,
    event_type: EventType,
    status: ProcessingStatus,
    progress: int,
    payload: Mapping[str, Any] | None = None,
) -> None:
    await conn.execute(
        insert(ProcessingEvent).values(
            process_id=process_id,
            seq=seq,
            type=event_type.value,
            status=status,
            progress=progress,
            payload=dict(payload or {}),
        )
    )


async def transition(
    conn: AsyncConnection,
    process_id: uuid.UUID,
    allowed_from: Iterable[ProcessingStatus],
    event_type: EventType,
    payload: Mapping[str, Any] | None = None,
    **values: Any,
) -> Transition | None:
    """Conditional UPDATE + its event. Returns None (and logs transition_refused) when refused.

    ``values`` may set ``status``; entering a terminal status sets ``completed_at``.
    """
    allowed = list(allowed_from)
    old = select(PS.id, PS.status).where(PS.id == process_id).with_for_update().cte("old")
    to_status = values.get("status")
    if isinstance(to_status, ProcessingStatus) and to_status.is_terminal:
        values.setdefault("completed_at", func.now())
    stmt = (
        update(PS)
        .where(PS.id == old.c.id, PS.status.in_(allowed))
        .values(updated_at=func.now(), event_seq=PS.event_seq + 1, **values)
        .returning(
            PS.id,
            PS.user_id,
            PS.type,
            PS.status,
            PS.progress,
            PS.event_seq,
            PS.created_at,
            PS.completed_at,
            old.c.status.label("from_status"),
        )
    )
    row = (await conn.execute(stmt)).one_or_none()
    if row is None:
        log.info(
            "transition refused",
            extra={
                "event": "transition_refused",
                "processId": str(process_id),
                "toStatus": str(to_status) if to_status else None,
                "eventType": event_type.value,
            },
        )
        return None
    await append_event(conn, process_id, row.event_seq, event_type, row.status, row.progress, payload)
    return Transition(
        process_id=row.id,
        user_id=row.user_id,
        type=str(row.type),
        from_status=ProcessingStatus(row.from_status),
        to_status=ProcessingStatus(row.status),
        progress=row.progress,
        seq=row.event_seq,
        created_at=row.created_at,
        completed_at=row.completed_at,
    )


async def append_event_to_terminal(
    conn: AsyncConnection, process_id: uuid.UUID, event_type: EventType, payload: Mapping[str, Any]
) -> None:
    """RETRY_CREATED on a terminal parent: only event_seq moves, not updated_at (spec 2.9)."""
    row = (
        await conn.execute(
            update(PS)
            .where(PS.id == process_id)
            .values(event_seq=PS.event_seq + 1)
            .returning(PS.event_seq, PS.status, PS.progress)
        )
    ).one()
    await append_event(conn, process_id, row.event_seq, event_type, row.status, row.progress, payload)


@dataclass(frozen=True, slots=True)
class Claim:
    row: Any
    reopened: bool = False


async def lock_job(conn: AsyncConnection, process_id: uuid.UUID) -> Any:
    return (await conn.execute(select(PS).where(PS.id == process_id).with_for_update())).one_or_none()


async def claim(conn: AsyncConnection, process_id: uuid.UUID, run_id: str, probe: RunProbe) -> Claim:
    """Spec 6.3 claim check under the row lock. Returns the (possibly adopted or reopened) row.

    Raises InternalSignalError(STALE_RUN | JOB_NOT_ACTIVE). A reopen that collides with another active
    job on the same target raises the IntegrityError to the caller (JOB_ALREADY_RUNNING).
    """
    row = await lock_job(conn, process_id)
    if row is None:
        raise InternalSignalError(InternalSignal.JOB_NOT_ACTIVE)
    status = ProcessingStatus(row.status)
    if status in ACTIVE_STATUSES:
        if row.workflow_run_id in (None, run_id) or (await probe()).current:
            if row.workflow_run_id != run_id:
                await conn.execute(update(PS).where(PS.id == process_id).values(workflow_run_id=run_id))
            return Claim(row)
        raise InternalSignalError(InternalSignal.STALE_RUN)
    if status is not ProcessingStatus.COMPLETED and row.workflow_run_id != run_id:
        # Only an operator reset reopens a terminal row: the first run of a job the API cancelled (or whose
        # start failed) while it was PENDING is current too, but must end without writing anything.
        run = await probe()
        if run.current and run.reset:
            await reopen(conn, process_id, status, run_id)
            return Claim(await lock_job(conn, process_id), reopened=True)
    raise InternalSignalError(InternalSignal.JOB_NOT_ACTIVE, status.value)


async def reopen(
    conn: AsyncConnection, process_id: uuid.UUID, previous: ProcessingStatus, run_id: str
) -> Transition | None:
    """Operator reset (spec 6.9): terminal → PROCESSING under the new run."""
    return await transition(
        conn,
        process_id,
        [previous],
        EventType.REOPENED,
        {"previousStatus": previous.value, "workflowRunId": run_id},
        status=ProcessingStatus.PROCESSING,
        error=None,
        error_code=None,
        error_internal=None,
        completed_at=None,
        cancel_requested_at=None,
        cancel_reason=None,
        cancelled_by=None,
        workflow_run_id=run_id,
        reopen_count=PS.reopen_count + 1,
    )
