"""/openapi.json and /docs: a valid OpenAPI 3.1 document with every body, parameter, status code, error
envelope and the bearer scheme declared, no FastAPI 422; body schemas that agree with api/bodies.py;
Swagger UI from the app's own files; neither served in production."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from jsonschema import ValidationError
from openapi_spec_validator import validate as validate_openapi

from api.bodies import validate_generate
from api.fields import InvalidFields
from settings import AppEnv, Settings
from tests.support.api import serve
from tests.support.jobs import subgoal_params
from tests.support.openapi_check import OpenApiDocument

ID = "9b2f1c4e-5d7b-4c51-9a43-0e6f3b0d9a11"


async def served_document(api: httpx.AsyncClient) -> dict[str, Any]:
    response = await api.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def operations(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {op["operationId"]: op for ops in document["paths"].values() for op in ops.values()}


async def test_the_document_is_valid_openapi_and_declares_what_the_api_answers(
    api: httpx.AsyncClient,
) -> None:
    document = await served_document(api)
    validate_openapi(document)
    ops = operations(document)
    assert sorted(ops) == sorted(
        ["generate", "status", "retry", "cancel", "history", "events", "goal", "health", "ready"]
    )
    assert "HTTPValidationError" not in json.dumps(document)
    assert [name for name, op in ops.items() if "422" in op["responses"]] == ["generate", "retry"]  # keys
    assert document["components"]["securitySchemes"] == {
        "HTTPBearer": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "`mandala token --sub USER` in development",
        }
    }
    for name, op in ops.items():
        success = sorted(s for s in op["responses"] if s.startswith("2"))
        assert success == (["202"] if name in ("generate", "retry") else ["200"]), name
        if name in ("health", "ready"):
            assert "security" not in op
            continue
        assert op["security"] == [{"HTTPBearer": []}], name
        assert {"400", "401", "429", "500", "503"} <= set(op["responses"]), name
        for status, response in op["responses"].items():
            ref = response["content"]["application/json"]["schema"]["$ref"]
            assert ref.endswith("ErrorEnvelope") == (status[0] in "45"), (name, status)
        headers = {p["name"] for p in op["parameters"] if p["in"] == "header"}
        assert {"Accept-Language", "X-Request-ID"} <= headers, name
    assert ops["generate"]["requestBody"]["required"] is True
    assert (
        ops["retry"]["requestBody"]["required"] is False and ops["cancel"]["requestBody"]["required"] is False
    )
    assert "Location" in ops["generate"]["responses"]["202"]["headers"]
    for name in ("generate", "retry"):
        assert "Idempotency-Key" in {p["name"] for p in ops[name]["parameters"]}
        assert "IDEMPOTENCY_KEY_IN_PROGRESS" in ops[name]["responses"]["409"]["description"]
    assert "WWW-Authenticate" in ops["status"]["responses"]["401"]["headers"]
    assert "Retry-After" in ops["status"]["responses"]["429"]["headers"]
    assert "TARGET_HAS_CHILDREN" in ops["generate"]["responses"]["409"]["description"]
    history_query = {p["name"] for p in ops["history"]["parameters"] if p["in"] == "query"}
    assert history_query == {
        "page",
        "pageSize",
        "type",
        "status",
        "startDate",
        "endDate",
        "targetId",
        "rootProcessId",
    }
    events = {(p["in"], p["name"]) for p in ops["events"]["parameters"]}
    assert {
        ("path", "processId"),
        ("query", "after"),
        ("query", "limit"),
        ("header", "Last-Event-ID"),
    } <= events
    assert set(ops["events"]["responses"]["200"]["content"]) == {"application/json", "text/event-stream"}
    status_data = document["components"]["schemas"]["JobStatus"]["properties"]
    assert {"processId", "units", "estimatedCompletionTime", "result", "cancelledBy"} <= set(status_data)


def future(days: int = 30) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


BODIES: list[tuple[dict[str, Any], bool]] = [
    ({"type": "SUBGOAL_GENERATION", "params": subgoal_params(deadline=future())}, True),
    (
        {
            "type": "SUBGOAL_GENERATION",
            "params": subgoal_params(deadline=future(), goalId=ID, regenerate=True),
        },
        True,
    ),
    ({"type": "ACTION_GENERATION", "params": {"subGoalId": ID}}, True),
    ({"type": "ACTION_GENERATION", "params": {"goalId": ID, "regenerate": False}}, True),
    ({"type": "TASK_GENERATION", "params": {"actionId": ID}}, True),
    ({"type": "TASK_GENERATION", "params": {"goalId": ID}}, True),
    ({"type": "TASK_GENERATION", "params": {"subGoalId": ID}}, False),
    ({"type": "TASK_GENERATION", "params": {"actionId": ID, "goalId": ID}}, False),
    ({"type": "ACTION_GENERATION", "params": {}}, False),
    ({"type": "ACTION_GENERATION", "params": {"subGoalId": ID, "regenerate": "yes"}}, False),
    ({"type": "ACTION_GENERATION", "params": {"subGoalId": "not-a-uuid"}}, False),
    ({"type": "ACTION_GENERATION", "params": {"subGoalId": ID}, "extra": 1}, False),
    ({"type": "OTHER_GENERATION", "params": {"goalId": ID}}, False),
    ({"params": {"goalId": ID}}, False),
    ({"type": "SUBGOAL_GENERATION"}, False),
    ({"type": "SUBGOAL_GENERATION", "params": subgoal_params(deadline=future(), title="")}, False),
    ({"type": "SUBGOAL_GENERATION", "params": subgoal_params(deadline=future(), title="x" * 201)}, False),
    ({"type": "SUBGOAL_GENERATION", "params": subgoal_params(deadline=future(), constraints="")}, True),
    ({"type": "SUBGOAL_GENERATION", "params": subgoal_params(deadline=future(), extra="x")}, False),
    ({"type": "SUBGOAL_GENERATION", "params": subgoal_params(deadline="2030-01-01")}, False),
    ({"type": "SUBGOAL_GENERATION", "params": subgoal_params(deadline=future(), background=None)}, False),
]


def declared_valid(document: OpenApiDocument, body: dict[str, Any]) -> bool:
    try:
        document.validate_component(body, "GenerateRequest")
    except ValidationError:
        return False
    return True


def api_valid(body: dict[str, Any]) -> bool:
    try:
        validate_generate(json.dumps(body).encode(), datetime.now(UTC))
    except InvalidFields:
        return False
    return True


async def test_the_declared_generate_body_agrees_with_the_api_validation(api: httpx.AsyncClient) -> None:
    document = OpenApiDocument(await served_document(api))
    verdicts = [(body, declared_valid(document, body), api_valid(body)) for body, _ in BODIES]
    assert verdicts == [(body, valid, valid) for body, valid in BODIES]


async def test_docs_use_the_apps_own_swagger_ui_files(api: httpx.AsyncClient) -> None:
    page = await api.get("/docs")
    assert page.status_code == 200
    assets = re.findall(r"""(?:src|href)=["']([^"']+)""", page.text) + re.findall(
        r"url: '([^']+)'", page.text
    )
    assert assets and all(a.startswith("/") for a in assets), assets
    for asset in assets:
        assert (await api.get(asset)).status_code == 200, asset


async def test_production_serves_neither_the_document_nor_the_docs(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(
        app_env=AppEnv.PRODUCTION,
        ai_offline_faults=False,
        jwt_secret="a-production-secret-of-enough-length-0123",
    )
    async with serve(settings) as http:
        for path in ("/openapi.json", "/docs", "/static-offline-docs/swagger-ui-bundle.js"):
            assert (await http.get(path)).status_code == 404, path
