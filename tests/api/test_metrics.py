"""Spec 8.3 metrics of the API: AsyncProcessingStarted per 202, RateLimitRejected per 429, HTTP server
metrics (ApiErrors), and M129: a failing exporter or recorder changes neither the response nor the job."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from db.models import ProcessingState
from domain.enums import ProcessingStatus
from domain.errors import ErrorCode
from observability import metrics
from settings import Settings
from tests.support.api import assert_error, bearer, ensure_user, seed_tree, serve
from tests.support.jobs import Jobs
from tests.support.metrics_probe import (
    MetricsProbe,
    RaisingExemplarFilter,
    failing_collector,
    installed,
    labels,
)
from tests.support.servers import closed_port_address

ALICE = bearer("alice")
GENERATE = "/api/ai/async/generate"
SUBGOAL = {
    "type": "SUBGOAL_GENERATION",
    "params": {"title": "t", "description": "d", "background": "b", "deadline": "2099-01-01T00:00:00Z"},
}


@pytest.fixture
def probe() -> Iterator[MetricsProbe]:
    with installed() as p:
        yield p


async def status_of(engine: AsyncEngine, process_id: str) -> str:
    async with engine.connect() as conn:
        stmt = select(ProcessingState.status).where(ProcessingState.id == uuid.UUID(process_id))
        return str((await conn.execute(stmt)).scalar_one())


def emit_failures(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.__dict__["metric"] for r in caplog.records if getattr(r, "event", None) == "metric_emit_failed"]


async def test_each_generate_202_counts_one_start_and_a_refused_request_none(
    probe: MetricsProbe, clean_db: AsyncEngine, api_settings: Callable[..., Settings]
) -> None:
    async with serve(api_settings()) as http:
        assert (await http.post(GENERATE, json=SUBGOAL, headers=ALICE)).status_code == 202
        assert (await http.post(GENERATE, json={"type": "NOPE"}, headers=ALICE)).status_code == 400
        assert probe.series("AsyncProcessingStarted") == {
            labels(ProcessingType="SUBGOAL_GENERATION", Trigger="START"): 1
        }
        assert (await http.post(GENERATE, json=SUBGOAL, headers=bearer("bob"))).status_code == 202
    assert probe.value("AsyncProcessingStarted") == 2


async def test_a_retry_202_counts_one_start_with_trigger_retry(
    probe: MetricsProbe, clean_db: AsyncEngine, api_settings: Callable[..., Settings], jobs: Jobs
) -> None:
    alice = await ensure_user(clean_db, "alice")
    tree = await seed_tree(clean_db, alice, subgoals=1)
    parent = await jobs.pending(alice, target_id=tree.subgoal_ids[0])
    await jobs.processing(parent)
    await jobs.finish(parent, ProcessingStatus.FAILED, ErrorCode.AI_ERROR.value)
    async with serve(api_settings()) as http:
        response = await http.post(f"/api/ai/async/retry/{parent}", headers=ALICE)
    assert response.status_code == 202, response.text
    assert probe.series("AsyncProcessingStarted") == {
        labels(ProcessingType="ACTION_GENERATION", Trigger="RETRY"): 1
    }


async def test_each_429_counts_one_rate_limit_rejection_of_its_bucket(
    probe: MetricsProbe, clean_db: AsyncEngine, api_settings: Callable[..., Settings]
) -> None:
    async with serve(api_settings(rate_limit_write_per_minute=1, rate_limit_read_per_minute=1)) as http:
        assert (await http.post(GENERATE, json=SUBGOAL, headers=ALICE)).status_code == 202
        assert_error(await http.post(GENERATE, json=SUBGOAL, headers=ALICE), 429, "RATE_LIMIT_EXCEEDED")
        assert_error(await http.post(GENERATE, json=SUBGOAL, headers=ALICE), 429, "RATE_LIMIT_EXCEEDED")
        assert (await http.get("/api/ai/async/history", headers=ALICE)).status_code == 200
        assert_error(await http.get("/api/ai/async/history", headers=ALICE), 429, "RATE_LIMIT_EXCEEDED")
    assert probe.series("RateLimitRejected") == {labels(Bucket="write"): 2, labels(Bucket="read"): 1}
    assert probe.value("AsyncProcessingStarted") == 1


async def test_a_5xx_is_counted_by_the_http_server_metric_and_a_failed_start_by_the_failed_counter(
    probe: MetricsProbe, clean_db: AsyncEngine, api_settings: Callable[..., Settings]
) -> None:
    async with serve(api_settings(temporal_address=closed_port_address())) as http:
        assert_error(await http.post(GENERATE, json=SUBGOAL, headers=ALICE), 503, "WORKFLOW_START_ERROR")
    served = {
        (p.attributes["http.status_code"], p.attributes["http.target"]): p.count
        for p in probe.points("http.server.duration")
    }
    assert served == {(503, "/api/ai/async/generate"): 1}
    assert probe.value("AsyncProcessingStarted") == 0
    assert probe.series("AsyncProcessingFailed") == {
        labels(ProcessingType="SUBGOAL_GENERATION", Status="FAILED", ErrorType="WORKFLOW_START_ERROR"): 1
    }
    ((key, duration),) = probe.histograms("ProcessingDuration").items()
    assert key == labels(ProcessingType="SUBGOAL_GENERATION", Status="FAILED") and duration.count == 1


async def test_a_failing_exporter_changes_neither_the_response_nor_the_job(
    clean_db: AsyncEngine, api_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="observability.metrics")
    with failing_collector() as (endpoint, seen):
        settings = api_settings(metrics_enabled=True, otel_exporter_otlp_endpoint=endpoint)
        try:
            async with serve(settings) as http:
                response = await http.post(GENERATE, json=SUBGOAL, headers=ALICE)
                provider = metrics.meter_provider()
                assert provider is not None and provider.force_flush()
        finally:
            metrics.install(None)
    assert response.status_code == 202, response.text
    assert await status_of(clean_db, response.json()["data"]["processId"]) == "PENDING"
    assert seen and "export" in emit_failures(caplog)


async def test_a_failing_recorder_changes_neither_the_response_nor_the_job(
    clean_db: AsyncEngine, api_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="observability.metrics")
    # Our instruments fail; the HTTP instrumentation records on the SDK directly and is left alone.
    with installed({"exemplar_filter": RaisingExemplarFilter(spec_labels_only=True)}):
        async with serve(api_settings(rate_limit_write_per_minute=2)) as http:
            accepted = await http.post(GENERATE, json=SUBGOAL, headers=ALICE)
            process_id = accepted.json()["data"]["processId"]
            cancelled = await http.post(f"/api/ai/async/cancel/{process_id}", headers=ALICE)
            limited = await http.post(GENERATE, json=SUBGOAL, headers=ALICE)
    assert accepted.status_code == 202, accepted.text
    assert cancelled.status_code == 200 and cancelled.json()["data"]["status"] == "CANCELLED"
    assert_error(limited, 429, "RATE_LIMIT_EXCEEDED")
    assert await status_of(clean_db, process_id) == "CANCELLED"
    assert {"job_started", "job_finished", "rate_limit_rejected"} <= set(emit_failures(caplog))
