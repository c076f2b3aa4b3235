"""What the control and recovery benchmarks run against: an embedded PostgreSQL and a file-backed Temporal
dev server (as `mandala dev` runs them), the API as its own process, and helpers to start jobs and watch
rows."""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import exc as sa_exc
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

from api.dev_tokens import issue_dev_token
from bench.costs import Meter, ProcessGroup, process_cpu, tree_cpu
from cli.postgres import EmbeddedPostgres
from cli.processes import ManagedProcess
from cli.temporal_server import DevTemporalServer
from db.migrate import upgrade_head
from db.models import ProcessingState
from settings import DEV_JWT_SECRET, Settings
from temporal_client import connect_temporal, temporal_env

GENERATE = "/api/ai/async/generate"
ROOT = Path(__file__).resolve().parents[1]
API_SETTINGS = (
    "database_url",
    "temporal_address",
    "temporal_task_queue",
    "rate_limit_write_per_minute",
    "rate_limit_read_per_minute",
    "log_level",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Services:
    workdir: Path
    postgres: EmbeddedPostgres
    temporal: DevTemporalServer

    def meter(self, engine: AsyncEngine, **groups: ProcessGroup) -> Meter:
        """A cost meter over this process, the Temporal server, PostgreSQL and ``groups``."""
        assert self.temporal.metrics_url and self.temporal.pid and self.postgres.pid
        return Meter(
            engine,
            self.temporal.metrics_url,
            {
                "this process": process_cpu(),
                **groups,
                "Temporal server": process_cpu(self.temporal.pid),
                "PostgreSQL": tree_cpu(self.postgres.pid),
            },
        )

    def settings(self, **overrides: Any) -> Settings:
        """The shipped defaults, pointed at these services, on a task queue of their own."""
        values: dict[str, Any] = {
            "database_url": self.postgres.url(),
            "temporal_address": self.temporal.address,
            "temporal_task_queue": f"bench-{uuid.uuid4()}",
            "metrics_enabled": False,
            "schedules_enabled": False,
            "rate_limit_write_per_minute": 1_000_000,
            "rate_limit_read_per_minute": 1_000_000,
            "log_level": "WARN",
        }
        return Settings(**(values | overrides))


def quiet_worker_env(ai_ms: int) -> dict[str, str]:
    """A worker's environment for a benchmark: the offline AI answering after ``ai_ms``, no metrics
    endpoint, no Schedules, warnings only."""
    return {
        "AI_OFFLINE_LATENCY_MS": str(ai_ms),
        "METRICS_ENABLED": "false",
        "SCHEDULES_ENABLED": "false",
        "LOG_LEVEL": "WARN",
    }


class Workers:
    """Worker processes on one task queue, started the way an operator would (`python worker.py`), with
    ``env`` over the settings' connections."""

    def __init__(self, svc: Services, settings: Settings, env: Mapping[str, str]) -> None:
        self._svc = svc
        self._settings = settings
        self._env = {
            **os.environ,
            "DATABASE_URL": settings.database_url,
            **temporal_env(settings),
            "TEMPORAL_TASK_QUEUE": settings.temporal_task_queue,
            **env,
        }
        self.processes: list[ManagedProcess] = []

    def start(self) -> ManagedProcess:
        process = ManagedProcess(
            "worker",
            [sys.executable, "worker.py"],
            cwd=ROOT,
            env=self._env,
            log_path=self.log_path(len(self.processes)),
        )
        self.processes.append(process)
        return process

    def log_path(self, index: int) -> Path:
        return self._svc.workdir / f"worker-{index}.log"

    async def polling(self, count: int) -> None:
        """Wait until ``count`` workers poll the activity queue."""
        client = await connect_temporal(self._settings)
        request = DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=self._settings.temporal_task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
        )
        while True:
            if len((await client.workflow_service.describe_task_queue(request)).pollers) >= count:
                return
            await asyncio.sleep(0.2)

    def stop(self) -> None:
        for process in self.processes:
            process.stop()


@asynccontextmanager
async def services() -> AsyncIterator[Services]:
    workdir = Path(tempfile.mkdtemp(prefix="mandala-bench-"))
    postgres = EmbeddedPostgres(workdir / "postgres", port=free_port())
    temporal = DevTemporalServer(
        workdir / "temporal", port=free_port(), ui_port=free_port(), headless=True, metrics_port=free_port()
    )
    await asyncio.to_thread(postgres.start)
    await asyncio.to_thread(temporal.start)
    try:
        await asyncio.to_thread(upgrade_head, postgres.url())
        yield Services(workdir, postgres, temporal)
    finally:
        await asyncio.to_thread(temporal.stop)
        await asyncio.to_thread(postgres.stop)
        shutil.rmtree(workdir, ignore_errors=True)


async def until_healthy(http: httpx.AsyncClient, attempts: int = 300) -> None:
    """Wait until the API process answers GET /health (0.1 s between tries)."""
    for _ in range(attempts):
        try:
            if (await http.get("/health")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)


def uvicorn_api(
    port: int, env: Mapping[str, str], log_path: Path, workers: int = 1, app: str = "api.asgi:app"
) -> ManagedProcess:
    """The API (or another ASGI ``app``) as its own uvicorn process on ``port`` (``workers`` processes
    sharing it), configured by ``env``."""
    args = [app, "--port", str(port), "--no-access-log", "--workers", str(workers)]
    return ManagedProcess(
        "api",
        [sys.executable, "-m", "uvicorn", *args],
        cwd=ROOT,
        env=env,
        log_path=log_path,
    )


@asynccontextmanager
async def api(
    settings: Settings, workers: int = 1, limits: httpx.Limits | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """The API as its own uvicorn process (``workers`` processes, as deployed), on ``settings``; a client for
    it as user `bench` (``limits``: its connection pool)."""
    port = free_port()
    env = {
        **os.environ,
        **{name.upper(): str(getattr(settings, name)) for name in API_SETTINGS},
        "METRICS_ENABLED": "false",
    }
    log = Path(tempfile.gettempdir()) / f"mandala-bench-api-{port}.log"
    process = uvicorn_api(port, env, log, workers)
    headers = {"Authorization": f"Bearer {issue_dev_token('bench', DEV_JWT_SECRET)}"}
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30, limits=limits or httpx.Limits()
        ) as http:
            await until_healthy(http)
            yield http
    finally:
        await asyncio.to_thread(process.stop)


def subgoal_job(title: str = "TypeScriptのエキスパートになる") -> dict[str, Any]:
    params = {
        "title": title,
        "description": "型システムと設計を深く理解し、チームで指導できる水準になる",
        "deadline": (datetime.now(UTC) + timedelta(days=90)).isoformat(),
        "background": "フロントエンド開発を3年担当している",
    }
    return {"type": "SUBGOAL_GENERATION", "params": params}


async def start_jobs(http: httpx.AsyncClient, count: int) -> list[uuid.UUID]:
    """``count`` SUBGOAL jobs through POST /generate, all at once."""
    responses = await asyncio.gather(*(http.post(GENERATE, json=subgoal_job()) for _ in range(count)))
    for r in responses:
        assert r.status_code == 202, r.text
    return [uuid.UUID(r.json()["data"]["processId"]) for r in responses]


async def seen_in_status(
    engine: AsyncEngine, ids: Iterable[uuid.UUID], statuses: set[str], limit: float = 120.0
) -> dict[uuid.UUID, float]:
    """The monotonic time at which each row was first seen in one of ``statuses`` (polled every 20 ms)."""
    waiting, seen = set(ids), {}
    give_up = time.monotonic() + limit
    while waiting and time.monotonic() < give_up:
        stmt = select(ProcessingState.id).where(
            ProcessingState.id.in_(list(waiting)), ProcessingState.status.in_(list(statuses))
        )
        try:
            async with engine.connect() as conn:
                found = set((await conn.execute(stmt)).scalars())
        except sa_exc.DBAPIError:  # the database is down (the recovery benchmark stops it): look again
            found = set()
        now = time.monotonic()
        for process_id in found:
            seen[process_id] = now
        waiting -= found
        await asyncio.sleep(0.02)
    if waiting:
        raise RuntimeError(f"{len(waiting)} rows never reached {sorted(statuses)}")
    return seen


def percentiles(values: list[float]) -> tuple[float, float, float]:
    """(p50, p95 by nearest rank, max) of ``values``."""
    ordered = sorted(values)
    p95 = ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]
    return statistics.median(ordered), p95, ordered[-1]
