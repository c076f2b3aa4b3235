"""Benchmark: many jobs in flight with a slow AI call (issue 8: 500 jobs, 2 s): how long after its AI time
each job completes, and what the worker process needs for it.

The worker is its own process (`python worker.py` with the shipped defaults; the offline provider answers
after ``--ai-ms``); this process creates and starts the jobs with the API's own code (``api.launch``),
``--starters`` at a time, as fast as they are accepted. Figures per job, from the database timestamps:

- lag: ``completed_at − created_at − AI time`` — everything but the AI call, starting included;
- lag once picked up: ``completed_at − started_at − AI time`` — from the worker's PROCESSING write;

and for the worker process: peak RSS (sampled every 0.1 s), CPU per job, and the workflow tasks the
SDK reported as longer than 5 s. The **floor** runs the same jobs in this process as plain coroutines
(the same repository calls, the same pipeline and AI latency, the same starters), no orchestration.

    .venv/bin/python -m bench.inflight [--jobs 500] [--ai-ms 2000] [--starters 50]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import psutil
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from ai.offline import OfflineProvider
from api.launch import launch
from api.temporal_gateway import TemporalConnection
from bench.costs import PerJob, per_job, process_cpu
from bench.job_latency import Bench, floor_run, subgoal_job
from bench.report import Figure, record
from bench.services import Services, Workers, free_port, percentiles, seen_in_status, services
from db.engine import make_engine
from db.models import ProcessingState
from db.repository import JobRepository
from db.users import Identity
from settings import Settings

NAME = "inflight"
SLOW_TASK_WARNING = "Workflow task duration exceeded"


@dataclass(frozen=True)
class Lags:
    """Seconds beyond the AI time, per job: from creation and from the PROCESSING write."""

    from_created: list[float]
    from_started: list[float]
    peak_in_flight: int


async def lags(engine: AsyncEngine, ids: list[uuid.UUID], ai_seconds: float) -> Lags:
    await seen_in_status(engine, ids, {"COMPLETED", "FAILED", "TIMEOUT", "CANCELLED"}, limit=600)
    PS = ProcessingState
    stmt = select(PS.status, PS.created_at, PS.started_at, PS.completed_at).where(PS.id.in_(ids))
    async with engine.connect() as conn:
        rows = (await conn.execute(stmt)).all()
    wrong = [r.status for r in rows if r.status != "COMPLETED"]
    if wrong:
        raise RuntimeError(f"{len(wrong)} jobs did not complete: {sorted(set(wrong))}")
    edges = sorted([(r.created_at, 1) for r in rows] + [(r.completed_at, -1) for r in rows])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return Lags(
        [(r.completed_at - r.created_at).total_seconds() - ai_seconds for r in rows],
        [(r.completed_at - r.started_at).total_seconds() - ai_seconds for r in rows],
        peak,
    )


async def started_all(start: Callable[[], Awaitable[uuid.UUID]], jobs: int, starters: int) -> list[uuid.UUID]:
    gate = asyncio.Semaphore(starters)

    async def one() -> uuid.UUID:
        async with gate:
            return await start()

    return list(await asyncio.gather(*(one() for _ in range(jobs))))


@contextlib.asynccontextmanager
async def peak_rss(pid: int) -> AsyncIterator[list[int]]:
    """The highest RSS of process ``pid`` seen while the context is open (bytes, in a one-item list)."""
    process = psutil.Process(pid)
    peak = [process.memory_info().rss]

    async def sample() -> None:
        while True:
            peak[0] = max(peak[0], process.memory_info().rss)
            await asyncio.sleep(0.1)

    task = asyncio.ensure_future(sample())
    try:
        yield peak
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def run_floor(bench: Bench, jobs: int, starters: int, ai_seconds: float) -> Lags:
    """Every job as one coroutine; creation gated like the durable starts."""
    gate = asyncio.Semaphore(starters)
    ids: list[uuid.UUID] = []

    async def one() -> None:
        job = subgoal_job(bench)
        async with gate:
            await bench.repo.create_job(job)
        ids.append(job.process_id)
        await floor_run(bench, job)

    await asyncio.gather(*(one() for _ in range(jobs)))
    return await lags(bench.repo.engine, ids, ai_seconds)


async def main(jobs: int, ai_ms: int, starters: int) -> None:
    ai_seconds = ai_ms / 1000
    async with services() as svc:
        settings = svc.settings()
        # The floor queues all its jobs on this pool at once: they wait for a connection, never time out.
        engine = make_engine(settings.database_url, settings.db_pool_size, pool_timeout=600)
        repo = JobRepository(engine)
        user = uuid.uuid4()
        async with engine.begin() as conn:
            await conn.execute(
                text("INSERT INTO users (id, issuer, subject) VALUES (:u, '', 'bench')"), {"u": user}
            )
        api_client = await TemporalConnection(settings).client()
        bench = Bench(
            repo, api_client, OfflineProvider(latency_ms=ai_ms), settings, user, Identity("", "bench")
        )
        floor_lags = await run_floor(bench, jobs, starters, ai_seconds)
        service = await durable(svc, settings, bench, jobs, starters, ai_seconds)
        await engine.dispose()
    report(jobs, ai_seconds, starters, floor_lags, service)


@dataclass(frozen=True)
class Durable:
    lags: Lags
    start_seconds: float
    rss_mb: float
    slow_tasks: int
    costs: PerJob


async def durable(
    svc: Services, settings: Settings, bench: Bench, jobs: int, starters: int, ai_seconds: float
) -> Durable:
    workers = Workers(
        svc,
        settings,
        {
            "AI_OFFLINE_LATENCY_MS": str(int(ai_seconds * 1000)),
            "METRICS_PORT": str(free_port()),
        },
    )
    worker = workers.start()
    try:
        await workers.polling(1)

        async def connected() -> Client:
            return bench.client

        async def start() -> uuid.UUID:
            job = subgoal_job(bench)
            await launch(bench.repo, connected, bench.settings, job, bench.owner)
            return job.process_id

        await lags(bench.repo.engine, await started_all(start, 5, starters), ai_seconds)  # warm up
        meter = svc.meter(bench.repo.engine, worker=process_cpu(worker.pid))
        before = await meter.read()
        async with peak_rss(worker.pid) as peak:
            began = time.monotonic()
            ids = await started_all(start, jobs, starters)
            start_seconds = time.monotonic() - began
            measured = await lags(bench.repo.engine, ids, ai_seconds)
        costs = per_job(before, await meter.read(), jobs)
    finally:
        workers.stop()
    log = workers.log_path(0).read_text(encoding="utf-8", errors="replace")
    return Durable(measured, start_seconds, peak[0] / 2**20, log.count(SLOW_TASK_WARNING), costs)


def report(jobs: int, ai_seconds: float, starters: int, floor_lags: Lags, service: Durable) -> None:
    print(f"jobs={jobs} AI call {ai_seconds:g} s, {starters} starters; seconds beyond the AI time")
    print(f"{'':34} {'p50':>6} {'p95':>6} {'max':>6}")
    rows = {
        "floor": floor_lags.from_created,
        "durable, from creation": service.lags.from_created,
        "durable, from PROCESSING": service.lags.from_started,
    }
    for name, values in rows.items():
        p50, p95, worst = percentiles(values)
        print(f"{name:34} {p50:6.3f} {p95:6.3f} {worst:6.3f}")
    print(
        f"all {jobs} started in {service.start_seconds:.1f} s; peak in flight {service.lags.peak_in_flight} "
        f"(floor {floor_lags.peak_in_flight})"
    )
    print(f"worker: peak RSS {service.rss_mb:.0f} MB, workflow tasks over 5 s: {service.slow_tasks}")
    print("per job, durable:")
    print("\n".join(service.costs.lines()))
    f95 = percentiles(floor_lags.from_created)[1]
    p95 = percentiles(service.lags.from_created)[1]
    for figure in (
        Figure(NAME, f"lag p95 beyond the AI time, {jobs} jobs", p95 * 1000, "ms", f95 * 1000, "≤ 100 ms",
               p95 <= 0.1),
        Figure(NAME, "lag p95 from PROCESSING", percentiles(service.lags.from_started)[1] * 1000, "ms"),
        Figure(NAME, "peak jobs in flight", service.lags.peak_in_flight, "", floor_lags.peak_in_flight),
        Figure(NAME, "worker peak RSS", service.rss_mb, "MB", None, "≤ 300 MB", service.rss_mb <= 300),
        Figure(NAME, "workflow tasks over 5 s", service.slow_tasks, "", None, "0", service.slow_tasks == 0),
        Figure(NAME, "worker CPU per job", service.costs.cpu_ms["worker"], "ms"),
        Figure(NAME, "PostgreSQL commits per job", service.costs.commits, ""),
        Figure(NAME, "Temporal RPCs per job", service.costs.rpcs, ""),
    ):  # fmt: skip
        record(figure)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--ai-ms", type=int, default=2000)
    parser.add_argument("--starters", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(main(args.jobs, args.ai_ms, args.starters))
