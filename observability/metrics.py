"""The metrics of spec 8.3 (OpenTelemetry) and their export.

``init_metrics`` installs an SDK meter provider once per process: OTLP/HTTP when
OTEL_EXPORTER_OTLP_ENDPOINT is set, else a Prometheus ``/metrics`` on METRICS_HOST (loopback by default)
and METRICS_PORT (API 9464, worker 9465); a port that cannot be bound is logged at ERROR as
``metrics_server_failed``. Until then, or with METRICS_ENABLED=false, every instrument is a no-op. Each
emission function below is guarded: a failure to record or to export is logged as ``metric_emit_failed``
and never reaches the caller. The OpenTelemetry SDK lower-cases instrument names, so Prometheus
sees e.g. ``asyncprocessingstarted_total`` and ``processingduration_milliseconds_sum``
(docs/alert-rules.yml).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, ParamSpec
from wsgiref.simple_server import WSGIServer

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Meter, NoOpMeterProvider, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from prometheus_client import start_http_server
from temporalio.contrib.opentelemetry import MetricsExporter
from temporalio.runtime import MetricBuffer, Runtime, TelemetryConfig

from domain.enums import ProcessingStatus, ProcessingType
from settings import DEFAULT_METRICS_PORTS, Settings

log = logging.getLogger("observability.metrics")
P = ParamSpec("P")

Service = Literal["api", "worker"]
# Jobs and AI calls run for seconds to minutes (activity timeout ≤ 900 s, job deadline 600 s by default).
DURATION_BUCKETS_MS: Sequence[float] = (
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 120_000, 180_000, 240_000, 300_000,
    450_000, 600_000, 900_000, 1_800_000,
)  # fmt: skip
TEMPORAL_BUFFER_SIZE = 50_000
# A worker that stops running the reconciler must stop reporting its last QueueDepth (max() in the alert).
QUEUE_DEPTH_FRESH_SECONDS = 180.0  # 3 × the default RECONCILE_INTERVAL_SECONDS


class Trigger(StrEnum):
    START = "START"
    RETRY = "RETRY"


@dataclass
class _QueueDepth:
    """The last PENDING count this process saw, reported only while fresh."""

    value: int | None = None
    expires_at: float = 0.0

    def observe(self, _options: CallbackOptions) -> Iterable[Observation]:
        if self.value is None or time.monotonic() > self.expires_at:
            return []
        return [Observation(self.value)]


class _Instruments:
    def __init__(self, meter: Meter) -> None:
        job, ms = "{job}", "ms"
        self.started = meter.create_counter("AsyncProcessingStarted", job, "Jobs accepted (202)")
        self.completed = meter.create_counter("AsyncProcessingCompleted", job, "Jobs that became COMPLETED")
        self.failed = meter.create_counter("AsyncProcessingFailed", job, "Jobs that became FAILED")
        self.timeout = meter.create_counter("AsyncProcessingTimeout", job, "Jobs that became TIMEOUT")
        self.cancelled = meter.create_counter("AsyncProcessingCancelled", job, "Jobs that became CANCELLED")
        self.duration = meter.create_histogram(
            "ProcessingDuration",
            ms,
            "completed_at − created_at of a job entering a terminal state",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS_MS,
        )
        self.queue_depth = _QueueDepth()
        meter.create_observable_gauge(
            "QueueDepth",
            [self.queue_depth.observe],
            job,
            "PENDING jobs, as counted by the last reconciler run",
        )
        self.ai_duration = meter.create_histogram(
            "AIRequestDuration",
            ms,
            "Duration of one AI provider call",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS_MS,
        )
        self.ai_tokens = meter.create_counter("AITokensUsed", "{token}", "Tokens reported by the provider")
        self.ai_cost = meter.create_counter("AIEstimatedCostUsd", "{USD}", "Estimated AI cost in USD")
        self.rate_limited = meter.create_counter("RateLimitRejected", "{request}", "Requests answered 429")
        self.corrections = meter.create_counter("ReconcilerCorrections", job, "Rows fixed by the reconciler")
        # The HTTP server metric of the OpenTelemetry HTTP conventions (the alert on 5xx answers reads it as
        # http_server_duration_milliseconds_count{http_status_code, http_target}).
        self.http_duration = meter.create_histogram(
            "http.server.duration", ms, "Duration of HTTP server requests."
        )

    def zero_alerted_series(self) -> None:
        """Create at 0 the series whose first increment an alert must see (``increase`` ignores a series'
        first sample): any timeout, any PARTIAL_FAILURE, any reconciler correction."""
        for job_type in ProcessingType:
            t = job_type.value
            self.timeout.add(0, {"ProcessingType": t, "Status": ProcessingStatus.TIMEOUT.value})
            self.failed.add(
                0,
                {
                    "ProcessingType": t,
                    "Status": ProcessingStatus.FAILED.value,
                    "ErrorType": "PARTIAL_FAILURE",
                },
            )
        for status in ProcessingStatus:
            if status.is_terminal:
                self.corrections.add(0, {"ToStatus": status.value})


@dataclass
class _State:
    instruments: _Instruments
    provider: MeterProvider | None = None
    server: WSGIServer | None = None


_state = _State(_Instruments(NoOpMeterProvider().get_meter("mandala")))


def _emit_failed(what: str, exc: BaseException | None) -> None:
    log.warning(
        "metric emit failed",
        extra={
            "event": "metric_emit_failed",
            "metric": what,
            "cause": type(exc).__name__ if exc else "export result FAILURE",
        },
    )


def _guarded(fn: Callable[P, None]) -> Callable[P, None]:
    @functools.wraps(fn)
    def emit(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            fn(*args, **kwargs)
        except Exception as exc:  # a metric must never fail the request or the job
            _emit_failed(fn.__name__, exc)

    return emit


# ---------------------------------------------------------------------------------------- emission


@_guarded
def job_started(processing_type: str, trigger: Trigger) -> None:
    """AsyncProcessingStarted: the API answered 202 to generate (START) or retry (RETRY)."""
    _state.instruments.started.add(1, {"ProcessingType": processing_type, "Trigger": trigger.value})


@_guarded
def job_finished(
    processing_type: str,
    status: ProcessingStatus,
    duration_ms: float,
    *,
    error_type: str | None = None,
    cancelled_by: str | None = None,
) -> None:
    """The terminal counter of ``status`` and ProcessingDuration, once per applied terminal transition."""
    m = _state.instruments
    labels = {"ProcessingType": processing_type, "Status": status.value}
    if status is ProcessingStatus.COMPLETED:
        m.completed.add(1, labels)
    elif status is ProcessingStatus.FAILED:
        m.failed.add(1, labels | {"ErrorType": error_type or "UNKNOWN_ERROR"})
    elif status is ProcessingStatus.TIMEOUT:
        m.timeout.add(1, labels)
    elif status is ProcessingStatus.CANCELLED:
        cancelled = {"ProcessingType": processing_type, "CancelledBy": cancelled_by or "UNKNOWN"}
        m.cancelled.add(1, cancelled | {"ErrorType": error_type or "CANCELLED"})
    else:
        raise ValueError(f"{status} is not terminal")
    m.duration.record(duration_ms, labels)


@_guarded
def ai_call(
    provider: str,
    processing_type: str,
    outcome: str,
    duration_ms: float,
    *,
    input_tokens: int = 0,
    output_tokens: int = 0,
    cost_usd: float = 0.0,
) -> None:
    """AIRequestDuration, AITokensUsed and AIEstimatedCostUsd for one provider call."""
    m = _state.instruments
    labels = {"Provider": provider, "ProcessingType": processing_type}
    m.ai_duration.record(duration_ms, labels | {"Outcome": outcome})
    m.ai_tokens.add(input_tokens, labels | {"Direction": "input"})
    m.ai_tokens.add(output_tokens, labels | {"Direction": "output"})
    m.ai_cost.add(cost_usd, labels)


@_guarded
def http_served(
    method: str, route: str | None, status: int, duration_ms: float, scheme: str, flavor: str
) -> None:
    """http.server.duration: one HTTP request answered (``route``: its template, None when none matched)."""
    attributes: dict[str, str | int] = {
        "http.method": method,
        "http.scheme": scheme,
        "http.flavor": flavor,
        "http.status_code": status,
    }
    if route is not None:
        attributes["http.target"] = route
    _state.instruments.http_duration.record(duration_ms, attributes)


@_guarded
def rate_limit_rejected(bucket: str) -> None:
    """RateLimitRejected: one request answered 429."""
    _state.instruments.rate_limited.add(1, {"Bucket": bucket})


@_guarded
def reconciler_correction(to_status: ProcessingStatus) -> None:
    """ReconcilerCorrections: the reconciler ended one open row whose workflow had already closed."""
    _state.instruments.corrections.add(1, {"ToStatus": to_status.value})


@_guarded
def set_queue_depth(n: int, fresh_for_seconds: float = QUEUE_DEPTH_FRESH_SECONDS) -> None:
    """QueueDepth: the number of PENDING rows, set by each reconciler run; this process stops reporting it
    ``fresh_for_seconds`` later unless a newer run sets it again (pass 3 × RECONCILE_INTERVAL_SECONDS)."""
    gauge = _state.instruments.queue_depth
    gauge.value, gauge.expires_at = n, time.monotonic() + fresh_for_seconds


# ------------------------------------------------------------------------------------------ export


class _GuardedExporter(MetricExporter):
    """Logs ``metric_emit_failed`` for an export that raised or failed; the reader thread carries on."""

    def __init__(self, inner: MetricExporter) -> None:
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self._inner = inner

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        try:
            result = self._inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        except Exception as exc:
            _emit_failed("export", exc)
            return MetricExportResult.FAILURE
        if result is not MetricExportResult.SUCCESS:
            _emit_failed("export", None)
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._inner.shutdown(timeout_millis=timeout_millis, **kwargs)


def service_resource(service: Service) -> Resource:
    return Resource.create({"service.name": f"mandala-{service}"})


def otlp_url(endpoint: str, signal: Literal["metrics", "traces"]) -> str:
    """OTEL_EXPORTER_OTLP_ENDPOINT is a base URL; OTLP/HTTP posts each signal to ``/v1/<signal>``."""
    return f"{endpoint.rstrip('/')}/v1/{signal}"


def install(provider: MeterProvider | None) -> None:
    """Record every instrument on ``provider`` (None: no-op), shutting down what was installed before.

    ``init_metrics`` uses it; tests use it with an ``InMemoryMetricReader`` and put None back after.
    """
    previous, server = _state.provider, _state.server
    meter = (provider or NoOpMeterProvider()).get_meter("mandala")
    _state.instruments, _state.provider, _state.server = _Instruments(meter), provider, None
    if provider is not None:
        _guarded(_state.instruments.zero_alerted_series)()
    if server is not None:
        server.shutdown()
        server.server_close()
    if previous is not None:
        previous.shutdown()


def meter_provider() -> MeterProvider | None:
    """The installed SDK provider, for other instrumentation (FastAPI, Temporal SDK metrics)."""
    return _state.provider


def init_metrics(service: Service, settings: Settings) -> None:
    """Start exporting this process's metrics; idempotent, and a no-op when METRICS_ENABLED is false."""
    if not settings.metrics_enabled or _state.provider is not None:
        return
    resource = service_resource(service)
    endpoint = settings.otel_exporter_otlp_endpoint
    if endpoint:
        exporter = _GuardedExporter(OTLPMetricExporter(endpoint=otlp_url(endpoint, "metrics")))
        install(MeterProvider([PeriodicExportingMetricReader(exporter)], resource=resource))
        return
    install(MeterProvider([PrometheusMetricReader()], resource=resource))
    port = settings.metrics_port or DEFAULT_METRICS_PORTS[service]
    try:
        _state.server, _ = start_http_server(port, addr=settings.metrics_host)
    except OSError as exc:  # e.g. the port is taken: the process still works, without /metrics
        log.error(
            "metrics cannot be served",
            extra={
                "event": "metrics_server_failed",
                "host": settings.metrics_host,
                "port": port,
                "cause": f"{type(exc).__name__}: {exc}",
                "fix": "set METRICS_PORT to a free port (one per process on a host)",
            },
        )


@asynccontextmanager
async def temporal_runtime() -> AsyncIterator[Runtime | None]:
    """A Temporal Runtime whose SDK metrics (temporal_*) are exported with this process's own, for as long
    as the context is open; None when metrics are off (the caller then uses the default runtime)."""
    provider = _state.provider
    if provider is None:
        yield None
        return
    buffer = MetricBuffer(TEMPORAL_BUFFER_SIZE)
    runtime = Runtime(telemetry=TelemetryConfig(metrics=buffer))
    async with MetricsExporter(buffer, provider, on_error=lambda exc: _emit_failed("temporal_sdk", exc)):
        yield runtime
