"""Hierarchy conflicts (issue 7): one active job per branch of a goal's tree.

A job rewrites the subtree below its target: a SUBGOAL job on a goal replaces every subgoal (and with
them every action and task), a goal-scope ACTION job every action, an ACTION job on a subgoal that
subgoal's actions, a TASK job an action's tasks. Two jobs can run side by side only when their targets
lie on different branches (two subgoals, an action under one subgoal and another subgoal, two actions).
Whenever one target is the other or one of its ancestors, whatever the two types, the later job is
refused with 409 JOB_ALREADY_RUNNING naming the running one.

The check runs inside the transaction that inserts the job, after a transaction-scoped advisory lock on
the goal: concurrent submissions on one goal take turns, and each sees the rows the others committed.
"""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import func, select, union_all
from sqlalchemy.ext.asyncio import AsyncConnection

from db.models import Action, Goal, ProcessingState, SubGoal
from domain.enums import ACTIVE_STATUSES, TargetType
from domain.errors import AppError, ErrorCode

PS = ProcessingState
LOCK_NAMESPACE = 0x6D616E64  # "mand": the first key of every advisory lock this module takes


async def target_path(conn: AsyncConnection, target_type: TargetType, target_id: UUID) -> list[UUID]:
    """The target's ancestors and itself, goal first; empty when the target does not exist (the reserved
    id of a goal a SUBGOAL job is still to create)."""
    if target_type is TargetType.GOAL:
        found = await conn.execute(select(Goal.id).where(Goal.id == target_id))
    elif target_type is TargetType.SUB_GOAL:
        found = await conn.execute(select(SubGoal.goal_id, SubGoal.id).where(SubGoal.id == target_id))
    else:
        found = await conn.execute(
            select(SubGoal.goal_id, SubGoal.id, Action.id)
            .join(Action, Action.sub_goal_id == SubGoal.id)
            .where(Action.id == target_id)
        )
    row = found.one_or_none()
    return [] if row is None else list(row)


async def refuse_conflicting_jobs(
    conn: AsyncConnection,
    user_id: UUID,
    target_type: TargetType,
    target_id: UUID,
    retry_of: UUID | None = None,
) -> None:
    """Raise JOB_ALREADY_RUNNING when an active job of ``user_id`` targets the new job's target, one of
    its ancestors or one of its descendants. Call it inside the inserting transaction.

    For a retry (``retry_of``), an active sibling is the concurrent retry that won: ALREADY_RETRIED
    (spec 5.5), as when the ``uq_ps_parent`` index decides the race."""
    path = await target_path(conn, target_type, target_id)
    if not path:
        return
    await conn.execute(select(func.pg_advisory_xact_lock(LOCK_NAMESPACE, lock_key(path[0]))))
    # The tree below the target, whatever its level (ids are unique across tables, so the selects that do
    # not fit the target's level find nothing): a goal's subgoals and actions, a subgoal's actions.
    below = [
        select(SubGoal.id).where(SubGoal.goal_id == path[-1]),
        select(Action.id).join(SubGoal, Action.sub_goal_id == SubGoal.id).where(SubGoal.goal_id == path[-1]),
        select(Action.id).where(Action.sub_goal_id == path[-1]),
    ]
    related = PS.target_id.in_(path) | PS.target_id.in_(union_all(*below).scalar_subquery())
    stmt = (
        select(PS.id, PS.parent_process_id)
        .where(PS.user_id == user_id, PS.status.in_(list(ACTIVE_STATUSES)), related)
        .order_by(PS.created_at)
    )
    running = (await conn.execute(stmt)).all()
    for job in running:
        if retry_of is not None and job.parent_process_id == retry_of:
            raise AppError(ErrorCode.ALREADY_RETRIED, {"childProcessId": str(job.id)})
    if running:
        raise AppError(ErrorCode.JOB_ALREADY_RUNNING, {"processId": str(running[0].id)})


def lock_key(goal_id: UUID) -> int:
    """The advisory lock's second key: a signed 32-bit slice of the goal id (a collision only makes two
    goals take turns)."""
    return int.from_bytes(goal_id.bytes[:4], "big", signed=True)
