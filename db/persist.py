"""Saving one unit's validated output (spec 3.4–3.6 "Persistence"): children replaced atomically.

Each function runs inside the caller's transaction, after the job row is locked and claimed, and
returns the inserted rows as API-shaped dicts plus the number of rows it replaced.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from db.models import Action, Goal, SubGoal, Task
from domain.enums import ActionType, GoalStatus, TaskStatus
from domain.errors import AppError, ErrorCode
from domain.generation import GeneratedUnit
from domain.items import action_item, subgoal_item, task_item


@dataclass(frozen=True, slots=True)
class Saved:
    items: list[dict[str, Any]]
    deleted: int
    context: dict[str, Any]


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


async def _replace_children(
    conn: AsyncConnection, model: Any, parent_col: Any, parent_id: uuid.UUID, regenerate: bool, target: str
) -> int:
    existing = (
        await conn.execute(select(func.count()).select_from(model).where(parent_col == parent_id))
    ).scalar_one()
    if existing and not regenerate:
        raise AppError(
            ErrorCode.TARGET_HAS_CHILDREN,
            {"targetType": target, "targetId": str(parent_id), "unitsWithChildren": [str(parent_id)]},
        )
    if existing:
        await conn.execute(delete(model).where(parent_col == parent_id))
    return int(existing)


async def save_subgoals(
    conn: AsyncConnection, job: Any, output: GeneratedUnit, process_id: uuid.UUID
) -> Saved:
    params: dict[str, Any] = job.params
    goal_id: uuid.UUID = job.target_id
    goal = (
        await conn.execute(select(Goal.id, Goal.user_id).where(Goal.id == goal_id).with_for_update())
    ).one_or_none()
    fields = {
        "title": params["title"],
        "description": params.get("description"),
        "deadline": datetime.fromisoformat(params["deadline"]) if params.get("deadline") else None,
        "background": params.get("background"),
        "constraints": _text_or_none(params.get("constraints")),
    }
    if goal is None:
        if params.get("goalId"):
            raise AppError(ErrorCode.GOAL_NOT_FOUND)
        await conn.execute(
            insert(Goal).values(
                id=goal_id,
                user_id=job.user_id,
                status=GoalStatus.ACTIVE,
                progress=0,
                created_by_process_id=process_id,
                **fields,
            )
        )
    elif goal.user_id != job.user_id:
        raise AppError(ErrorCode.FORBIDDEN)
    else:
        await conn.execute(update(Goal).where(Goal.id == goal_id).values(updated_at=func.now(), **fields))
    deleted = await _replace_children(
        conn, SubGoal, SubGoal.goal_id, goal_id, bool(params.get("regenerate")), "GOAL"
    )
    rows = (
        await conn.execute(
            insert(SubGoal).returning(SubGoal),
            [
                {
                    "id": uuid.uuid4(),
                    "goal_id": goal_id,
                    "title": item.title,
                    "description": item.description,
                    "background": item.background,
                    "position": pos,
                    "progress": 0,
                    "generated_by_process_id": process_id,
                }
                for pos, item in enumerate(output.subgoals)
            ],
        )
    ).all()
    items = [subgoal_item(r) for r in sorted(rows, key=lambda r: r.position)]
    return Saved(items, deleted, {"goalId": str(goal_id)})


async def _owned_parent(conn: AsyncConnection, stmt: Any, job: Any, missing: ErrorCode) -> Any:
    row = (await conn.execute(stmt)).one_or_none()
    if row is None:
        raise AppError(missing)
    if row.owner != job.user_id:
        raise AppError(ErrorCode.FORBIDDEN)
    return row


async def save_actions(
    conn: AsyncConnection, job: Any, unit_id: uuid.UUID, output: GeneratedUnit, process_id: uuid.UUID
) -> Saved:
    parent = await _owned_parent(
        conn,
        select(SubGoal.id, SubGoal.title, Goal.title.label("goal_title"), Goal.user_id.label("owner"))
        .join(Goal, Goal.id == SubGoal.goal_id)
        .where(SubGoal.id == unit_id)
        .with_for_update(of=SubGoal),
        job,
        ErrorCode.SUBGOAL_NOT_FOUND,
    )
    deleted = await _replace_children(
        conn, Action, Action.sub_goal_id, unit_id, bool(job.params.get("regenerate")), "SUB_GOAL"
    )
    rows = (
        await conn.execute(
            insert(Action).returning(Action),
            [
                {
                    "id": uuid.uuid4(),
                    "sub_goal_id": unit_id,
                    "title": item.title,
                    "description": item.description,
                    "background": item.background,
                    "type": item.type,
                    "position": pos,
                    "progress": 0,
                    "generated_by_process_id": process_id,
                }
                for pos, item in enumerate(output.actions)
            ],
        )
    ).all()
    items = [action_item(r) for r in sorted(rows, key=lambda r: r.position)]
    context = {
        "subGoalId": str(unit_id),
        "goalContext": {"goalTitle": parent.goal_title, "subGoalTitle": parent.title},
    }
    return Saved(items, deleted, context)


async def save_tasks(
    conn: AsyncConnection, job: Any, unit_id: uuid.UUID, output: GeneratedUnit, process_id: uuid.UUID
) -> Saved:
    parent = await _owned_parent(
        conn,
        select(
            Action.id,
            Action.title,
            Action.type,
            SubGoal.title.label("sub_goal_title"),
            Goal.title.label("goal_title"),
            Goal.user_id.label("owner"),
        )
        .join(SubGoal, SubGoal.id == Action.sub_goal_id)
        .join(Goal, Goal.id == SubGoal.goal_id)
        .where(Action.id == unit_id)
        .with_for_update(of=Action),
        job,
        ErrorCode.ACTION_NOT_FOUND,
    )
    action_type = ActionType(parent.type)
    deleted = await _replace_children(
        conn, Task, Task.action_id, unit_id, bool(job.params.get("regenerate")), "ACTION"
    )
    rows = (
        await conn.execute(
            insert(Task).returning(Task),
            [
                {
                    "id": uuid.uuid4(),
                    "action_id": unit_id,
                    "title": item.title,
                    "description": item.description,
                    "type": action_type,
                    "status": TaskStatus.NOT_STARTED,
                    "estimated_minutes": item.estimated_minutes,
                    "priority": item.priority,
                    "position": pos,
                    "depends_on": [d for d in item.depends_on if 0 <= d < pos],
                    "generated_by_process_id": process_id,
                }
                for pos, item in enumerate(output.tasks)
            ],
        )
    ).all()
    items = [task_item(r) for r in sorted(rows, key=lambda r: r.position)]
    context = {
        "actionId": str(unit_id),
        "actionContext": {
            "goalTitle": parent.goal_title,
            "subGoalTitle": parent.sub_goal_title,
            "actionTitle": parent.title,
            "actionType": action_type.value,
        },
        "taskCount": len(items),
        "totalEstimatedMinutes": sum(i["estimatedMinutes"] for i in items),
    }
    return Saved(items, deleted, context)
