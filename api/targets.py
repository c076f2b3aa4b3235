"""Target checks of spec 5.3 (also re-run by a retry, spec 5.5) and the units a new job will process."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncConnection

from api.bodies import Target
from db import reads
from domain.enums import ProcessingType, Scope, TargetType, UnitStatus
from domain.errors import AppError, ErrorCode
from domain.jobs import UNIT_TYPE_BY_JOB

Units = list[tuple[UUID, TargetType]]

NOT_FOUND = {
    TargetType.GOAL: ErrorCode.GOAL_NOT_FOUND,
    TargetType.SUB_GOAL: ErrorCode.SUBGOAL_NOT_FOUND,
    TargetType.ACTION: ErrorCode.ACTION_NOT_FOUND,
}


async def plan_units(
    conn: AsyncConnection,
    user_id: UUID,
    job_type: ProcessingType,
    target: Target,
    target_id: UUID,
    retry_of: UUID | None = None,
) -> Units:
    """Check the target in the order of spec 5.3 and return the units to process.

    ``target_id`` is the job's target (for a SUBGOAL job creating a new goal: its reserved id, which needs
    no check). ``retry_of`` is the parent of a retry: a goal-scope retry processes only its unfinished units.
    """
    unit_type = UNIT_TYPE_BY_JOB[job_type]
    if target.target_id is None:
        return [(target_id, unit_type)]
    owner = await reads.target_owner(conn, target.target_type, target_id)
    if owner is None:
        raise AppError(NOT_FOUND[target.target_type])
    if owner != user_id:
        raise AppError(ErrorCode.FORBIDDEN)
    if target.scope is Scope.TARGET:
        ids = [target_id]
    else:
        ids = await _goal_scope_units(conn, target_id, unit_type, retry_of)
        if not ids:
            raise AppError(ErrorCode.TARGET_NOT_READY)
    if not target.regenerate:
        busy = await reads.units_with_children(conn, unit_type, ids)
        if busy:
            details = {
                "targetType": target.target_type.value,
                "targetId": str(target_id),
                "unitsWithChildren": [str(i) for i in busy],
            }
            raise AppError(ErrorCode.TARGET_HAS_CHILDREN, details)
    return [(i, unit_type) for i in ids]


async def _goal_scope_units(
    conn: AsyncConnection, goal_id: UUID, unit_type: TargetType, retry_of: UUID | None
) -> list[UUID]:
    """The goal's units in order; for a retry, the parent's units that did not succeed and still exist."""
    parent_units = await reads.job_units(conn, retry_of) if retry_of else []
    if not parent_units:
        return await reads.goal_units(conn, goal_id, unit_type)
    unfinished = [u.unit_id for u in parent_units if u.status is not UnitStatus.SUCCEEDED]
    existing = await reads.existing_units(conn, unit_type, unfinished)
    return [i for i in unfinished if i in existing]
