"""Jobs for the tests: users and params, jobs started the way the API starts them and run by the real
worker, jobs put in a given state through the repository, and their rows read back."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.worker import Worker

from ai.factory import build_provider
from api.launch import launch, new_job
from db.models import User
from db.repository import JobRepository
from db.transitions import RunStatus
from db.users import Identity
from domain.enums import ActionType, EventType, ProcessingStatus, ProcessingType, Scope, TargetType
from domain.errors import AppError, ErrorCode
from domain.generation import ActionItem, GeneratedUnit, GenerationMetadata, SubGoalItem
from domain.jobs import UNIT_TYPE_BY_JOB, NewJob
from domain.workflow_io import FinalizeRequest, PersistUnitRequest, UnitRef, WorkflowSummary
from settings import Settings
from tests.support.servers import REPO_ROOT
from worker import build_worker

Handle = WorkflowHandle[Any, WorkflowSummary]


async def make_user(engine: AsyncEngine, subject: str | None = None) -> uuid.UUID:
    user_id = uuid.uuid4()
    async with engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO users (id, issuer, subject) VALUES (:id, '', :sub)"),
            {"id": user_id, "sub": subject or f"user-{user_id}"},
        )
    return user_id


def subgoal_params(title: str = "TypeScriptのエキスパートになる", **extra: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "title": title,
        "description": "型システムと設計を深く理解し、チームで指導できる水準になる",
        "deadline": (datetime.now(UTC) + timedelta(days=90)).isoformat(),
        "background": "フロントエンド開発を3年担当している",
        "constraints": "平日は1日1時間まで",
    }
    params.update(extra)
    return params


def subgoal_body(**params: Any) -> dict[str, Any]:
    """A POST /generate body for a SUBGOAL job; a param given as None is left out."""
    merged = subgoal_params(**params)
    return {"type": "SUBGOAL_GENERATION", "params": {k: v for k, v in merged.items() if v is not None}}


@asynccontextmanager
async def running_worker(client: Client, settings: Settings, repo: JobRepository) -> AsyncIterator[Worker]:
    provider = build_provider(settings)
    worker = build_worker(client, settings, repo, provider)
    async with worker:
        yield worker
    await provider.aclose()


async def start_job(
    repo: JobRepository,
    client: Client,
    settings: Settings,
    user_id: uuid.UUID,
    job_type: ProcessingType,
    target_type: TargetType,
    target_id: uuid.UUID,
    params: dict[str, Any],
    units: list[uuid.UUID] | None = None,
    parent: uuid.UUID | None = None,
) -> tuple[uuid.UUID, Handle]:
    """Create the job (with its plan: ``units``, else the target) and start its workflow with the API's
    own code; ``parent`` makes it a retry of that job."""
    parent_row = await repo.get_job(parent) if parent else None
    unit_type = UNIT_TYPE_BY_JOB[job_type]
    job = new_job(
        settings,
        user_id=user_id,
        job_type=job_type,
        params=params,
        target_type=target_type,
        target_id=target_id,
        units=[(u, unit_type) for u in units or [target_id]],
        request_id=None,
        parent=parent_row,
    )

    async def connected() -> Client:
        return client

    async with repo.engine.connect() as conn:
        owner = (await conn.execute(select(User.issuer, User.subject).where(User.id == user_id))).one()
    return job.process_id, await launch(repo, connected, settings, job, Identity(*owner))


async def start_subgoal_job(
    repo: JobRepository,
    client: Client,
    settings: Settings,
    user_id: uuid.UUID,
    params: dict[str, Any] | None = None,
    target_id: uuid.UUID | None = None,
) -> tuple[uuid.UUID, Handle]:
    return await start_job(
        repo,
        client,
        settings,
        user_id,
        ProcessingType.SUBGOAL_GENERATION,
        TargetType.GOAL,
        target_id or uuid.uuid4(),
        params or subgoal_params(),
    )


async def run_failing_subgoal_job(
    repo: JobRepository, client: Client, settings: Settings, worker_for: Any, directive: str
) -> uuid.UUID:
    """Run a SUBGOAL job whose title carries an offline fault ``directive``; its workflow must fail."""
    user = await make_user(repo.engine)
    async with worker_for(settings):
        process_id, handle = await start_subgoal_job(
            repo, client, settings, user, subgoal_params(f"{directive} 学習計画")
        )
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    return process_id


async def wait_status(repo: JobRepository, process_id: uuid.UUID, status: str, seconds: float = 10.0) -> None:
    """Poll the row until it has ``status`` (fails the test after ``seconds``)."""
    for _ in range(int(seconds / 0.05)):
        job = await repo.get_job(process_id)
        if job is not None and job.status == status:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{process_id} never became {status}")


async def rows(repo: JobRepository, sql: str, **params: Any) -> list[Any]:
    async with repo.engine.connect() as conn:
        return list((await conn.execute(text(sql), params)).all())


async def events(repo: JobRepository, process_id: uuid.UUID) -> list[Any]:
    return await rows(
        repo,
        "SELECT seq, type, status, progress, payload FROM processing_events WHERE process_id=:p ORDER BY seq",
        p=process_id,
    )


async def record_history(name: str, handle: Handle) -> None:
    """With RECORD_HISTORIES=1, keep this run's history as a replay fixture in tests/histories/."""
    if os.environ.get("RECORD_HISTORIES") != "1":
        return
    history = await handle.fetch_history()
    (REPO_ROOT / "tests" / "histories" / f"{name}.json").write_text(history.to_json(), encoding="utf-8")


RUN_ID = "run-test"


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
