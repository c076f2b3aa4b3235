"""Benchmark: GET /api/ai/async/status through the real API against a plain primary-key read (the floor).

The API runs as its own uvicorn process (as in `mandala dev`), on an embedded PostgreSQL; the load comes
from this process over loopback with a fixed number of requests in flight. The floor runs the same row
read with the same engine settings in a loop, without HTTP, auth, rate limiting or JSON.

    .venv/bin/python -m bench.status_reads [--requests 2000] [--concurrency 16] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import select

from api.dev_tokens import issue_dev_token
from bench.job_latency import free_port
from bench.services import until_healthy, uvicorn_api
from cli.postgres import EmbeddedPostgres
from cli.processes import ManagedProcess
from db.engine import make_engine
from db.migrate import upgrade_head
from db.models import ProcessingState, User
from db.repository import JobRepository
from domain.enums import ProcessingType, TargetType
from domain.jobs import NewJob
from settings import DEV_JWT_SECRET

ROOT = Path(__file__).resolve().parents[1]


async def load(one: Callable[[], Awaitable[None]], requests: int, concurrency: int) -> tuple[float, float]:
    """(requests per second, p95 latency in ms) for ``requests`` calls with ``concurrency`` in flight."""
    latencies: list[float] = []
    remaining = iter(range(requests))

    async def lane() -> None:
        for _ in remaining:
            started = time.perf_counter()
            await one()
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return requests / elapsed, statistics.quantiles(latencies, n=20)[18]


async def main(requests: int, concurrency: int, runs: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="mandala-bench-"))
    pg = EmbeddedPostgres(workdir / "postgres", port=free_port())
    pg.start()
    api: ManagedProcess | None = None
    try:
        upgrade_head(pg.url())
        port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": pg.url(),
            "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",  # the status path never talks to Temporal
            "RATE_LIMIT_READ_PER_MINUTE": "100000000",
            "METRICS_ENABLED": "false",
            "LOG_LEVEL": "WARN",
        }
        api = uvicorn_api(port, env, workdir / "api.log")
        engine = make_engine(pg.url(), pool_size=concurrency)
        base = f"http://127.0.0.1:{port}"
        token = issue_dev_token("bench-user", DEV_JWT_SECRET)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as http:
            await until_healthy(http, attempts=100)
            await http.get("/api/ai/async/history")  # provisions the user
            async with engine.connect() as conn:
                user = (await conn.execute(select(User.id).where(User.subject == "bench-user"))).scalar_one()
            process_id = uuid.uuid4()
            now = datetime.now(UTC)
            await JobRepository(engine).create_job(
                NewJob(
                    process_id=process_id,
                    user_id=user,
                    type=ProcessingType.SUBGOAL_GENERATION,
                    target_type=TargetType.GOAL,
                    target_id=uuid.uuid4(),
                    params={"title": "x"},
                    total_units=1,
                    created_at=now,
                    estimated_completion_at=now + timedelta(seconds=60),
                    request_id=None,
                )
            )

            async def via_api() -> None:
                response = await http.get(f"/api/ai/async/status/{process_id}")
                assert response.status_code == 200, response.text

            async def floor() -> None:
                stmt = select(ProcessingState).where(ProcessingState.id == process_id)
                async with engine.connect() as conn:
                    assert (await conn.execute(stmt)).one() is not None

            await load(via_api, 200, concurrency)
            await load(floor, 200, concurrency)
            api_runs = []
            floor_runs = []
            for _ in range(runs):
                floor_runs.append(await load(floor, requests, concurrency))
                api_runs.append(await load(via_api, requests, concurrency))
        await engine.dispose()
        f_rps = statistics.median(r[0] for r in floor_runs)
        f_p95 = statistics.median(r[1] for r in floor_runs)
        a_rps = statistics.median(r[0] for r in api_runs)
        a_p95 = statistics.median(r[1] for r in api_runs)
        print(f"requests={requests} concurrency={concurrency} runs={runs} (medians)")
        print(f"{'':12} {'req/s':>8} {'p95 ms':>8}")
        print(f"{'floor':12} {f_rps:8.0f} {f_p95:8.2f}")
        print(f"{'status API':12} {a_rps:8.0f} {a_p95:8.2f}")
        print(f"ratio api/floor: throughput x{a_rps / f_rps:.2f}, p95 x{a_p95 / f_p95:.1f}")
    finally:
        if api is not None:
            api.stop()
        pg.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.concurrency, args.runs))
