"""`python worker.py`: connect to Temporal and Postgres, then run the workers until stopped.

One worker serves GenerationWorkflow on TEMPORAL_TASK_QUEUE; one serves the housekeeping workflows on
TEMPORAL_MAINTENANCE_TASK_QUEUE, whose Schedules it creates or updates at start-up.
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
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime
from temporalio.worker import Worker

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
from workflows.generation import GenerationWorkflow
from workflows.maintenance import ReconcileWorkflow, RetentionWorkflow
from workflows.schedules import ensure_schedules

log = logging.getLogger("worker")


async def connect_client(settings: Settings, runtime: Runtime | None = None) -> Client:
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
        interceptors=[TracingInterceptor()],
        runtime=runtime,
    )


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
        graceful_shutdown_timeout=timedelta(seconds=5),
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
        graceful_shutdown_timeout=timedelta(seconds=5),
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
    async with metrics.temporal_runtime() as runtime:
        await serve(settings, await connect_client(settings, runtime))


async def serve(settings: Settings, client: Client) -> None:
    engine = make_engine(settings.database_url, settings.db_pool_size)
    provider = build_provider(settings)
    repo = JobRepository(engine)
    if settings.schedules_enabled:
        await ensure_schedules(
            client,
            settings.temporal_maintenance_task_queue,
            settings.reconcile_interval_seconds,
            settings.retention_cron,
            settings.retention_days,
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("worker started", extra={"event": "worker_started", "taskQueue": settings.temporal_task_queue})
    async with (
        build_worker(client, settings, repo, provider),
        build_maintenance_worker(client, settings, repo),
        closed_sweep(client, settings, repo),
    ):
        await stop.wait()
    await provider.aclose()
    await engine.dispose()
    log.info("worker stopped", extra={"event": "worker_stopped"})


def main() -> None:
    settings = get_settings()
    configure_logging("worker", settings.log_level)
    metrics.init_metrics("worker", settings)
    init_tracing("worker", settings)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(settings))
    metrics.install(None)
    flush_tracing()
    # temporalio's runtime threads can abort interpreter shutdown (SIGABRT, sdk-python #300); the worker
    # has stopped and the engine is disposed, so leave without it.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
