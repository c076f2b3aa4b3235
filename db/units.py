"""Unit bookkeeping in processing_units: what a job still has to process and how each unit ended.

Every function runs inside the caller's transaction.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy import exists, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from db.models import Action, ProcessingEvent, SubGoal
from db.models import ProcessingUnit as PU
from db.persist import Saved
from domain.enums import EventType, ProcessingType, UnitStatus
from domain.errors import AppError
from domain.jobs import is_goal_scope
from domain.workflow_io import PersistUnitRequest

log = logging.getLogger("db.units")


async def plannable_units(conn: AsyncConnection, job: Any) -> list[Any]:
    """The job's units in ordinal order, without goal-scope units whose target row has disappeared since
    the API planned them (unless already saved); each dropped unit logs ``unit_dropped``."""
    units = list((await conn.execute(select(PU).where(PU.process_id == job.id).order_by(PU.ordinal))).all())
    if not is_goal_scope(job):
        return units
    model = SubGoal if job.type == ProcessingType.ACTION_GENERATION else Action
    alive = set(
        (await conn.execute(select(model.id).where(model.id.in_([u.unit_id for u in units])))).scalars()
    )

    def kept(unit: Any) -> bool:
        return unit.unit_id in alive or unit.status == UnitStatus.SUCCEEDED

    for gone in (u for u in units if not kept(u)):
        log.info(
            "unit dropped from plan",
            extra={"event": "unit_dropped", "processId": str(job.id), "unitId": str(gone.unit_id)},
        )
    return [u for u in units if kept(u)]


async def succeeded_unit(conn: AsyncConnection, process_id: uuid.UUID, unit_id: uuid.UUID) -> Any:
    """The unit's row if it was saved, else None."""
    stmt = select(PU).where(
        PU.process_id == process_id, PU.unit_id == unit_id, PU.status == UnitStatus.SUCCEEDED
    )
    return (await conn.execute(stmt)).one_or_none()


async def mark_unit_succeeded(conn: AsyncConnection, req: PersistUnitRequest, saved: Saved) -> None:
    meta = req.output.metadata
    values = {
        "status": UnitStatus.SUCCEEDED,
        "created_count": len(saved.items),
        "deleted_count": saved.deleted,
        "generation_attempts": meta.generation_attempts,
        "input_tokens": meta.input_tokens,
        "output_tokens": meta.output_tokens,
        "error": None,
        "finished_at": func.now(),
        "updated_at": func.now(),
    }
    unit = req.unit
    stmt = pg_insert(PU).values(
        process_id=req.process_id,
        unit_id=unit.unit_id,
        unit_type=unit.unit_type,
        ordinal=unit.ordinal,
        **values,
    )
    await conn.execute(stmt.on_conflict_do_update(index_elements=[PU.process_id, PU.unit_id], set_=values))


async def mark_unit_failed(
    conn: AsyncConnection, process_id: uuid.UUID, unit_id: uuid.UUID, error: AppError
) -> None:
    """FAILED with its final code; a unit already saved stays SUCCEEDED."""
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


async def failure_recorded(conn: AsyncConnection, process_id: uuid.UUID, unit_id: uuid.UUID) -> bool:
    """Whether the unit's failure is already on record for the job's current opening: a UNIT_FAILED event
    for it after the job was last started or reopened. True for a repeat of record_unit_failure whose first
    attempt committed but whose completion was lost; False for the failure of a unit a reset run retried."""
    ev = ProcessingEvent
    opened = (
        select(func.max(ev.seq))
        .where(ev.process_id == process_id, ev.type.in_([EventType.STARTED, EventType.REOPENED]))
        .scalar_subquery()
    )
    recorded = exists().where(
        ev.process_id == process_id,
        ev.type == EventType.UNIT_FAILED,
        ev.payload["unitId"].astext == str(unit_id),
        ev.seq > func.coalesce(opened, 0),
    )
    return bool((await conn.execute(select(recorded))).scalar_one())


async def goal_scope_progress(conn: AsyncConnection, process_id: uuid.UUID) -> int:
    """Spec 6.5: min(floor(100 × done / total), 99), where done counts the units saved or failed for good."""
    total, done = (
        await conn.execute(
            select(func.count(), func.count().filter(PU.status != UnitStatus.PENDING)).where(
                PU.process_id == process_id
            )
        )
    ).one()
    return min(100 * done // max(total, 1), 99)


async def all_units_succeeded(conn: AsyncConnection, process_id: uuid.UUID) -> bool:
    pending = (
        await conn.execute(
            select(func.count()).where(PU.process_id == process_id, PU.status != UnitStatus.SUCCEEDED)
        )
    ).scalar_one()
    return bool(pending == 0)
