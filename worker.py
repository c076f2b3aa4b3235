"""`python worker.py`: connect to Temporal and Postgres, then run the workers until stopped.

One worker serves GenerationWorkflow on TEMPORAL_TASK_QUEUE; one serves the housekeeping workflows on
TEMPORAL_MAINTENANCE_TASK_QUEUE, whose Schedules it creates or updates at start-up when SCHEDULES_ENABLED.
SIGTERM or SIGINT stops it gracefully (worker_shutdown.py); a start-up failure is one clear ERROR line
and exit code 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.generation import GenerationActivities
from activities.maintenance import MaintenanceActivities
from activities.mirror import run_closed_sweep
from ai.factory import build_provider
from ai.provider import AIProvider
from db.engine import make_engine
from db.housekeeping import Housekeeping
from db.repository import JobRepository
from observability import metrics
from observability.logging import configure_logging
from observability.tracing import flush_tracing, init_tracing
from settings import Settings, get_settings
from temporal_client import connect_temporal
from worker_shutdown import StopTracker, finish_handed_over
from workflows.generation import GenerationWorkflow
from workflows.maintenance import ReconcileWorkflow, RetentionWorkflow
from workflows.schedules import ensure_schedules

log = logging.getLogger("worker")


def build_worker(client: Client, settings: Settings, repo: JobRepository, provider: AIProvider) -> Worker:
    activities = GenerationActivities(repo, provider, settings)
    # A cancel reaches an activity only in a heartbeat response, and the SDK sends heartbeats at most every
    # 0.8 x heartbeat timeout unless told otherwise: pin the throttle so that a cancel (API, operator or
    # job deadline) reaches the AI call within about HEARTBEAT_THROTTLE_SECONDS (spec 3.1 step 5, 6.8).
    throttle = timedelta(seconds=settings.heartbeat_throttle_seconds)
    return Worker(
        client,
        task_queue=settings.temporal_task_queue,
        workflows=[GenerationWorkflow],
        activities=activities.all(),
        # No sandbox: it re-imported the workflow module for every run, ~20 % of the worker's CPU per job.
        # Determinism is checked in CI instead (docs/architecture.md, "GenerationWorkflow runs unsandboxed").
        workflow_runner=UnsandboxedWorkflowRunner(),
        max_cached_workflows=settings.worker_max_cached_workflows,
        graceful_shutdown_timeout=timedelta(seconds=settings.worker_shutdown_grace_seconds),
        max_heartbeat_throttle_interval=throttle,
        default_heartbeat_throttle_interval=throttle,
    )


def build_maintenance_worker(client: Client, settings: Settings, repo: JobRepository) -> Worker:
    activities = MaintenanceActivities(repo, Housekeeping(repo.engine), settings.reconcile_interval_seconds)
    return Worker(
        client,
        task_queue=settings.temporal_maintenance_task_queue,
        workflows=[ReconcileWorkflow, RetentionWorkflow],
        activities=activities.all(),
        graceful_shutdown_timeout=timedelta(seconds=settings.worker_shutdown_grace_seconds),
    )


async def upsert_schedules(client: Client, settings: Settings) -> None:
    """Create or update the housekeeping Schedules (also run by `python -m cli.temporal_setup`)."""
    await ensure_schedules(
        client,
        settings.temporal_maintenance_task_queue,
        settings.reconcile_interval_seconds,
        settings.retention_cron,
        settings.retention_days,
    )


@contextlib.asynccontextmanager
async def closed_sweep(client: Client, settings: Settings, repo: JobRepository) -> AsyncIterator[None]:
    """The visibility sweep of spec 6.10 as a loop beside the maintenance worker (docs/architecture.md
    says why not a Schedule); off when CLOSED_SWEEP_SECONDS is 0."""
    if settings.closed_sweep_seconds <= 0:
        yield
        return
    task = asyncio.create_task(
        run_closed_sweep(client, repo, Housekeeping(repo.engine), settings.closed_sweep_seconds)
    )
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def run(settings: Settings) -> None:
    tracker = StopTracker()
    async with metrics.temporal_runtime() as runtime:
        client = await connect_temporal(settings, runtime=runtime, interceptors=[tracker])
        await serve(settings, client, tracker)


async def serve(settings: Settings, client: Client, tracker: StopTracker) -> None:
    engine = make_engine(settings.database_url, settings.db_pool_size)
    provider = build_provider(settings)
    repo = JobRepository(engine)
    if settings.schedules_enabled:
        await upsert_schedules(client, settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    started = {"taskQueue": settings.temporal_task_queue, "identity": client.identity}
    log.info("worker started", extra={"event": "worker_started", **started})
    async with (
        build_worker(client, settings, repo, provider) as generation,
        build_maintenance_worker(client, settings, repo) as maintenance,
        closed_sweep(client, settings, repo),
    ):
        await stop.wait()
        tracker.stopping = True
        grace = settings.worker_shutdown_grace_seconds
        deadline = loop.time() + grace
        log.info("worker stopping", extra={"event": "worker_stopping", "graceSeconds": grace})
        # Both at once: polling stops, running activities get the grace period.
        await asyncio.gather(generation.shutdown(), maintenance.shutdown())
    handed_over = tracker.handed_over(generation.task_queue)
    await finish_handed_over(generation, handed_over, deadline)
    await provider.aclose()
    await engine.dispose()
    log.info("worker stopped", extra={"event": "worker_stopped", "handedOver": len(handed_over)})


def main() -> None:
    settings = get_settings()
    configure_logging("worker", settings.log_level)
    metrics.init_metrics("worker", settings)
    init_tracing("worker", settings)
    code = 0
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run(settings))
    except Exception as exc:  # e.g. Temporal unreachable or its certificate untrusted, namespace missing
        log.error(str(exc), extra={"event": "worker_failed", "cause": type(exc).__name__})
        code = 1
    metrics.install(None)
    flush_tracing()
    # temporalio's runtime threads can abort interpreter shutdown (SIGABRT, sdk-python #300); the worker
    # has stopped and the engine is disposed, so leave without it.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
