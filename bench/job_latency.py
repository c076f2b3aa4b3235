"""Benchmark: SUBGOAL jobs through Temporal against a plain-asyncio floor doing the same work.

Both sides use the same PostgreSQL, the same repository calls and the same offline generation
pipeline; the floor just calls them in order in one coroutine (no orchestration, no durability). The
ratio is the cost of running each job as a durable Temporal workflow.

    .venv/bin/python -m bench.job_latency [--jobs 40] [--concurrency 16] [--runs 3]

Prints the median of the runs for serial latency (ms, p50) and saturated throughput (jobs/s).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text
from temporalio.client import Client

from ai.offline import OfflineProvider
from ai.pipeline import SamplingConfig, generate_validated, output_kind
from ai.prompts import build_prompt
from ai.provider import CallContext
from cli.postgres import EmbeddedPostgres
from cli.temporal_server import DevTemporalServer
from db.context import load_context
from db.engine import make_engine
from db.migrate import upgrade_head
from db.repository import JobRepository
from db.transitions import RunStatus
from domain.enums import ProcessingType, Scope, TargetType
from domain.errors import ErrorCode
from domain.jobs import NewJob
from domain.workflow_io import GenerationInput, PersistUnitRequest, UnitRef, WorkflowSummary, workflow_id_for
from settings import Settings
from temporal_client import connect_temporal
from worker import build_worker

PARAMS = {
    "title": "TypeScriptのエキスパートになる",
    "description": "型システムと設計を深く理解し、チームで指導できる水準になる",
    "background": "フロントエンド開発を3年担当している",
    "constraints": "平日は1日1時間まで",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def new_job(repo: JobRepository, user: uuid.UUID) -> NewJob:
    now = datetime.now(UTC)
    job = NewJob(
        process_id=uuid.uuid4(),
        user_id=user,
        type=ProcessingType.SUBGOAL_GENERATION,
        target_type=TargetType.GOAL,
        target_id=uuid.uuid4(),
        params={**PARAMS, "deadline": (now + timedelta(days=90)).isoformat()},
        total_units=1,
        created_at=now,
        estimated_completion_at=now + timedelta(seconds=60),
        request_id=None,
    )
    await repo.create_job(job)
    return job


async def via_temporal(repo: JobRepository, client: Client, queue: str, user: uuid.UUID) -> None:
    job = await new_job(repo, user)
    handle = await client.start_workflow(
        "GenerationWorkflow",
        GenerationInput(
            process_id=job.process_id,
            user_id=user,
            type=job.type,
            target_type=job.target_type,
            target_id=job.target_id,
            scope=Scope.TARGET,
        ),
        id=workflow_id_for(job.process_id),
        task_queue=queue,
        result_type=WorkflowSummary,
    )
    summary = await handle.result()
    assert summary.outcome == "COMPLETED", summary


async def floor(repo: JobRepository, provider: OfflineProvider, settings: Settings, user: uuid.UUID) -> None:
    """The same state writes and generation, in one coroutine: what a job costs without orchestration."""

    async def current() -> RunStatus:
        return RunStatus(current=True)

    job = await new_job(repo, user)
    run = f"floor-{job.process_id}"
    await repo.mark_processing(job.process_id, run, settings.job_deadline_seconds, current)
    row, _ = await repo.claim_unit(job.process_id, job.target_id, run, current)
    ctx, _ = await load_context(repo.engine, row, job.target_id, settings.prompt_timezone)
    call = CallContext(process_id=job.process_id, unit_id=job.target_id, type=job.type)
    sampling = SamplingConfig(temperature=0.7, max_tokens=2000, top_p=0.9, cost_per_1k_tokens_usd=0.0)

    async def ignore(_generation: int, _code: ErrorCode) -> None:
        return None

    kind = output_kind(job.type)
    output = await generate_validated(provider, build_prompt(ctx), kind, call, sampling, ignore)
    unit = UnitRef(unit_id=job.target_id, unit_type=TargetType.GOAL, ordinal=0)
    request = PersistUnitRequest(process_id=job.process_id, unit=unit, scope=Scope.TARGET, output=output)
    await repo.persist_unit(request, run, current)


async def measure(one_job: Callable[[], Awaitable[None]], jobs: int, concurrency: int) -> tuple[float, float]:
    latencies = []
    for _ in range(jobs):
        started = time.perf_counter()
        await one_job()
        latencies.append((time.perf_counter() - started) * 1000)
    gate = asyncio.Semaphore(concurrency)

    async def bounded() -> None:
        async with gate:
            await one_job()

    started = time.perf_counter()
    await asyncio.gather(*(bounded() for _ in range(jobs)))
    throughput = jobs / (time.perf_counter() - started)
    return statistics.median(latencies), throughput


async def main(jobs: int, concurrency: int, runs: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="mandala-bench-"))
    pg = EmbeddedPostgres(workdir / "postgres", port=free_port())
    temporal = DevTemporalServer(workdir, port=free_port(), ui_port=free_port(), headless=True)
    pg.start()
    temporal.start()
    try:
        upgrade_head(pg.url())
        settings = Settings(
            database_url=pg.url(),
            temporal_address=temporal.address,
            temporal_task_queue="bench",
            db_pool_size=20,
        )
        engine = make_engine(settings.database_url, settings.db_pool_size)
        repo = JobRepository(engine)
        async with engine.begin() as conn:
            user = uuid.uuid4()
            await conn.execute(text("INSERT INTO users (id, subject) VALUES (:u, 'bench')"), {"u": user})
        client = await connect_temporal(settings)
        provider = OfflineProvider()
        results: dict[str, list[tuple[float, float]]] = {"floor": [], "temporal": []}
        async with build_worker(client, settings, repo, provider):
            await via_temporal(repo, client, "bench", user)  # warm up both paths
            await floor(repo, provider, settings, user)

            def floor_job() -> Awaitable[None]:
                return floor(repo, provider, settings, user)

            def temporal_job() -> Awaitable[None]:
                return via_temporal(repo, client, "bench", user)

            for _ in range(runs):
                results["floor"].append(await measure(floor_job, jobs, concurrency))
                results["temporal"].append(await measure(temporal_job, jobs, concurrency))
        await engine.dispose()
        f_lat = statistics.median(r[0] for r in results["floor"])
        f_tp = statistics.median(r[1] for r in results["floor"])
        t_lat = statistics.median(r[0] for r in results["temporal"])
        t_tp = statistics.median(r[1] for r in results["temporal"])
        print(f"jobs={jobs} concurrency={concurrency} runs={runs} (medians)")
        print(f"{'':10} {'serial p50 ms':>14} {'jobs/s':>8}")
        print(f"{'floor':10} {f_lat:14.1f} {f_tp:8.1f}")
        print(f"{'temporal':10} {t_lat:14.1f} {t_tp:8.1f}")
        print(f"ratio temporal/floor: latency x{t_lat / f_lat:.1f}, throughput x{t_tp / f_tp:.2f}")
    finally:
        temporal.stop()
        pg.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.jobs, args.concurrency, args.runs))
