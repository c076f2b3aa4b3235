"""Read what observability.metrics recorded, through an in-memory reader on a real SDK meter provider."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.metrics import ExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader, NumberDataPoint
from opentelemetry.util.types import Attributes

from observability import metrics


class MetricsProbe:
    def __init__(self, provider_options: dict[str, Any] | None = None) -> None:
        self.reader = InMemoryMetricReader()
        self.provider = MeterProvider(metric_readers=[self.reader], **(provider_options or {}))

    def points(self, name: str) -> list[Any]:
        """Every data point of the instrument ``name`` (as written in spec 8.3; the SDK lower-cases it)."""
        data = self.reader.get_metrics_data()
        if data is None:
            return []
        return [
            point
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for metric in sm.metrics
            if metric.name == name.lower()
            for point in metric.data.data_points
        ]

    def series(self, name: str) -> dict[frozenset[tuple[str, Any]], float]:
        """Counter or gauge: label set → value, without the series still at 0."""
        out = {}
        for p in self.points(name):
            assert isinstance(p, NumberDataPoint)
            if p.value:
                out[frozenset((p.attributes or {}).items())] = float(p.value)
        return out

    def value(self, name: str, **labels: str) -> float:
        """The sum of the counter's series whose labels include ``labels``."""
        return sum(v for key, v in self.series(name).items() if set(labels.items()) <= key)

    def histograms(self, name: str) -> dict[frozenset[tuple[str, Any]], HistogramDataPoint]:
        out = {}
        for p in self.points(name):
            assert isinstance(p, HistogramDataPoint)
            out[frozenset((p.attributes or {}).items())] = p
        return out


def labels(**kv: str) -> frozenset[tuple[str, str]]:
    return frozenset(kv.items())


@contextmanager
def installed(provider_options: dict[str, Any] | None = None) -> Iterator[MetricsProbe]:
    """Record every metric of this process into a fresh probe; back to the no-op meter afterwards."""
    probe = MetricsProbe(provider_options)
    metrics.install(probe.provider)
    try:
        yield probe
    finally:
        metrics.install(None)


class RaisingExemplarFilter(ExemplarFilter):
    """Makes the SDK's recording calls raise: every one, or only those carrying a spec 8.3 label (the
    CamelCase keys such as ``ProcessingType``; the HTTP instrumentation's keys are lower case)."""

    def __init__(self, spec_labels_only: bool = False) -> None:
        self.spec_labels_only = spec_labels_only

    def should_sample(
        self, value: float, time_unix_nano: int, attributes: Attributes, context: Context
    ) -> bool:
        if not self.spec_labels_only or any(key[:1].isupper() for key in attributes or {}):
            raise RuntimeError("recording failed")
        return False


@contextmanager
def failing_collector() -> Iterator[tuple[str, list[str]]]:
    """A loopback OTLP/HTTP endpoint that answers every export with 500; yields (base URL, paths seen)."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            seen.append(self.path)
            self.send_response(500)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
