"""Benchmark: what a lost worker, a Temporal restart and a database outage cost each job (issue 7).

Every scenario runs ``--jobs`` SUBGOAL jobs at once whose AI call takes ``--ai-seconds`` (offline provider),
served by two worker processes (`python worker.py`, shipped defaults), and reports per job the time from
its start to COMPLETED (database timestamps) minus the median of an undisturbed baseline run: the extra
time the fault cost. Every job must end COMPLETED with exactly 8 subgoals (nothing lost, nothing twice).

- worker loss: one worker is SIGKILLed mid AI call; its calls are retried on the other one after the
  heartbeat timeout (target: ≤ 15 s extra);
- Temporal restart: the file-backed dev server is stopped mid AI call and started again ``--temporal-down``
  s later; starts through the API during the outage are timed too (503 within 1 s);
- database outage: PostgreSQL is stopped (fast shutdown) mid AI call and started again ``--db-down`` s
  later.

    .venv/bin/python -m bench.recovery [--jobs 10] [--ai-seconds 4] [--temporal-down 10] [--db-down 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from sqlalchemy import func, select
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

from bench.services import (
    GENERATE,
    Services,
    api,
    percentiles,
    seen_in_status,
    services,
    start_jobs,
    subgoal_job,
)
from cli.processes import ManagedProcess
from db.engine import make_engine
from db.models import ProcessingState, SubGoal
from settings import Settings
from temporal_client import connect_temporal, temporal_env

ROOT = Path(__file__).resolve().parents[1]


class Workers:
    """Worker processes on one task queue, started the way an operator would (`python worker.py`)."""

    def __init__(self, svc: Services, settings: Settings, ai_seconds: float) -> None:
        self._svc = svc
        self._settings = settings
        self._env = {
            **os.environ,
            "DATABASE_URL": settings.database_url,
            **temporal_env(settings),
            "TEMPORAL_TASK_QUEUE": settings.temporal_task_queue,
            "AI_OFFLINE_LATENCY_MS": str(int(ai_seconds * 1000)),
            "METRICS_ENABLED": "false",
            "SCHEDULES_ENABLED": "false",
            "LOG_LEVEL": "WARN",
        }
        self.processes: list[ManagedProcess] = []

    def start(self) -> ManagedProcess:
        process = ManagedProcess(
            "worker",
            [sys.executable, "worker.py"],
            cwd=ROOT,
            env=self._env,
            log_path=self._svc.workdir / f"worker-{len(self.processes)}.log",
        )
        self.processes.append(process)
        return process

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


async def durations(settings: Settings, ids: list[uuid.UUID]) -> list[float]:
    """Seconds from creation to COMPLETED for each job, after checking each saved its 8 subgoals once."""
    engine = make_engine(settings.database_url)
    await seen_in_status(engine, ids, {"COMPLETED", "FAILED", "TIMEOUT", "CANCELLED"}, limit=900)
    stmt = (
        select(ProcessingState.status, ProcessingState.created_at, ProcessingState.completed_at, func.count())
        .join(SubGoal, SubGoal.goal_id == ProcessingState.target_id, isouter=True)
        .where(ProcessingState.id.in_(ids))
        .group_by(ProcessingState.id)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(stmt)).all()
    await engine.dispose()
    wrong = [(r.status, r[3]) for r in rows if (r.status, r[3]) != ("COMPLETED", 8)]
    if wrong:
        raise RuntimeError(f"jobs did not each complete once with 8 subgoals: {wrong}")
    return [(r.completed_at - r.created_at).total_seconds() for r in rows]


async def scenario(
    svc: Services,
    settings: Settings,
    jobs: int,
    ai_seconds: float,
    fault: Callable[[httpx.AsyncClient], Awaitable[None]],
) -> list[float]:
    """Start the jobs through the API, let their AI calls run halfway, apply ``fault`` (which may use the
    API, connected while everything was up); the jobs' durations."""
    async with api(settings) as http:
        ids = await start_jobs(http, jobs)
        engine = make_engine(settings.database_url)
        await seen_in_status(engine, ids, {"PROCESSING"})
        await engine.dispose()
        await asyncio.sleep(ai_seconds / 2)
        await fault(http)
    return await durations(settings, ids)


async def main(jobs: int, ai_seconds: float, temporal_down: float, db_down: float) -> None:
    async with services() as svc:
        settings = svc.settings()
        workers = Workers(svc, settings, ai_seconds)
        workers.start()
        workers.start()
        try:
            await workers.polling(2)

            async def nothing(_: httpx.AsyncClient) -> None:
                return None

            baseline = await scenario(svc, settings, jobs, ai_seconds, nothing)

            async def kill_a_worker(_: httpx.AsyncClient) -> None:
                os.kill(workers.processes[0].pid, signal.SIGKILL)

            lost_worker = await scenario(svc, settings, jobs, ai_seconds, kill_a_worker)
            workers.start()
            await workers.polling(2)

            refused: list[tuple[int, float]] = []

            async def restart_temporal(http: httpx.AsyncClient) -> None:
                await asyncio.to_thread(svc.temporal.stop)
                down_since = time.monotonic()
                for _ in range(5):
                    started = time.monotonic()
                    response = await http.post(GENERATE, json=subgoal_job())
                    refused.append((response.status_code, time.monotonic() - started))
                await asyncio.sleep(max(0.0, down_since + temporal_down - time.monotonic()))
                await asyncio.to_thread(svc.temporal.start)

            temporal_restart = await scenario(svc, settings, jobs, ai_seconds, restart_temporal)

            async def database_outage(_: httpx.AsyncClient) -> None:
                await asyncio.to_thread(svc.postgres.stop)
                await asyncio.sleep(db_down)
                await asyncio.to_thread(svc.postgres.start)

            outage = await scenario(svc, settings, jobs, ai_seconds, database_outage)
        finally:
            workers.stop()
    base = percentiles(baseline)[0]
    print(f"jobs={jobs} per scenario, AI call {ai_seconds:g} s, two worker processes, shipped defaults")
    print(f"baseline job duration p50 {base:.2f} s; below: extra seconds per job over that")
    print(f"{'scenario':36} {'p50':>6} {'p95':>6} {'max':>6}")
    for name, values in (
        ("worker SIGKILL mid call", lost_worker),
        (f"Temporal restart ({temporal_down:g} s down)", temporal_restart),
        (f"PostgreSQL outage ({db_down:g} s down)", outage),
    ):
        p50, p95, worst = percentiles([v - base for v in values])
        print(f"{name:36} {p50:6.2f} {p95:6.2f} {worst:6.2f}")
    statuses = sorted({status for status, _ in refused})
    p50, p95, worst = percentiles([s for _, s in refused])
    print(f"starts with Temporal down: HTTP {statuses}, p50 {p50:.2f} s, p95 {p95:.2f} s, max {worst:.2f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--ai-seconds", type=float, default=4.0)
    parser.add_argument("--temporal-down", type=float, default=10.0)
    parser.add_argument("--db-down", type=float, default=30.0)
    args = parser.parse_args()
    asyncio.run(main(args.jobs, args.ai_seconds, args.temporal_down, args.db_down))
