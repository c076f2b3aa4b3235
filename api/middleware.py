"""Per-request context, common headers (spec 5.1) and HTTP telemetry (spec 8.3), as one plain ASGI
middleware.

It runs outside the exception handlers, so it also stamps headers on 404/405 and turns any exception that
escaped them (database failures, bugs) into the envelope: 503/500 with no exception text. Around each
request it keeps the server span current (the trace continues into Temporal) and records
http.server.duration once the answer is known. One layer does all this because each ASGI layer, and the
generic OpenTelemetry instrumentation it replaces (which searched the route table on every request),
cost a noticeable share of a status read (docs/benchmarks.md).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import as_app_error, render_app_error
from api.i18n import language_from
from api.log_context import log_event, log_exception, request_scope
from observability import metrics
from observability.tracing import end_server_span, server_span

REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
RATE_LIMIT_HEADERS_KEY = "rate_limit_headers"
CLIENT_CLOSED_REQUEST = 499  # logged only (nginx's code): nobody is left to answer


def request_id_from(incoming: str | None) -> str:
    if incoming and REQUEST_ID_PATTERN.match(incoming):
        return incoming
    return f"req-{uuid.uuid4()}"


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        request_id = request_id_from(headers.get("x-request-id"))
        lang = language_from(headers.get("accept-language"))
        state: dict[str, Any] = scope.setdefault("state", {})
        state.update(request_id=request_id, lang=lang)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status, response_started = message["status"], True
                out = MutableHeaders(scope=message)
                out["X-Request-ID"] = request_id
                out["Cache-Control"] = "no-store"
                out.setdefault("Content-Language", lang.value)  # a replay keeps its stored language
                out.update(state.get(RATE_LIMIT_HEADERS_KEY, {}))
            await send(message)

        with request_scope(request_id), server_span(scope) as span:
            try:
                await self.app(scope, receive, send_with_headers)
            except ClientDisconnect:  # the client hung up while sending its body: no fault of ours
                status = CLIENT_CLOSED_REQUEST
                log_event(logging.INFO, "client_disconnected", "client disconnected before sending its body")
            except Exception as exc:
                log_exception("unhandled_exception", "unhandled exception")
                if not response_started:
                    await render_app_error(as_app_error(exc), lang)(scope, receive, send_with_headers)
            finally:
                route: str | None = getattr(scope.get("route"), "path", None)
                method: str = scope["method"]
                duration_ms = (time.perf_counter() - started) * 1000
                end_server_span(span, method, route, status)
                metrics.http_served(
                    method,
                    route,
                    status,
                    duration_ms,
                    scope.get("scheme", "http"),
                    scope.get("http_version", "1.1"),
                )
                log_event(
                    logging.INFO,
                    "http_request",
                    "http request",
                    method=method,
                    route=route,
                    status=status,
                    durationMs=round(duration_ms, 1),
                )
