"""Traces of spec 8.3: one request → workflow → activities trace.

The API opens the server span of each request (``server_span``); ``temporalio.contrib.opentelemetry.
TracingInterceptor`` on both processes' Temporal clients carries the context through Temporal headers
(StartWorkflow → RunWorkflow → StartActivity → RunActivity). Workflow code never imports this module
or the OpenTelemetry SDK (temporal-notes §5 #9): the interceptor does the workflow side.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from opentelemetry import propagate, trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from observability.metrics import Service, otlp_url, service_resource
from settings import Settings

# A proxy until init_tracing installs the provider, then that provider's tracer: looking it up per
# request cost about 7 % of a status read's CPU.
_HTTP_TRACER = trace.get_tracer("api.http")


def init_tracing(service: Service, settings: Settings) -> None:
    """Install the SDK tracer provider once per process (later calls do nothing).

    Spans get real trace ids so the context crosses processes; they are exported over OTLP/HTTP when
    OTEL_EXPORTER_OTLP_ENDPOINT is set, and dropped otherwise.
    """
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return
    provider = TracerProvider(resource=service_resource(service))
    endpoint = settings.otel_exporter_otlp_endpoint
    if endpoint:
        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_url(endpoint, "traces")))
        )
    trace.set_tracer_provider(provider)


@contextmanager
def server_span(scope: Mapping[str, Any]) -> Iterator[Span]:
    """The SERVER span of one ASGI HTTP request, current while it is served, continuing the caller's trace
    (``traceparent``). Named by its method until ``end_server_span`` knows the route."""
    carrier = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
    attributes = {
        "http.method": scope["method"],
        "http.scheme": scope.get("scheme", "http"),
        "http.target": scope["path"],
        "http.flavor": scope.get("http_version", "1.1"),
    }
    with _HTTP_TRACER.start_as_current_span(
        scope["method"], context=propagate.extract(carrier), kind=SpanKind.SERVER, attributes=attributes
    ) as span:
        yield span


def end_server_span(span: Span, method: str, route: str | None, status: int) -> None:
    """Name the span after its route template (``GET /api/ai/async/status/{processId}``) and record the
    answer; a 5xx marks it as an error."""
    if route is not None:
        span.update_name(f"{method} {route}")
        span.set_attribute("http.route", route)
    span.set_attribute("http.status_code", status)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR))


def tag_activity_span(process_id: UUID, attempt: int, unit_id: UUID | None = None) -> None:
    """Put processId, attempt and (when the activity has one) unitId on the current span: inside an
    activity that is the interceptor's ``RunActivity`` span. Without a recording span it does nothing."""
    span = trace.get_current_span()
    span.set_attribute("processId", str(process_id))
    span.set_attribute("attempt", attempt)
    if unit_id is not None:
        span.set_attribute("unitId", str(unit_id))


def flush_tracing() -> None:
    """Export the spans still batched; for a process that leaves through ``os._exit`` (the worker), which
    skips the provider's own flush at exit."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.force_flush()
