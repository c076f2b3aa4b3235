"""Benchmark: how fast control reaches a running job (issue 6.7), with the shipped defaults.

Four scenarios, each on ``--jobs`` SUBGOAL jobs running at once whose AI call has already run
``--ran-for`` seconds (many heartbeats; the offline provider with a 10-minute latency). The jobs are
cancelled or terminated one every ``--gap`` seconds while the others keep running (``--gap 0``: all at
the same instant, which on 2 cores mostly measures 20 CLI processes starting together); the deadlines
of all jobs fire together:

- API cancel → the AI call is cancelled: from sending POST /cancel to the provider call seeing its
  CancelledError (target ≤ 2 s);
- CLI cancel → row CANCELLED: from running `temporal workflow cancel -w …` to the row being CANCELLED;
- deadline → row TIMEOUT: `completed_at − deadline_at` of the row, both database timestamps (≤ 2 s);
- terminate → row CANCELLED: from running `temporal workflow terminate` to the row being CANCELLED
  by the worker's visibility sweep (≤ 5 s).

The worker and its visibility sweep run in this process, the API as its own uvicorn process, the CLI as
the shipped binary.

    .venv/bin/python -m bench.control_latency [--jobs 20] [--ran-for 15] [--gap 0.5]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from sqlalchemy import select
from temporalio.client import Client

from ai.offline import OfflineProvider
from ai.provider import AIRequest, AIResponse
from bench.report import Figure, record
from bench.services import Services, api, percentiles, seen_in_status, services, start_jobs
from cli.temporal_server import find_temporal_cli
from cli.temporal_setup import cli_env
from db.engine import make_engine
from db.models import ProcessingState
from db.repository import JobRepository
from domain.workflow_io import workflow_id_for
from settings import Settings
from temporal_client import connect_temporal
from worker import build_worker, closed_sweep

TEN_MINUTES_MS = 600_000


class CancelClock:
    """The AI edge of this benchmark: the offline provider, noting when each call starts and hears its
    cancel."""

    def __init__(self) -> None:
        self._inner = OfflineProvider(latency_ms=TEN_MINUTES_MS)
        self.started: dict[uuid.UUID, float] = {}
        self.cancelled: dict[uuid.UUID, float] = {}
        self.changed = asyncio.Condition()

    @property
    def name(self) -> str:
        return self._inner.name

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def generate(self, request: AIRequest) -> AIResponse:
        process_id = request.context.process_id
        await self._note(self.started, process_id)
        try:
            return await self._inner.generate(request)
        except asyncio.CancelledError:
            await self._note(self.cancelled, process_id)
            raise

    async def _note(self, times: dict[uuid.UUID, float], process_id: uuid.UUID) -> None:
        times[process_id] = time.monotonic()
        async with self.changed:
            self.changed.notify_all()

    async def all_in(self, times: dict[uuid.UUID, float], ids: list[uuid.UUID]) -> None:
        async with self.changed:
            await self.changed.wait_for(lambda: all(i in times for i in ids))


@asynccontextmanager
async def running(svc: Services, settings: Settings) -> AsyncIterator[tuple[Any, Client, CancelClock]]:
    """The worker with its sweep and the API for one scenario: (http client, Temporal client, clock)."""
    clock = CancelClock()
    engine = make_engine(settings.database_url, settings.db_pool_size)
    repo = JobRepository(engine)
    client = await connect_temporal(settings)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(build_worker(client, settings, repo, clock))
        await stack.enter_async_context(closed_sweep(client, settings, repo))
        http = await stack.enter_async_context(api(settings))
        yield http, client, clock
    await engine.dispose()


async def calls_running_for(clock: CancelClock, ids: list[uuid.UUID], seconds: float) -> None:
    await clock.all_in(clock.started, ids)
    await asyncio.sleep(max(0.0, max(clock.started[i] for i in ids) + seconds - time.monotonic()))


async def cli(settings: Settings, *argv: str) -> None:
    process = await asyncio.create_subprocess_exec(
        str(find_temporal_cli()),
        *argv,
        env=cli_env(settings),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(err.decode())


async def each_in_turn(
    ids: list[uuid.UUID], act: Callable[[uuid.UUID], Awaitable[None]], gap: float
) -> dict[uuid.UUID, float]:
    """Start ``act`` for one job every ``gap`` seconds (as operators and users act: one at a time, while
    every other job's call keeps running); returns when each was started (monotonic)."""
    sent: dict[uuid.UUID, float] = {}
    acting = []
    for process_id in ids:
        sent[process_id] = time.monotonic()
        acting.append(asyncio.ensure_future(act(process_id)))
        await asyncio.sleep(gap)
    await asyncio.gather(*acting)
    return sent


async def api_cancel(svc: Services, jobs: int, ran_for: float, gap: float) -> list[float]:
    settings = svc.settings()
    async with running(svc, settings) as (http, _, clock):
        ids = await start_jobs(http, jobs)
        await calls_running_for(clock, ids, ran_for)

        async def cancel(process_id: uuid.UUID) -> None:
            response = await http.post(f"/api/ai/async/cancel/{process_id}", json={"reason": "bench"})
            assert response.status_code == 200, response.text

        sent = await each_in_turn(ids, cancel, gap)
        await clock.all_in(clock.cancelled, ids)
        return [clock.cancelled[i] - sent[i] for i in ids]


async def operator_stop(svc: Services, jobs: int, ran_for: float, gap: float, *command: str) -> list[float]:
    """``temporal workflow <command> -w ai-gen-<id>`` for every job: seconds until each row is CANCELLED."""
    settings = svc.settings()
    async with running(svc, settings) as (http, _, clock):
        ids = await start_jobs(http, jobs)
        await calls_running_for(clock, ids, ran_for)
        engine = make_engine(settings.database_url)
        watch = asyncio.ensure_future(seen_in_status(engine, ids, {"CANCELLED"}))
        sent = await each_in_turn(
            ids, lambda i: cli(settings, "workflow", command[0], "-w", workflow_id_for(i), *command[1:]), gap
        )
        seen = await watch
        await engine.dispose()
        return [seen[i] - sent[i] for i in ids]


async def deadline(svc: Services, jobs: int, ran_for: float) -> list[float]:
    settings = svc.settings(job_deadline_seconds=int(ran_for) + 1)
    async with running(svc, settings) as (http, _, _clock):
        ids = await start_jobs(http, jobs)
        engine = make_engine(settings.database_url)
        await seen_in_status(engine, ids, {"TIMEOUT"}, limit=ran_for + 60)
        stmt = select(ProcessingState.completed_at, ProcessingState.deadline_at).where(
            ProcessingState.id.in_(ids)
        )
        async with engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        await engine.dispose()
        return [(r.completed_at - r.deadline_at).total_seconds() for r in rows]


async def main(jobs: int, ran_for: float, gap: float) -> None:
    async with services() as svc:
        results = {
            "API cancel -> AI call cancelled": (await api_cancel(svc, jobs, ran_for, gap), 2.0),
            "CLI cancel -> row CANCELLED": (await operator_stop(svc, jobs, ran_for, gap, "cancel"), 2.0),
            "deadline -> row TIMEOUT": (await deadline(svc, jobs, ran_for), 2.0),
            "terminate -> row CANCELLED": (
                await operator_stop(svc, jobs, ran_for, gap, "terminate", "--reason", "bench"),
                5.0,
            ),
        }
    print(f"jobs={jobs} each, AI calls running >= {ran_for:g} s, one action every {gap:g} s (seconds)")
    print(f"{'scenario':34} {'p50':>6} {'p95':>6} {'max':>6} {'target':>7}")
    for name, (values, target) in results.items():
        p50, p95, worst = percentiles(values)
        verdict = "ok" if p95 <= target else "MISSED"
        print(f"{name:34} {p50:6.2f} {p95:6.2f} {worst:6.2f} {target:6.1f}  {verdict}")
        record(Figure("control_latency", f"{name} p95", p95, "s", None, f"≤ {target:g} s", p95 <= target))


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)  # the SDK logs every cancelled activity with its traceback
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--ran-for", type=float, default=15.0)
    parser.add_argument("--gap", type=float, default=0.5, help="seconds between two actions (0: all at once)")
    args = parser.parse_args()
    asyncio.run(main(args.jobs, args.ran_for, args.gap))
