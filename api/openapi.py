"""The OpenAPI document (served at /openapi.json, rendered offline at /docs).

Routes declare their success model, status code and catalogue errors in their decorators with the helpers
below; request bodies, query parameters and headers are declared through ``openapi_extra`` from
``api/request_shapes.py``, because the API validates them itself (catalogue errors, never FastAPI's 422).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import TypeAdapter
from pydantic.json_schema import JsonSchemaMode

from api import request_shapes
from api.response_shapes import AcceptedEnvelope, ErrorEnvelope
from domain.errors import CATALOGUE, ErrorCode

REF = "#/components/schemas/{model}"

DESCRIPTION = """\
Goal-mandala generation: each AI generation job is a durable workflow; clients start a job, then poll its
status or follow its event stream, and read the generated tree.

* Every endpoint but `/health*` needs `Authorization: Bearer <JWT>` (`mandala token --sub USER` in
  development).
* Answers are `{"success": true, "data": …}` or `{"success": false, "error": {code, message, retryable,
  details?}}`; the codes are the error catalogue (docs/error-codes.md). Validation errors are 400 with
  `details.fields: [{field, message}]`.
* `Accept-Language: en…` answers in English, anything else in Japanese (`Content-Language` says which).
* Per user, 20 writes and 120 reads a minute; limited answers carry `RateLimit-Policy`, `RateLimit` and
  `X-RateLimit-*`, and 429 carries `Retry-After`.
"""

# Body shapes, named as their components are; query shapes become parameters, not components.
_BODY_TYPES: dict[str, Any] = {
    "GenerateRequest": request_shapes.GenerateRequest,
    "RetryRequest": request_shapes.RetryRequest,
    "CancelRequest": request_shapes.CancelRequest,
}
_QUERY_TYPES: dict[str, Any] = {
    "HistoryQuery": request_shapes.HistoryQuery,
    "EventsQuery": request_shapes.EventsQuery,
}

# Codes any authenticated, rate-limited endpoint may answer (spec 5.1, 5.2).
AUTHENTICATED = (
    ErrorCode.UNAUTHORIZED,
    ErrorCode.TOKEN_EXPIRED,
    ErrorCode.RATE_LIMIT_EXCEEDED,
    ErrorCode.INTERNAL_ERROR,
    ErrorCode.DATABASE_ERROR,
    ErrorCode.DATABASE_CONNECTION_ERROR,
)
_ERROR_HEADERS = {
    401: {"WWW-Authenticate": "`Bearer`"},
    429: {"Retry-After": "Seconds until the window resets (at least 1)"},
}
_COMMON_HEADERS = (
    ("Accept-Language", "`en…` answers in English; anything else in Japanese", {"type": "string"}),
    (
        "X-Request-ID",
        "Echoed when it matches `^[A-Za-z0-9._-]{1,128}$`, else `req-<uuid4>`",
        {"type": "string"},
    ),
)
EVENT_STREAM: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The JSON page, or with `Accept: text/event-stream` the event stream: "
        "`retry: 2000`, then `id: <seq>`, `event: <type>`, `data: <Event as JSON>` per event, "
        "`: keepalive` every 15 s; a stream closed because the API process stops ends with "
        "`event: RECONNECT` (no id; data `{processId, type, after, reason}`): reconnect with "
        "`Last-Event-ID`",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}
IDEMPOTENCY_ERRORS = (ErrorCode.IDEMPOTENCY_KEY_REUSED, ErrorCode.IDEMPOTENCY_KEY_IN_PROGRESS)
IDEMPOTENCY_KEY = (
    "Idempotency-Key",
    "1..255 visible ASCII characters. The first answer that started a job is replayed for 24 h to the same "
    "request (with `Idempotent-Replayed: true`); another request with the key is 422 "
    "`IDEMPOTENCY_KEY_REUSED`, a duplicate while the first runs 409 `IDEMPOTENCY_KEY_IN_PROGRESS`",
    {"type": "string", "minLength": 1, "maxLength": 255},
)
LAST_EVENT_ID = ("Last-Event-ID", "Resume a stream after this seq (wins over `after`)", {"type": "integer"})


def _headers(described: dict[str, str], required: bool = True) -> dict[str, Any]:
    return {
        name: {"description": text, "required": required, "schema": {"type": "string"}}
        for name, text in described.items()
    }


def errors(*codes: ErrorCode) -> dict[int | str, dict[str, Any]]:
    """The error responses of an authenticated endpoint: ``codes`` plus AUTHENTICATED, by HTTP status,
    each with the envelope model and one example per code."""
    by_status: dict[int, list[ErrorCode]] = {}
    for code in dict.fromkeys((*codes, *AUTHENTICATED)):  # once each, in order
        by_status.setdefault(CATALOGUE[code].http_status, []).append(code)
    responses: dict[int | str, dict[str, Any]] = {}
    for status, listed in sorted(by_status.items()):
        examples = {code.value: {"summary": code.value, "value": _example(code)} for code in listed}
        response: dict[str, Any] = {
            "model": ErrorEnvelope,
            "description": " · ".join(f"`{code.value}`" for code in listed),
            "content": {"application/json": {"examples": examples}},
        }
        if status in _ERROR_HEADERS:
            response["headers"] = _headers(_ERROR_HEADERS[status])
        responses[status] = response
    return responses


def starts_a_job(body: str, body_required: bool, *codes: ErrorCode) -> dict[str, Any]:
    """Decorator arguments of an endpoint that starts a job: 202 with the accepted envelope and
    ``Location``, the ``Idempotency-Key`` header and its errors, then ``errors(*codes)``."""
    headers = _headers({"Location": "`/api/ai/async/status/{processId}` of the new job"}) | _headers(
        {"Idempotent-Replayed": "`true` on an answer replayed for a repeated `Idempotency-Key`"},
        required=False,
    )
    accepted = {202: {"description": "Accepted: the job is PENDING", "headers": headers}}
    return {
        "status_code": 202,
        "response_model": AcceptedEnvelope,
        "responses": accepted | errors(*codes, *IDEMPOTENCY_ERRORS),
        "openapi_extra": inputs(body=body, body_required=body_required, headers=[IDEMPOTENCY_KEY]),
    }


def _example(code: ErrorCode) -> dict[str, Any]:
    entry = CATALOGUE[code]
    return {
        "success": False,
        "error": {"code": code.value, "message": entry.en, "retryable": entry.retryable},
    }


def inputs(
    body: str | None = None,
    body_required: bool = True,
    query: str | None = None,
    headers: Iterable[tuple[str, str, dict[str, Any]]] = (),
) -> dict[str, Any]:
    """``openapi_extra`` of an operation: its body and query shapes (component names) and its headers."""
    params = [
        {"name": name, "in": "header", "required": False, "description": text, "schema": schema}
        for name, text, schema in (*_COMMON_HEADERS, *headers)
    ]
    if query is not None:
        params.extend(_query_parameters(query))
    extra: dict[str, Any] = {"parameters": params}
    if body is not None:
        extra["requestBody"] = {
            "required": body_required,
            "content": {"application/json": {"schema": {"$ref": REF.format(model=body)}}},
        }
    return extra


def _query_parameters(name: str) -> list[dict[str, Any]]:
    schema = _request_components()[name]
    params = []
    for key, prop in schema["properties"].items():
        param = {"name": key, "in": "query", "required": key in schema.get("required", ()), "schema": prop}
        if "description" in prop:
            param["description"] = prop["description"]
        params.append(param)
    return params


@cache
def _request_components() -> dict[str, dict[str, Any]]:
    mode: JsonSchemaMode = "validation"
    shapes = _BODY_TYPES | _QUERY_TYPES
    inputs = [(name, mode, TypeAdapter(shape)) for name, shape in shapes.items()]
    keyed, defs = TypeAdapter.json_schemas(inputs, ref_template=REF)
    components: dict[str, dict[str, Any]] = dict(defs.get("$defs", {}))
    for (name, _), schema in keyed.items():
        if "$ref" not in schema:  # a union: give it a component of its own
            components[name] = schema
    return components


def build_document(app: FastAPI) -> dict[str, Any]:
    document = get_openapi(
        title=app.title,
        version=app.version,
        description=DESCRIPTION,
        routes=app.routes,
        tags=app.openapi_tags,
    )
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in _request_components().items():
        if name in _QUERY_TYPES:
            continue
        if schemas.setdefault(name, schema) != schema:
            raise ValueError(f"two different schemas named {name}")
    _drop_validation_errors(document, schemas)
    return document


def _drop_validation_errors(document: dict[str, Any], schemas: dict[str, Any]) -> None:
    """FastAPI declares ``422 HTTPValidationError`` for every route with a path parameter; this API answers
    400 ``INVALID_UUID`` / ``VALIDATION_ERROR`` instead (declared by ``errors``)."""
    fastapi_422 = {"$ref": REF.format(model="HTTPValidationError")}
    for operations in document["paths"].values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            if (
                responses.get("422", {}).get("content", {}).get("application/json", {}).get("schema")
                == fastapi_422
            ):
                del responses["422"]
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)


def operation_id(route: APIRoute) -> str:
    """Operation ids (and so generated clients' function names) are the route functions' names."""
    return route.name


def install_openapi(app: FastAPI) -> None:
    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_document(app)
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]  # FastAPI's documented way to extend it
