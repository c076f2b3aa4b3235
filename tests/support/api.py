"""Helpers of the API tests: the app in-process, tokens, response checks, seeded goal trees and jobs in
given states (written through the repository)."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from api.app import create_app
from api.dev_tokens import issue_dev_token
from db.models import Action, Goal, SubGoal, Task, User
from domain.enums import ActionType
from settings import DEV_JWT_SECRET, Settings

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
LOOKS_LIKE_TIME = re.compile(r"^\d{4}-\d\d-\d\d[T ]")


# The fields of a 202 answer; a retry's answer adds its lineage.
ACCEPTED_KEYS = frozenset(
    {
        "processId",
        "status",
        "type",
        "targetType",
        "targetId",
        "scope",
        "totalUnits",
        "createdAt",
        "estimatedCompletionTime",
    }
)
RETRY_ACCEPTED_KEYS = ACCEPTED_KEYS | {"retryCount", "originalProcessId", "rootProcessId"}


@asynccontextmanager
async def serve(
    settings: Settings, extend: Callable[[FastAPI], None] | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """One app instance (with its own lifespan: engine, Temporal connection, caches) and a client for it."""
    app = create_app(settings)
    if extend is not None:
        extend(app)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
            yield http


def bearer(sub: str, secret: str = DEV_JWT_SECRET, **kwargs: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_dev_token(sub, secret, **kwargs)}"}


def assert_timestamps(value: Any) -> int:
    """Every date-time string anywhere in ``value`` has the API format; returns how many were seen."""
    if isinstance(value, dict):
        return sum(assert_timestamps(v) for v in value.values())
    if isinstance(value, list):
        return sum(assert_timestamps(v) for v in value)
    if isinstance(value, str) and LOOKS_LIKE_TIME.match(value):
        assert TIMESTAMP.match(value), value
        return 1
    return 0


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"success", "error"}, body
    assert body["success"] is False
    assert set(body["error"]) <= {"code", "message", "retryable", "details"}
    assert {"code", "message", "retryable"} <= set(body["error"])
    assert body["error"]["code"] == code, body
    error: dict[str, Any] = body["error"]
    return error


def field_messages(response: httpx.Response) -> dict[str, str]:
    return {f["field"]: f["message"] for f in response.json()["error"]["details"]["fields"]}


async def user_id_of(engine: AsyncEngine, subject: str, issuer: str = "") -> uuid.UUID:
    async with engine.connect() as conn:
        stmt = select(User.id).where(User.subject == subject, User.issuer == issuer)
        return (await conn.execute(stmt)).scalar_one()


async def ensure_user(engine: AsyncEngine, subject: str) -> uuid.UUID:
    """The internal id of ``subject``, creating the row as the API would."""
    async with engine.begin() as conn:
        existing = (await conn.execute(select(User.id).where(User.subject == subject))).scalar_one_or_none()
        if existing:
            return existing
        new_id = uuid.uuid4()
        await conn.execute(insert(User).values(id=new_id, issuer="", subject=subject))
        return new_id


@dataclass
class Tree:
    goal_id: uuid.UUID
    subgoal_ids: list[uuid.UUID] = field(default_factory=list)
    action_ids: list[uuid.UUID] = field(default_factory=list)  # by subgoal position, then action position
    task_ids: list[uuid.UUID] = field(default_factory=list)


async def seed_tree(
    engine: AsyncEngine, owner: uuid.UUID, subgoals: int = 0, actions: int = 0, tasks: int = 0
) -> Tree:
    """A goal with ``subgoals`` subgoals, each with ``actions`` actions, each with ``tasks`` tasks.

    Rows are inserted in reverse position order, so a correct read has to sort them."""
    tree = Tree(uuid.uuid4())
    subgoal_rows, action_rows, task_rows = [], [], []
    for s in range(subgoals):
        sid = uuid.uuid4()
        tree.subgoal_ids.append(sid)
        subgoal_rows.append(
            {"id": sid, "goal_id": tree.goal_id, "title": f"サブ{s}", "description": "d", "position": s}
        )
        for a in range(actions):
            aid = uuid.uuid4()
            tree.action_ids.append(aid)
            kind = ActionType.HABIT if a % 2 else ActionType.EXECUTION
            action_rows.append(
                {
                    "id": aid,
                    "sub_goal_id": sid,
                    "title": f"A{s}-{a}",
                    "description": "d",
                    "type": kind,
                    "position": a,
                }
            )
            for t in range(tasks):
                tid = uuid.uuid4()
                tree.task_ids.append(tid)
                task_rows.append(
                    {
                        "id": tid,
                        "action_id": aid,
                        "title": f"T{s}-{a}-{t}",
                        "type": kind,
                        "estimated_minutes": 30 + t,
                        "position": t,
                        "depends_on": list(range(t)),
                    }
                )
    async with engine.begin() as conn:
        await conn.execute(
            insert(Goal).values(
                id=tree.goal_id,
                user_id=owner,
                title="目標",
                description="説明",
                deadline=datetime(2030, 1, 1, 9, tzinfo=UTC),
                background="背景",
            )
        )
        for model, rows in ((SubGoal, subgoal_rows), (Action, action_rows), (Task, task_rows)):
            if rows:
                await conn.execute(insert(model), list(reversed(rows)))
    return tree
