"""`python worker.py`: connect to Temporal and Postgres, then run the generation worker until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from datetime import timedelta

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from activities.generation import GenerationActivities
from ai.factory import build_provider
from ai.provider import AIProvider
from db.engine import make_engine
from db.repository import JobRepository
from observability.logging import configure_logging
from settings import Settings, get_settings
from workflows.generation import GenerationWorkflow

log = logging.getLogger("worker")


async def connect_client(settings: Settings) -> Client:
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
    )


def build_worker(client: Client, settings: Settings, repo: JobRepository, provider: AIProvider) -> Worker:
    activities = GenerationActivities(repo, provider, settings)
    return Worker(
        client,
        task_queue=settings.temporal_task_queue,
        workflows=[GenerationWorkflow],
        activities=activities.all(),
        graceful_shutdown_timeout=timedelta(seconds=5),
    )


async def run(settings: Settings) -> None:
    engine = make_engine(settings.database_url, settings.db_pool_size)
    client = await connect_client(settings)
    provider = build_provider(settings)
    worker = build_worker(client, settings, JobRepository(engine), provider)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("worker started", extra={"event": "worker_started", "taskQueue": settings.temporal_task_queue})
    async with worker:
        await stop.wait()
    await provider.aclose()
    await engine.dispose()
    log.info("worker stopped", extra={"event": "worker_stopped"})


def main() -> None:
    settings = get_settings()
    configure_logging("worker", settings.log_level)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(settings))
    # temporalio's runtime threads can abort interpreter shutdown (SIGABRT, sdk-python #300); the worker
    # has stopped and the engine is disposed, so leave without it.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
