"""Spec 8.3 instruments, their export and M129's guarantee that a metric never fails its caller."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psutil
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricsData,
    PeriodicExportingMetricReader,
)

from domain.enums import ProcessingStatus
from observability import metrics
from settings import Settings
from tests.support.metrics_probe import (
    MetricsProbe,
    RaisingExemplarFilter,
    failing_collector,
    installed,
    labels,
)
from tests.support.servers import free_port

SUBGOAL = "SUBGOAL_GENERATION"


@pytest.fixture
def probe() -> Iterator[MetricsProbe]:
    with installed() as p:
        yield p


def emit_failures(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.__dict__["metric"] for r in caplog.records if getattr(r, "event", None) == "metric_emit_failed"]


def test_started_rate_limit_reconciler_and_queue_depth(probe: MetricsProbe) -> None:
    metrics.job_started(SUBGOAL, metrics.Trigger.START)
    metrics.job_started(SUBGOAL, metrics.Trigger.RETRY)
    metrics.job_started(SUBGOAL, metrics.Trigger.START)
    metrics.rate_limit_rejected("write")
    metrics.reconciler_correction(ProcessingStatus.TIMEOUT)
    metrics.set_queue_depth(7)
    metrics.set_queue_depth(3)
    assert probe.series("AsyncProcessingStarted") == {
        labels(ProcessingType=SUBGOAL, Trigger="START"): 2,
        labels(ProcessingType=SUBGOAL, Trigger="RETRY"): 1,
    }
    assert probe.series("RateLimitRejected") == {labels(Bucket="write"): 1}
    assert probe.series("ReconcilerCorrections") == {labels(ToStatus="TIMEOUT"): 1}
    assert probe.series("QueueDepth") == {labels(): 3}


def test_queue_depth_is_reported_only_while_fresh(probe: MetricsProbe) -> None:
    metrics.set_queue_depth(120, fresh_for_seconds=0.05)
    assert probe.series("QueueDepth") == {labels(): 120}
    time.sleep(0.1)
    assert probe.points("QueueDepth") == []
    metrics.set_queue_depth(0)
    assert [p.value for p in probe.points("QueueDepth")] == [0]


@pytest.mark.parametrize(
    ("status", "error_type", "cancelled_by", "counter", "counter_labels"),
    [
        (ProcessingStatus.COMPLETED, None, None, "AsyncProcessingCompleted", {"Status": "COMPLETED"}),
        (
            ProcessingStatus.FAILED,
            "PARTIAL_FAILURE",
            None,
            "AsyncProcessingFailed",
            {"Status": "FAILED", "ErrorType": "PARTIAL_FAILURE"},
        ),
        (ProcessingStatus.FAILED, None, None, "AsyncProcessingFailed", {"ErrorType": "UNKNOWN_ERROR"}),
        (ProcessingStatus.TIMEOUT, "TIMEOUT_ERROR", None, "AsyncProcessingTimeout", {"Status": "TIMEOUT"}),
        (
            ProcessingStatus.CANCELLED,
            "TERMINATED",
            "OPERATOR",
            "AsyncProcessingCancelled",
            {"CancelledBy": "OPERATOR", "ErrorType": "TERMINATED"},
        ),
    ],
)
def test_each_terminal_status_counts_once_with_its_labels_and_records_duration(
    probe: MetricsProbe,
    status: ProcessingStatus,
    error_type: str | None,
    cancelled_by: str | None,
    counter: str,
    counter_labels: dict[str, str],
) -> None:
    metrics.job_finished(SUBGOAL, status, 1234.5, error_type=error_type, cancelled_by=cancelled_by)
    terminal = [
        "AsyncProcessingCompleted",
        "AsyncProcessingFailed",
        "AsyncProcessingTimeout",
        "AsyncProcessingCancelled",
    ]
    assert {name: probe.value(name) for name in terminal} == {n: float(n == counter) for n in terminal}
    ((key, value),) = probe.series(counter).items()
    assert value == 1 and set(counter_labels.items()) <= key and ("ProcessingType", SUBGOAL) in key
    ((key, point),) = probe.histograms("ProcessingDuration").items()
    assert key == labels(ProcessingType=SUBGOAL, Status=status.value)
    assert (point.count, point.sum) == (1, 1234.5)
    assert 300_000 in point.explicit_bounds and 240_000 in point.explicit_bounds


def test_ai_call_records_duration_tokens_by_direction_and_cost(probe: MetricsProbe) -> None:
    metrics.ai_call("openai", SUBGOAL, "SUCCESS", 850, input_tokens=120, output_tokens=30, cost_usd=0.25)
    metrics.ai_call("openai", SUBGOAL, "TRANSIENT", 40)
    ai = {"Provider": "openai", "ProcessingType": SUBGOAL}
    durations = probe.histograms("AIRequestDuration")
    assert {k: (p.count, p.sum) for k, p in durations.items()} == {
        labels(**ai, Outcome="SUCCESS"): (1, 850),
        labels(**ai, Outcome="TRANSIENT"): (1, 40),
    }
    assert probe.series("AITokensUsed") == {
        labels(**ai, Direction="input"): 120,
        labels(**ai, Direction="output"): 30,
    }
    assert probe.series("AIEstimatedCostUsd") == {labels(**ai): 0.25}


def test_series_that_alerts_watch_exist_at_zero_before_the_first_event(probe: MetricsProbe) -> None:
    zero = {frozenset((p.attributes or {}).items()) for p in probe.points("AsyncProcessingTimeout")}
    assert labels(ProcessingType="TASK_GENERATION", Status="TIMEOUT") in zero
    partial = [p for p in probe.points("AsyncProcessingFailed") if p.value == 0]
    assert {p.attributes["ErrorType"] for p in partial} == {"PARTIAL_FAILURE"} and len(partial) == 3
    assert {p.attributes["ToStatus"] for p in probe.points("ReconcilerCorrections")} == {
        "COMPLETED",
        "FAILED",
        "TIMEOUT",
        "CANCELLED",
    }


def test_a_recording_failure_is_logged_and_never_raised(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="observability.metrics")
    with installed({"exemplar_filter": RaisingExemplarFilter()}):
        metrics.job_started(SUBGOAL, metrics.Trigger.START)
        metrics.job_finished(SUBGOAL, ProcessingStatus.COMPLETED, 10)
        metrics.ai_call("offline", SUBGOAL, "SUCCESS", 1, input_tokens=1, output_tokens=1)
        metrics.rate_limit_rejected("read")
        metrics.reconciler_correction(ProcessingStatus.FAILED)
        metrics.set_queue_depth(1)
    assert emit_failures(caplog) == [
        "zero_alerted_series",
        "job_started",
        "job_finished",
        "ai_call",
        "rate_limit_rejected",
        "reconciler_correction",
    ]


def test_a_non_terminal_status_is_refused_without_raising(
    probe: MetricsProbe, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="observability.metrics")
    metrics.job_finished(SUBGOAL, ProcessingStatus.PROCESSING, 10)
    assert emit_failures(caplog) == ["job_finished"]
    assert probe.histograms("ProcessingDuration") == {}


def test_disabled_metrics_install_nothing_and_every_call_is_a_no_op() -> None:
    metrics.init_metrics("api", Settings(metrics_enabled=False, otel_exporter_otlp_endpoint="http://x:1"))
    assert metrics.meter_provider() is None
    metrics.job_started(SUBGOAL, metrics.Trigger.START)
    metrics.set_queue_depth(5)


def test_failing_otlp_export_is_logged_and_the_caller_never_sees_it(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="observability.metrics")
    with failing_collector() as (endpoint, seen):
        metrics.init_metrics("worker", Settings(metrics_enabled=True, otel_exporter_otlp_endpoint=endpoint))
        try:
            provider = metrics.meter_provider()
            assert provider is not None
            metrics.init_metrics("worker", Settings(metrics_enabled=True))  # idempotent: still OTLP
            assert metrics.meter_provider() is provider
            metrics.job_started(SUBGOAL, metrics.Trigger.START)
            assert provider.force_flush() is True
        finally:
            metrics.install(None)
    assert seen and set(seen) == {"/v1/metrics"}
    assert "export" in emit_failures(caplog)


class RaisingExporter(MetricExporter):
    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> Any:
        raise ConnectionError("collector gone")

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        return None


def test_an_exporter_that_raises_is_contained_by_the_guard(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="observability.metrics")
    guarded = metrics._GuardedExporter(RaisingExporter())
    reader = PeriodicExportingMetricReader(guarded, export_interval_millis=3_600_000)
    metrics.install(MeterProvider(metric_readers=[reader]))
    try:
        metrics.rate_limit_rejected("write")
        reader.force_flush()
    finally:
        metrics.install(None)  # the final collection at shutdown fails the same way
    assert set(emit_failures(caplog)) == {"export"}


def listening_addresses(port: int) -> set[str]:
    """The local addresses this process listens on at `port`."""
    return {
        c.laddr.ip
        for c in psutil.Process().net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    }


def test_prometheus_endpoint_serves_the_instruments_on_loopback_by_default() -> None:
    port = free_port()
    metrics.init_metrics("worker", Settings(metrics_enabled=True, metrics_port=port))
    try:
        metrics.job_started(SUBGOAL, metrics.Trigger.RETRY)
        metrics.job_finished(SUBGOAL, ProcessingStatus.COMPLETED, 61_000)
        body = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert listening_addresses(port) == {"127.0.0.1"}
    finally:
        metrics.install(None)
    assert 'asyncprocessingstarted_total{ProcessingType="SUBGOAL_GENERATION",Trigger="RETRY"' in body
    assert "processingduration_milliseconds_sum{" in body
    assert 'service_name="mandala-worker"' in body
    with pytest.raises(httpx.ConnectError):  # install(None) stopped the server
        httpx.get(f"http://127.0.0.1:{port}/metrics")

    metrics.init_metrics("api", Settings(metrics_enabled=True, metrics_port=port, metrics_host="0.0.0.0"))
    try:
        assert listening_addresses(port) == {"0.0.0.0"}
    finally:
        metrics.install(None)


def test_a_taken_metrics_port_is_logged_as_an_error_and_the_process_carries_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="observability.metrics")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        metrics.init_metrics("api", Settings(metrics_enabled=True, metrics_port=busy))
        try:
            metrics.job_started(SUBGOAL, metrics.Trigger.START)
        finally:
            metrics.install(None)
    [record] = [r for r in caplog.records if getattr(r, "event", None) == "metrics_server_failed"]
    assert record.levelno == logging.ERROR
    assert (record.__dict__["host"], record.__dict__["port"]) == ("127.0.0.1", busy)
    assert "METRICS_PORT" in record.__dict__["fix"]
    assert emit_failures(caplog) == []
