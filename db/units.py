"""Unit bookkeeping in processing_units: what a job still has to process and how each unit ended.

Every function runs inside the caller's transaction.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, cast

from sqlalchemy import Table, bindparam, exists, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from db.models import Action, ProcessingEvent, ProcessingState, SubGoal
from db.models import ProcessingUnit as PU
from db.persist import Saved
from db.transitions import PST
from domain.enums import EventType, ProcessingType, UnitStatus
from domain.errors import AppError
from domain.jobs import is_goal_scope
from domain.workflow_io import PersistUnitRequest

log = logging.getLogger("db.units")
PUT = cast(Table, PU.__table__)
_UNITS = select(PUT).where(PUT.c.process_id == bindparam("process_id")).order_by(PUT.c.ordinal)
_SUCCEEDED = select(PUT).where(
    PUT.c.process_id == bindparam("process_id"),
    PUT.c.unit_id == bindparam("unit_id"),
    PUT.c.status == UnitStatus.SUCCEEDED,
)
_SUCCEEDED_VALUES: dict[str, Any] = {
    "status": UnitStatus.SUCCEEDED,
    "created_count": bindparam("created_count"),
    "deleted_count": bindparam("deleted_count"),
    "generation_attempts": bindparam("generation_attempts"),
    "input_tokens": bindparam("input_tokens"),
    "output_tokens": bindparam("output_tokens"),
    "error": None,
    "finished_at": func.now(),
    "updated_at": func.now(),
}
_MARK_SUCCEEDED = (
    pg_insert(PUT)
    .values(
        process_id=bindparam("process_id"),
        unit_id=bindparam("unit_id"),
        unit_type=bindparam("unit_type"),
        ordinal=bindparam("ordinal"),
        **_SUCCEEDED_VALUES,
    )
    .on_conflict_do_update(index_elements=[PUT.c.process_id, PUT.c.unit_id], set_=_SUCCEEDED_VALUES)
)


_LOCK_WITH_UNIT = (
    select(
        PST,
        exists()
        .where(
            PUT.c.process_id == PST.c.id,
            PUT.c.unit_id == bindparam("unit_id"),
            PUT.c.status == UnitStatus.SUCCEEDED,
        )
        .label("unit_saved"),
    )
    .where(PST.c.id == bindparam("process_id"))
    .with_for_update(of=PST)
)


async def lock_job_and_unit(
    conn: AsyncConnection, process_id: uuid.UUID, unit_id: uuid.UUID
) -> tuple[Any, bool]:
    """``lock_job`` and whether the unit is already saved, in one round trip: (the job row, or None, and
    the flag). The row carries ``unit_saved`` besides the job's columns (``job_of`` drops it)."""
    row = (await conn.execute(_LOCK_WITH_UNIT, {"process_id": process_id, "unit_id": unit_id})).one_or_none()
    return row, bool(row is not None and row.unit_saved)


def job_of(row: Any) -> ProcessingState:
    """The job of a row that holds all its columns (and maybe more)."""
    return ProcessingState(**{name: row._mapping[name] for name in PST.c.keys()})


async def plannable_units(conn: AsyncConnection, job: Any) -> list[Any]:
    """The job's units in ordinal order, without goal-scope units whose target row has disappeared since
    the API planned them (unless already saved); each dropped unit logs ``unit_dropped``."""
    units = list((await conn.execute(_UNITS, {"process_id": job.id})).all())
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
    return (await conn.execute(_SUCCEEDED, {"process_id": process_id, "unit_id": unit_id})).one_or_none()


async def mark_unit_succeeded(conn: AsyncConnection, req: PersistUnitRequest, saved: Saved) -> None:
    meta, unit = req.output.metadata, req.unit
    await conn.execute(
        _MARK_SUCCEEDED,
        {
            "process_id": req.process_id,
            "unit_id": unit.unit_id,
            "unit_type": unit.unit_type,
            "ordinal": unit.ordinal,
            "created_count": len(saved.items),
            "deleted_count": saved.deleted,
            "generation_attempts": meta.generation_attempts,
            "input_tokens": meta.input_tokens,
            "output_tokens": meta.output_tokens,
        },
    )


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
