"""Spec 8.3 traces: one trace spans request → workflow → activities; activity spans carry the job's ids."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from ai.factory import build_provider
from db.repository import JobRepository
from observability.tracing import flush_tracing, init_tracing
from settings import Settings
from tests.support.api import bearer, serve
from tests.support.jobs import subgoal_body, wait_status
from worker import build_worker


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Every span this process ends from now on (the global provider cannot drop a processor: the exporter
    is shut down afterwards, which makes it discard what follows)."""
    init_tracing("api", Settings())
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()


def named(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


async def test_one_trace_from_the_request_to_the_activities(
    spans: InMemorySpanExporter,
    repo: JobRepository,
    temporal_env: WorkflowEnvironment,
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(rate_limit_write_per_minute=1000, rate_limit_read_per_minute=1000)
    worker_client = await Client.connect(
        temporal_env.client.service_client.config.target_host,
        data_converter=pydantic_data_converter,
        interceptors=[TracingInterceptor()],
    )
    provider = build_provider(settings)
    async with build_worker(worker_client, settings, repo, provider), serve(settings) as http:
        response = await http.post(
            "/api/ai/async/generate", json=subgoal_body(), headers=bearer("trace-user", settings.jwt_secret)
        )
        assert response.status_code == 202, response.text
        process_id = response.json()["data"]["processId"]
        await wait_status(repo, uuid.UUID(process_id), "COMPLETED", seconds=30)
    await provider.aclose()

    finished = spans.get_finished_spans()
    (server,) = named(finished, "POST /api/ai/async/generate")
    trace_id = server.context.trace_id if server.context else None
    in_trace = tuple(s for s in finished if s.context and s.context.trace_id == trace_id)
    for name in (
        "StartWorkflow:GenerationWorkflow",
        "RunWorkflow:GenerationWorkflow",
        "StartActivity:generate_unit",
        "RunActivity:generate_unit",
        "RunActivity:persist_unit",
    ):
        assert named(in_trace, name), f"{name} is not in the request's trace"
    (run_activity,) = named(in_trace, "RunActivity:generate_unit")
    attributes = dict(run_activity.attributes or {})
    job = await repo.get_job(uuid.UUID(process_id))
    assert job is not None
    assert (attributes["processId"], attributes["unitId"], attributes["attempt"]) == (
        process_id,
        str(job.target_id),
        1,
    )


def test_flush_exports_the_batched_spans() -> None:
    init_tracing("worker", Settings())
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=3_600_000))
    try:
        with trace.get_tracer("test").start_as_current_span("batched"):
            pass
        assert exporter.get_finished_spans() == ()
        flush_tracing()
        assert [s.name for s in exporter.get_finished_spans()] == ["batched"]
    finally:
        exporter.shutdown()
