"""Helpers of the API tests: tokens, seeded goal trees and jobs in given states (through the repository)."""

from __future__ import annotations

import re
import socket
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from cli.token import issue_dev_token
from db.models import Action, Goal, SubGoal, Task, User
from db.repository import JobRepository, NewJob
from db.transitions import RunStatus
from domain.enums import ActionType, EventType, ProcessingStatus, ProcessingType, Scope, TargetType
from domain.errors import AppError, ErrorCode
from domain.generation import ActionItem, GeneratedUnit, GenerationMetadata, SubGoalItem
from domain.workflow_io import FinalizeRequest, PersistUnitRequest, UnitRef
from settings import DEV_JWT_SECRET

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
LOOKS_LIKE_TIME = re.compile(r"^\d{4}-\d\d-\d\d[T ]")
RUN_ID = "run-test"


def closed_port_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"127.0.0.1:{port}"


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


async def _is_current_run() -> RunStatus:
    return RunStatus(current=True)


_TARGET_KEY = {TargetType.GOAL: "goalId", TargetType.SUB_GOAL: "subGoalId", TargetType.ACTION: "actionId"}


class Jobs:
    """Jobs in a given state, written through the repository (the only writer of job state)."""

    def __init__(self, repo: JobRepository) -> None:
        self.repo = repo

    async def pending(
        self,
        user_id: uuid.UUID,
        job_type: ProcessingType = ProcessingType.ACTION_GENERATION,
        target_type: TargetType = TargetType.SUB_GOAL,
        target_id: uuid.UUID | None = None,
        units: list[tuple[uuid.UUID, TargetType]] | None = None,
        created_at: datetime | None = None,
        params: dict[str, Any] | None = None,
    ) -> uuid.UUID:
        target = target_id or uuid.uuid4()
        now = created_at or datetime.now(UTC)
        job = NewJob(
            process_id=uuid.uuid4(),
            user_id=user_id,
            type=job_type,
            target_type=target_type,
            target_id=target,
            params=params or {_TARGET_KEY[target_type]: str(target), "regenerate": False},
            total_units=len(units) if units else 1,
            created_at=now,
            estimated_completion_at=now + timedelta(seconds=180),
            request_id="req-seed",
            units=units or [],
        )
        await self.repo.create_job(job)
        return job.process_id

    async def processing(self, process_id: uuid.UUID, progress: int = 0) -> None:
        await self.repo.mark_processing(process_id, RUN_ID, 600, _is_current_run)
        if progress:
            await self.repo.record_progress(process_id, progress, EventType.PROGRESS, {"stage": "GENERATED"})

    async def finish(
        self,
        process_id: uuid.UUID,
        status: ProcessingStatus,
        error_code: str | None = None,
        details: dict[str, Any] | None = None,
        internal: str = "seeded",
    ) -> None:
        request = FinalizeRequest(
            process_id=process_id, status=status, error_code=error_code, details=details, internal=internal
        )
        result = await self.repo.finalize(request, RUN_ID, _is_current_run)
        assert result.applied

    async def save_unit(
        self, process_id: uuid.UUID, unit: tuple[uuid.UUID, TargetType], ordinal: int, scope: Scope
    ) -> None:
        """persist_unit with 8 generated subgoals (GOAL unit) or 8 actions (SUB_GOAL unit)."""
        meta = GenerationMetadata(provider="offline", model="offline-v1", input_tokens=10, output_tokens=20)
        if unit[1] is TargetType.GOAL:
            items = [SubGoalItem(title=f"サブ{i}", description="説明" * 30, background="") for i in range(8)]
            output = GeneratedUnit(subgoals=items, metadata=meta)
        else:
            acts = [
                ActionItem(title=f"行動{i}", description="説明" * 60, type=ActionType.HABIT) for i in range(8)
            ]
            output = GeneratedUnit(actions=acts, metadata=meta)
        request = PersistUnitRequest(
            process_id=process_id,
            unit=UnitRef(unit_id=unit[0], unit_type=unit[1], ordinal=ordinal),
            scope=scope,
            output=output,
        )
        await self.repo.persist_unit(request, RUN_ID, _is_current_run)

    async def fail_unit(self, process_id: uuid.UUID, unit_id: uuid.UUID, code: ErrorCode) -> None:
        await self.repo.record_unit_failure(process_id, unit_id, AppError(code), RUN_ID, _is_current_run)
