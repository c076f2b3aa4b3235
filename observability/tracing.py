"""Traces of spec 8.3: one request → workflow → activities trace.

The API's FastAPI instrumentation opens the server span; ``temporalio.contrib.opentelemetry.
TracingInterceptor`` on both processes' Temporal clients carries the context through Temporal headers
(StartWorkflow → RunWorkflow → StartActivity → RunActivity). Workflow code never imports this module
or the OpenTelemetry SDK (temporal-notes §5 #9): the interceptor does the workflow side.
"""

from __future__ import annotations

from uuid import UUID

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from observability.metrics import Service, otlp_url, service_resource
from settings import Settings


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
