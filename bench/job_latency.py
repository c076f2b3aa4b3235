"""Benchmark: SUBGOAL jobs through Temporal against a plain-asyncio floor doing the same work.

Both sides use the same PostgreSQL, the same repository calls and the same offline generation
pipeline; the floor just calls them in order in one coroutine (no orchestration, no durability). The
ratio is the cost of running each job as a durable Temporal workflow.

The durable side is the shipped configuration: the job is created and started by the API's own code
(``api.launch``, on a client made as the API makes it), the worker is ``worker.build_worker`` on a client made
as ``worker.py`` makes it (pydantic converter, tracing interceptor, SDK metrics), with tracing and metrics
installed as in the worker process. The two clients are separate connections, as in the deployed service
(where the API and the worker are separate processes).

A third side, **empty**, runs a workflow of a job's shape whose activities do nothing
(``bench/empty_workflow.py``) on the same server: the orchestration alone, a ceiling no job can pass.

    .venv/bin/python -m bench.job_latency [--jobs 60] [--concurrency 16] [--runs 3]

Prints the median of the runs for serial latency (ms, p50) and saturated throughput (jobs/s), then what
a job costs: PostgreSQL commits, Temporal RPCs (the benchmark's wait for the result is one of them) and
CPU time of this process (the worker and the starts), the Temporal server and PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from temporalio.client import Client

from ai.offline import OfflineProvider
from ai.pipeline import SamplingConfig, generate_validated, output_kind
from ai.prompts import build_prompt
from ai.provider import CallContext
from api.launch import launch, new_job
from api.temporal_gateway import TemporalConnection
from bench.costs import Meter, PerJob, per_job
from bench.empty_workflow import EmptyJobs
from bench.report import Figure, record
from bench.services import free_port, services
from db.engine import make_engine
from db.repository import JobRepository
from db.transitions import RunStatus
from db.users import Identity
from domain.enums import ProcessingType, Scope, TargetType
from domain.errors import ErrorCode
from domain.jobs import NewJob
from domain.workflow_io import PersistUnitRequest, UnitRef
from observability import metrics
from observability.tracing import init_tracing
from settings import Settings
from temporal_client import connect_config, connect_temporal
from worker import build_worker

PARAMS = {
    "title": "TypeScriptのエキスパートになる",
    "description": "型システムと設計を深く理解し、チームで指導できる水準になる",
    "background": "フロントエンド開発を3年担当している",
    "constraints": "平日は1日1時間まで",
}
NAME = "job_latency"


@dataclass(frozen=True)
class Bench:
    repo: JobRepository
    client: Client
    provider: OfflineProvider
    settings: Settings
    user: uuid.UUID
    owner: Identity


def subgoal_job(bench: Bench) -> NewJob:
    target = uuid.uuid4()
    return new_job(
        bench.settings,
        user_id=bench.user,
        job_type=ProcessingType.SUBGOAL_GENERATION,
        params={**PARAMS, "deadline": (datetime.now(UTC) + timedelta(days=90)).isoformat()},
        target_type=TargetType.GOAL,
        target_id=target,
        units=[(target, TargetType.GOAL)],
        request_id=None,
    )


async def via_temporal(bench: Bench) -> None:
    """What POST /generate does (row, then start), then wait for the workflow's result."""

    async def connected() -> Client:
        return bench.client

    handle = await launch(bench.repo, connected, bench.settings, subgoal_job(bench), bench.owner)
    summary = await handle.result()
    assert summary.outcome == "COMPLETED", summary


async def floor(bench: Bench) -> None:
    """The same state writes and generation, in one coroutine: what a job costs without orchestration."""
    job = subgoal_job(bench)
    await bench.repo.create_job(job)
    await floor_run(bench, job)


async def floor_run(bench: Bench, job: NewJob) -> None:
    """The floor's work on a created job."""

    async def current() -> RunStatus:
        return RunStatus(current=True)

    repo, settings = bench.repo, bench.settings
    run = f"floor-{job.process_id}"
    await repo.mark_processing(job.process_id, run, settings.job_deadline_seconds, current)
    claimed = await repo.claim_unit(job.process_id, job.target_id, run, current, settings.prompt_timezone)
    assert claimed.context is not None
    call = CallContext(process_id=job.process_id, unit_id=job.target_id, type=job.type)
    sampling = SamplingConfig(temperature=0.7, max_tokens=2000, top_p=0.9, cost_per_1k_tokens_usd=0.0)

    async def ignore(_generation: int, _code: ErrorCode) -> None:
        return None

    kind = output_kind(job.type)
    output = await generate_validated(
        bench.provider, build_prompt(claimed.context), kind, call, sampling, ignore
    )
    unit = UnitRef(unit_id=job.target_id, unit_type=TargetType.GOAL, ordinal=0)
    request = PersistUnitRequest(process_id=job.process_id, unit=unit, scope=Scope.TARGET, output=output)
    await repo.persist_unit(request, run, current)


@dataclass(frozen=True)
class Run:
    latency_ms: float
    jobs_per_second: float
    costs: PerJob


async def serial_p50(one_job: Callable[[], Awaitable[None]], jobs: int) -> float:
    latencies = []
    for _ in range(jobs):
        started = time.perf_counter()
        await one_job()
        latencies.append((time.perf_counter() - started) * 1000)
    return statistics.median(latencies)


async def measure(one_job: Callable[[], Awaitable[None]], jobs: int, concurrency: int, meter: Meter) -> Run:
    """``jobs`` jobs one at a time (p50 latency), then ``jobs`` with ``concurrency`` in flight (jobs/s);
    the costs are those of all ``2 × jobs``."""
    before = await meter.read()
    latency = await serial_p50(one_job, jobs)
    gate = asyncio.Semaphore(concurrency)

    async def bounded() -> None:
        async with gate:
            await one_job()

    started = time.perf_counter()
    await asyncio.gather(*(bounded() for _ in range(jobs)))
    throughput = jobs / (time.perf_counter() - started)
    costs = per_job(before, await meter.read(), 2 * jobs)
    return Run(latency, throughput, costs)


def _mean(costs: list[PerJob]) -> PerJob:
    n = len(costs)
    ops = {op for c in costs for op in c.rpcs_by_operation}
    by_op = {op: sum(c.rpcs_by_operation.get(op, 0.0) for c in costs) / n for op in ops}
    return PerJob(
        commits=sum(c.commits for c in costs) / n,
        writes=sum(c.writes for c in costs) / n,
        rpcs=sum(c.rpcs for c in costs) / n,
        rpcs_by_operation=dict(sorted(by_op.items(), key=lambda kv: -kv[1])),
        cpu_ms={name: sum(c.cpu_ms[name] for c in costs) / n for name in costs[0].cpu_ms},
    )


async def main(jobs: int, concurrency: int, runs: int) -> None:
    async with services() as svc:
        settings = svc.settings(metrics_enabled=True, metrics_port=free_port())
        metrics.init_metrics("worker", settings)
        init_tracing("worker", settings)
        engine = make_engine(settings.database_url, settings.db_pool_size)
        repo = JobRepository(engine)
        user = uuid.uuid4()
        async with engine.begin() as conn:
            await conn.execute(
                text("INSERT INTO users (id, issuer, subject) VALUES (:u, '', 'bench')"), {"u": user}
            )
        meter = svc.meter(engine)
        provider = OfflineProvider()
        results: dict[str, list[Run]] = {"floor": [], "empty": [], "temporal": []}
        eager_ms: list[float] = []
        async with metrics.temporal_runtime() as runtime:
            client = await connect_temporal(settings, runtime=runtime)
            api_client = await TemporalConnection(settings).client()
            bench = Bench(repo, api_client, provider, settings, user, Identity("", "bench"))
            empty = EmptyJobs(await Client.connect(**connect_config(settings)))
            async with build_worker(client, settings, repo, provider), empty.worker():
                await via_temporal(bench)  # warm up every path
                await floor(bench)
                await empty.run()
                for _ in range(runs):
                    results["floor"].append(await measure(lambda: floor(bench), jobs, concurrency, meter))
                    results["empty"].append(await measure(empty.run, jobs, concurrency, meter))
                    results["temporal"].append(
                        await measure(lambda: via_temporal(bench), jobs, concurrency, meter)
                    )
                    eager_ms.append(await serial_p50(lambda: empty.run(eager=True), jobs))
        await engine.dispose()
    metrics.install(None)
    lat = {side: statistics.median(r.latency_ms for r in rs) for side, rs in results.items()}
    tps = {side: statistics.median(r.jobs_per_second for r in rs) for side, rs in results.items()}
    costs = {side: _mean([r.costs for r in rs]) for side, rs in results.items()}
    eager = statistics.median(eager_ms)
    print(f"jobs={jobs} concurrency={concurrency} runs={runs} (medians)")
    print(f"{'':10} {'serial p50 ms':>14} {'jobs/s':>8}")
    for side in results:
        print(f"{side:10} {lat[side]:14.1f} {tps[side]:8.1f}")
    print(
        f"ratio temporal/floor: latency x{lat['temporal'] / lat['floor']:.1f}, "
        f"throughput x{tps['temporal'] / tps['floor']:.2f}"
    )
    print(
        "empty: a workflow of the job's shape doing nothing (bench/empty_workflow.py), started as the API "
        f"starts jobs; with an eager start (worker in the starting process) its serial p50 is {eager:.1f} ms"
    )
    for side in results:
        print(f"per job, {side}:")
        print("\n".join(costs[side].lines()))
    f, t, e = costs["floor"], costs["temporal"], costs["empty"]
    this = "this process"
    for figure in (
        Figure(NAME, "serial p50", lat["temporal"], "ms", lat["floor"], "≤ floor + 20 ms",
               lat["temporal"] <= lat["floor"] + 20),
        Figure(NAME, "throughput, 16 in flight", tps["temporal"], "jobs/s", tps["floor"], "≥ 0.5 × floor",
               tps["temporal"] >= 0.5 * tps["floor"]),
        Figure(NAME, "PostgreSQL commits per job", t.commits, "", f.commits, "≤ 4", t.commits <= 4),
        Figure(NAME, "Temporal RPCs per job", t.rpcs, ""),
        Figure(NAME, "worker CPU per job (this process)", t.cpu_ms[this], "ms", f.cpu_ms[this]),
        Figure(NAME, "Temporal server CPU per job", t.cpu_ms["Temporal server"], "ms"),
        Figure(NAME, "PostgreSQL CPU per job", t.cpu_ms["PostgreSQL"], "ms", f.cpu_ms["PostgreSQL"]),
        Figure(NAME, "empty workflow of a job's shape, serial p50", lat["empty"], "ms", lat["floor"],
               "ceiling: a job cannot be faster"),
        Figure(NAME, "empty workflow of a job's shape, eager start, serial p50", eager, "ms", lat["floor"],
               "ceiling with the worker in the API process"),
        Figure(NAME, "empty workflows/s, 16 in flight", tps["empty"], "/s", tps["floor"],
               "ceiling: jobs cannot be more"),
        Figure(NAME, "Temporal server CPU per empty workflow", e.cpu_ms["Temporal server"], "ms"),
    ):  # fmt: skip
        record(figure)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=60)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.jobs, args.concurrency, args.runs))
