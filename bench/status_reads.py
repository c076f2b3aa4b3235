"""Benchmark: GET /api/ai/async/status/{id} through the real API against a bare psycopg read (the floor).

The API runs as its own uvicorn process (``--api-workers`` processes sharing the port, as
`mandala dev --api-workers N` runs them) on an embedded PostgreSQL, with authentication and the shared
rate limit on (a limit high enough never to refuse the benchmark's user). The load keeps
``--concurrency`` requests in flight for ``--seconds``: wrk when it is installed, else an asyncio client
in this process. The **floor** is the same row read as a bare psycopg primary-key SELECT (no ORM, no
HTTP, no auth, no JSON) from a pool of the same size, with the same number in flight.

    .venv/bin/python -m bench.status_reads [--seconds 5] [--concurrency 16] [--runs 3] [--api-workers 2]
    .venv/bin/python -m bench.status_reads --smoke     # a short check that it works (CI)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from psycopg_pool import AsyncConnectionPool

from api.dev_tokens import issue_dev_token
from bench.bare_api import FLOOR_SQL
from bench.costs import tree_cpu
from bench.http_load import Throughput, closed_loop, timed
from bench.report import Figure, parse_args, publish, record
from bench.services import free_port, until_healthy, uvicorn_api
from cli.postgres import EmbeddedPostgres
from cli.processes import ManagedProcess
from db.engine import make_engine
from db.migrate import upgrade_head
from db.repository import JobRepository
from domain.enums import ProcessingType, TargetType
from domain.jobs import NewJob
from settings import DEV_JWT_SECRET

NAME = "status_reads"
READ_LIMIT = 100_000_000  # on, shared through PostgreSQL, and never reached by this benchmark


@dataclass(frozen=True, slots=True)
class StatusReport:
    seconds: float
    concurrency: int
    runs: int
    api_workers: int
    generator: str
    floor_rps: float
    floor_p95_ms: float
    api_rps: float
    api_p95_ms: float
    api_cpu_ms: float  # CPU of the API's processes per request: steadier than req/s on a shared machine
    bare_rps: float  # bench/bare_api.py: the same read over the smallest FastAPI app (the HTTP ceiling)
    bare_p95_ms: float
    bare_cpu_ms: float

    @property
    def throughput_ratio(self) -> float:
        return self.api_rps / self.floor_rps

    @property
    def p95_ratio(self) -> float:
        return self.api_p95_ms / self.floor_p95_ms

    def lines(self) -> list[str]:
        return [
            f"seconds={self.seconds:g} concurrency={self.concurrency} runs={self.runs} "
            f"api_workers={self.api_workers} load={self.generator} (medians)",
            f"{'':12} {'req/s':>8} {'p95 ms':>8}",
            f"{'floor':12} {self.floor_rps:8.0f} {self.floor_p95_ms:8.2f}",
            f"{'bare HTTP':12} {self.bare_rps:8.0f} {self.bare_p95_ms:8.2f}",
            f"{'status API':12} {self.api_rps:8.0f} {self.api_p95_ms:8.2f}",
            f"CPU per request: bare HTTP {self.bare_cpu_ms:.3f} ms, API {self.api_cpu_ms:.3f} ms",
            f"ratio api/floor: throughput x{self.throughput_ratio:.2f}, p95 x{self.p95_ratio:.1f}",
            f"ratio bare HTTP/floor (the ceiling of any FastAPI service here): throughput "
            f"x{self.bare_rps / self.floor_rps:.2f}, p95 x{self.bare_p95_ms / self.floor_p95_ms:.1f}",
        ]

    def record_figures(self) -> None:
        """The summary figures, against issue 8's goals, for the runner (`python -m bench`)."""
        record(
            Figure(NAME, f"GET /status throughput, {self.concurrency} in flight", self.api_rps, "req/s",
                   self.floor_rps, "≥ 0.5 × floor", self.throughput_ratio >= 0.5)
        )  # fmt: skip
        record(
            Figure(NAME, "GET /status p95", self.api_p95_ms, "ms", self.floor_p95_ms, "≤ 3 × floor",
                   self.p95_ratio <= 3)
        )  # fmt: skip
        record(Figure(NAME, "GET /status API CPU per request", self.api_cpu_ms, "ms"))
        record(
            Figure(NAME, "bare FastAPI read throughput (bench/bare_api.py)", self.bare_rps, "req/s",
                   self.floor_rps, "ceiling: the API cannot be more")
        )  # fmt: skip
        record(Figure(NAME, "bare FastAPI read p95", self.bare_p95_ms, "ms", self.floor_p95_ms))


async def _seed_job(database_url: str, user_id: uuid.UUID) -> uuid.UUID:
    engine = make_engine(database_url, pool_size=1)
    process_id = uuid.uuid4()
    now = datetime.now(UTC)
    try:
        await JobRepository(engine).create_job(
            NewJob(
                process_id=process_id,
                user_id=user_id,
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
    finally:
        await engine.dispose()
    return process_id


async def run(
    seconds: float = 5.0, concurrency: int = 16, runs: int = 3, api_workers: int = 2
) -> StatusReport:
    """Start PostgreSQL and the API, measure floor and API ``runs`` times each (alternating), stop all."""
    workdir = Path(tempfile.mkdtemp(prefix="mandala-bench-"))
    pg = EmbeddedPostgres(workdir / "postgres", port=free_port())
    await asyncio.to_thread(pg.start)
    api: ManagedProcess | None = None
    try:
        await asyncio.to_thread(upgrade_head, pg.url())
        port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": pg.url(),
            "DB_POOL_SIZE": str(max(1, concurrency // api_workers)),  # the floor's pool, shared out
            "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",  # the status path never talks to Temporal
            "RATE_LIMIT_READ_PER_MINUTE": str(READ_LIMIT),
            "METRICS_ENABLED": "false",
            "LOG_LEVEL": "WARN",
        }
        api = uvicorn_api(port, env, workdir / "api.log", workers=api_workers)
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {issue_dev_token('bench-user', DEV_JWT_SECRET)}"}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as http:
            await until_healthy(http, attempts=300)
            provisioned = await http.get("/api/ai/async/history")  # creates the user row
            assert provisioned.status_code == 200, provisioned.text
        conninfo = pg.url().replace("postgresql+psycopg://", "postgresql://")
        async with AsyncConnectionPool(conninfo, min_size=concurrency, max_size=concurrency) as pool:
            async with pool.connection() as conn:
                cur = await conn.execute("SELECT id FROM users WHERE subject = 'bench-user'")
                row = await cur.fetchone()
                assert row is not None
            process_id = await _seed_job(pg.url(), row[0])
            path = f"/api/ai/async/status/{process_id}"

            async def floor() -> None:
                async with pool.connection() as conn:
                    cur = await conn.execute(FLOOR_SQL, (process_id,))
                    assert await cur.fetchone() is not None

            bare_port = free_port()
            bare_env = {**env, "BARE_DATABASE_URL": conninfo, "BARE_POOL_SIZE": env["DB_POOL_SIZE"]}
            bare = uvicorn_api(bare_port, bare_env, workdir / "bare.log", api_workers, "bench.bare_api:app")
            bare_base = f"http://127.0.0.1:{bare_port}"
            sides = {"api": (base, path, api.pid), "bare": (bare_base, f"/status/{process_id}", bare.pid)}
            cpu_ms: dict[str, list[float]] = {"api": [], "bare": []}

            async def over_http(side: str, seconds: float) -> Throughput:
                side_base, side_path, pid = sides[side]
                cpu = tree_cpu(pid)
                before = cpu()
                result = await closed_loop(side_base, side_path, headers, seconds, concurrency)
                cpu_ms[side].append((cpu() - before) * 1000 / max(result.requests, 1))
                assert result.failed == 0, f"{side}: {result.failed} requests failed"
                return result

            floor_runs: list[Throughput] = []
            http_runs: dict[str, list[Throughput]] = {"api": [], "bare": []}
            try:
                async with httpx.AsyncClient(base_url=bare_base, timeout=10) as http:
                    await until_healthy(http, attempts=300)
                warm = min(seconds, 2.0)
                await timed(floor, warm, concurrency)
                await over_http("api", warm)
                await over_http("bare", warm)
                cpu_ms = {"api": [], "bare": []}
                for _ in range(runs):
                    floor_runs.append(await timed(floor, seconds, concurrency))
                    for side in http_runs:
                        http_runs[side].append(await over_http(side, seconds))
            finally:
                await asyncio.to_thread(bare.stop)
        return StatusReport(
            seconds=seconds,
            concurrency=concurrency,
            runs=runs,
            api_workers=api_workers,
            generator=http_runs["api"][0].generator,
            floor_rps=statistics.median(r.per_second for r in floor_runs),
            floor_p95_ms=statistics.median(r.p95_ms for r in floor_runs),
            api_rps=statistics.median(r.per_second for r in http_runs["api"]),
            api_p95_ms=statistics.median(r.p95_ms for r in http_runs["api"]),
            api_cpu_ms=statistics.median(cpu_ms["api"]),
            bare_rps=statistics.median(r.per_second for r in http_runs["bare"]),
            bare_p95_ms=statistics.median(r.p95_ms for r in http_runs["bare"]),
            bare_cpu_ms=statistics.median(cpu_ms["bare"]),
        )
    finally:
        if api is not None:
            await asyncio.to_thread(api.stop)
        await asyncio.to_thread(pg.stop)
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> StatusReport:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one measured run")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--api-workers", type=int, default=2)
    smoke = {"seconds": 1.0, "runs": 1, "concurrency": 4}
    args = parse_args(parser, argv, "one 1-second run: checks that it works", smoke)
    return publish(asyncio.run(run(args.seconds, args.concurrency, args.runs, args.api_workers)))


if __name__ == "__main__":
    main()
