"""Context loading for the unit pipeline (spec 3.1 step 2): read from Postgres on every attempt."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from db.models import Action, Goal, SubGoal, User
from domain import prompt_context as pc
from domain.enums import ActionType
from domain.errors import AppError, ErrorCode


def _goal(row: Any) -> pc.GoalContext:
    return pc.GoalContext(
        title=row.title,
        description=row.description,
        deadline=row.deadline,
        background=row.background,
        constraints=row.constraints,
    )


def _subgoal(row: Any) -> pc.SubGoalContext:
    return pc.SubGoalContext(
        title=row.title, description=row.description, background=row.background, position=row.position
    )


async def _user(conn: Any, user_id: uuid.UUID) -> pc.UserContext:
    row = (await conn.execute(select(User.industry, User.job_type).where(User.id == user_id))).one_or_none()
    if row is None:
        return pc.UserContext()
    return pc.UserContext(industry=row.industry.value if row.industry else None, job_type=row.job_type)


def _owned(row: Any, user_id: uuid.UUID, missing: ErrorCode) -> Any:
    if row is None:
        raise AppError(missing)
    if row.user_id != user_id:
        raise AppError(ErrorCode.FORBIDDEN)
    return row


async def load_context(
    engine: AsyncEngine, job: Any, unit_id: uuid.UUID, timezone: str
) -> tuple[pc.PromptContext, ActionType | None]:
    """The prompt context of one unit (and, for tasks, the parent action's type)."""
    async with engine.connect() as conn:
        user = await _user(conn, job.user_id)
        job_type = str(job.type)
        if job_type == "SUBGOAL_GENERATION":
            p = job.params
            goal = pc.GoalContext(
                title=p["title"],
                description=p.get("description"),
                deadline=datetime.fromisoformat(p["deadline"]) if p.get("deadline") else None,
                background=p.get("background"),
                constraints=p.get("constraints") or None,
            )
            if p.get("goalId"):
                owner = (
                    await conn.execute(select(Goal.user_id).where(Goal.id == job.target_id))
                ).one_or_none()
                _owned(owner, job.user_id, ErrorCode.GOAL_NOT_FOUND)
            return pc.SubGoalPromptContext(goal=goal, user=user, timezone=timezone), None
        if job_type == "ACTION_GENERATION":
            sub = (await conn.execute(select(SubGoal).where(SubGoal.id == unit_id))).one_or_none()
            if sub is None:
                raise AppError(ErrorCode.SUBGOAL_NOT_FOUND)
            goal_row = _owned(
                (await conn.execute(select(Goal).where(Goal.id == sub.goal_id))).one_or_none(),
                job.user_id,
                ErrorCode.GOAL_NOT_FOUND,
            )
            siblings = (
                await conn.execute(
                    select(SubGoal)
                    .where(SubGoal.goal_id == sub.goal_id, SubGoal.id != unit_id)
                    .order_by(SubGoal.position)
                )
            ).all()
            ctx = pc.ActionPromptContext(
                goal=_goal(goal_row),
                subgoal=_subgoal(sub),
                siblings=[_subgoal(s) for s in siblings],
                user=user,
                timezone=timezone,
            )
            return ctx, None
        action = (await conn.execute(select(Action).where(Action.id == unit_id))).one_or_none()
        if action is None:
            raise AppError(ErrorCode.ACTION_NOT_FOUND)
        sub = (await conn.execute(select(SubGoal).where(SubGoal.id == action.sub_goal_id))).one()
        goal_row = _owned(
            (await conn.execute(select(Goal).where(Goal.id == sub.goal_id))).one_or_none(),
            job.user_id,
            ErrorCode.GOAL_NOT_FOUND,
        )
        action_type = ActionType(action.type)
        task_ctx = pc.TaskPromptContext(
            goal=_goal(goal_row),
            subgoal=_subgoal(sub),
            action=pc.ActionContext(
                title=action.title,
                description=action.description,
                background=action.background,
                type=action_type,
            ),
            user=user,
            timezone=timezone,
        )
        return task_ctx, action_type
