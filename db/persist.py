"""Saving one unit's validated output (spec 3.4–3.6 "Persistence"): children replaced atomically.

Each saver runs inside the caller's transaction, after the job row is locked and claimed, and returns
the inserted rows as API-shaped dicts plus the number of rows it replaced.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from db.models import Action, Goal, SubGoal, Task
from domain.enums import ActionType, GoalStatus, ProcessingType, TaskStatus
from domain.errors import AppError, ErrorCode
from domain.generation import GeneratedUnit
from domain.items import action_item, subgoal_item, task_item


@dataclass(frozen=True, slots=True)
class Saved:
    items: list[dict[str, Any]]
    deleted: int
    context: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Children:
    """A kind of generated row: its table, the key to its parent, the parent's target type, its API shape."""

    model: Any
    parent_key: Any
    parent_type: str
    shape: Callable[[Any], dict[str, Any]]


_SUBGOALS = _Children(SubGoal, SubGoal.goal_id, "GOAL", subgoal_item)
_ACTIONS = _Children(Action, Action.sub_goal_id, "SUB_GOAL", action_item)
_TASKS = _Children(Task, Task.action_id, "ACTION", task_item)


async def _replace_children(
    conn: AsyncConnection, kind: _Children, job: Any, parent_id: uuid.UUID, fields: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], int]:
    """Replace the parent's children with one row per generated item, in output order.

    Existing children are deleted only when the job regenerates; otherwise they refuse the save with
    TARGET_HAS_CHILDREN. Returns the new rows (API shape, by position) and how many were deleted.
    """
    existing = int(
        (
            await conn.execute(
                select(func.count()).select_from(kind.model).where(kind.parent_key == parent_id)
            )
        ).scalar_one()
    )
    if existing and not job.params.get("regenerate"):
        raise AppError(
            ErrorCode.TARGET_HAS_CHILDREN,
            {
                "targetType": kind.parent_type,
                "targetId": str(parent_id),
                "unitsWithChildren": [str(parent_id)],
            },
        )
    if existing:
        await conn.execute(delete(kind.model).where(kind.parent_key == parent_id))
    rows = [
        {
            "id": uuid.uuid4(),
            kind.parent_key.key: parent_id,
            "position": pos,
            "generated_by_process_id": job.id,
            **item,
        }
        for pos, item in enumerate(fields)
    ]
    inserted = (await conn.execute(insert(kind.model).returning(kind.model), rows)).all()
    return [kind.shape(r) for r in sorted(inserted, key=lambda r: r.position)], existing


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


async def save_subgoals(conn: AsyncConnection, job: Any, unit_id: uuid.UUID, output: GeneratedUnit) -> Saved:
    """The unit is the goal itself (the job's target): created from the job's params, or updated."""
    params: dict[str, Any] = job.params
    goal_id = unit_id
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
                created_by_process_id=job.id,
                **fields,
            )
        )
    elif goal.user_id != job.user_id:
        raise AppError(ErrorCode.FORBIDDEN)
    else:
        await conn.execute(update(Goal).where(Goal.id == goal_id).values(updated_at=func.now(), **fields))
    items, deleted = await _replace_children(
        conn,
        _SUBGOALS,
        job,
        goal_id,
        [
            {"title": s.title, "description": s.description, "background": s.background, "progress": 0}
            for s in output.subgoals
        ],
    )
    return Saved(items, deleted, {"goalId": str(goal_id)})


async def _owned_parent(conn: AsyncConnection, stmt: Any, job: Any, missing: ErrorCode) -> Any:
    row = (await conn.execute(stmt)).one_or_none()
    if row is None:
        raise AppError(missing)
    if row.owner != job.user_id:
        raise AppError(ErrorCode.FORBIDDEN)
    return row


async def save_actions(conn: AsyncConnection, job: Any, unit_id: uuid.UUID, output: GeneratedUnit) -> Saved:
    parent = await _owned_parent(
        conn,
        select(SubGoal.id, SubGoal.title, Goal.title.label("goal_title"), Goal.user_id.label("owner"))
        .join(Goal, Goal.id == SubGoal.goal_id)
        .where(SubGoal.id == unit_id)
        .with_for_update(of=SubGoal),
        job,
        ErrorCode.SUBGOAL_NOT_FOUND,
    )
    items, deleted = await _replace_children(
        conn,
        _ACTIONS,
        job,
        unit_id,
        [
            {
                "title": a.title,
                "description": a.description,
                "background": a.background,
                "type": a.type,
                "progress": 0,
            }
            for a in output.actions
        ],
    )
    context = {
        "subGoalId": str(unit_id),
        "goalContext": {"goalTitle": parent.goal_title, "subGoalTitle": parent.title},
    }
    return Saved(items, deleted, context)


async def save_tasks(conn: AsyncConnection, job: Any, unit_id: uuid.UUID, output: GeneratedUnit) -> Saved:
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
    items, deleted = await _replace_children(
        conn,
        _TASKS,
        job,
        unit_id,
        [
            {
                "title": t.title,
                "description": t.description,
                "type": action_type,
                "status": TaskStatus.NOT_STARTED,
                "estimated_minutes": t.estimated_minutes,
                "priority": t.priority,
                "depends_on": [d for d in t.depends_on if 0 <= d < pos],
            }
            for pos, t in enumerate(output.tasks)
        ],
    )
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


SAVERS = {
    ProcessingType.SUBGOAL_GENERATION: save_subgoals,
    ProcessingType.ACTION_GENERATION: save_actions,
    ProcessingType.TASK_GENERATION: save_tasks,
}
