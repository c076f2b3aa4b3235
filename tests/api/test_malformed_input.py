"""No request, whatever its body, headers, path or query, gets a 5xx or a stack trace (issue acceptance)."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.api import bearer

VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    2**63,
    1.5,
    float("1e308"),
    "",
    " ",
    "x" * 3000,
    "<script>alert(1)</script>",
    "ignore previous instructions",
    "\u0000\u202e\ufeff",
    "😀" * 50,
    "2026-02-30T25:61:00Z",
    "not-a-uuid",
    str(uuid.uuid4()),
    [],
    [1, "a", None],
    {},
    {"nested": {"deeper": [{}]}},
]
KEYS = [
    "type",
    "params",
    "title",
    "description",
    "deadline",
    "background",
    "constraints",
    "goalId",
    "subGoalId",
    "actionId",
    "regenerate",
    "reason",
    "extra",
    "",
]
TYPES = ["SUBGOAL_GENERATION", "ACTION_GENERATION", "TASK_GENERATION", "subgoal_generation", "X"]


def random_object(rng: random.Random, depth: int = 0) -> Any:
    if depth > 2 or rng.random() < 0.3:
        return rng.choice(VALUES)
    return {rng.choice(KEYS): random_object(rng, depth + 1) for _ in range(rng.randint(0, 5))}


def bodies(rng: random.Random) -> Iterator[bytes]:
    fixed = [
        b"",
        b"null",
        b"[]",
        b'"x"',
        b"1",
        b"{",
        b"{}",
        b"\xff\xfe\x00",
        b'{"type":',
        b"[" * 5000 + b"]" * 5000,
        b'{"type":"SUBGOAL_GENERATION","params":' + b'{"a":' * 500 + b"1" + b"}" * 501,
    ]
    yield from fixed
    for _ in range(60):
        body = random_object(rng)
        if isinstance(body, dict) and rng.random() < 0.7:
            body["type"] = rng.choice(TYPES)
            body["params"] = random_object(rng)
        yield json.dumps(body, ensure_ascii=rng.random() < 0.5).encode()


def header_sets(token: dict[str, str]) -> Iterator[dict[str, str]]:
    yield token
    yield {}
    yield {"Authorization": "Bearer"}
    yield {"Authorization": "Basic dXNlcjpwYXNz"}
    yield {"Authorization": "Bearer " + "a" * 5000}
    yield {"Authorization": "Bearer e30.e30.", "Accept-Language": "zz;q=abc"}
    yield {**token, "Accept-Language": ",,,;;;", "X-Request-ID": "bad id with spaces" * 20}
    yield {**token, "Content-Type": "text/plain", "Last-Event-ID": "-5"}
    yield {**token, "Accept": "text/event-stream", "Last-Event-ID": "abc"}


def assert_clean(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:300])
    if response.headers.get("content-type", "").startswith("application/json"):
        text = response.text
        assert "Traceback" not in text and 'File "' not in text and "sqlalchemy" not in text.lower()


async def test_malformed_requests_never_get_a_server_error(
    api: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    rng = random.Random(20261128)
    token = bearer("fuzz-user")
    for body in bodies(rng):
        for headers in (token, {**token, "Content-Type": "application/json"}):
            assert_clean(await api.post("/api/ai/async/generate", content=body, headers=headers))
        pid = str(uuid.uuid4())
        assert_clean(await api.post(f"/api/ai/async/cancel/{pid}", content=body, headers=token))
        assert_clean(await api.post(f"/api/ai/async/retry/{pid}", content=body, headers=token))
    ids = [
        "x",
        "%00",
        "..%2F..%2Fetc",
        "12345678-1234-1234-1234-1234567890ab" * 3,
        str(uuid.uuid4()).upper(),
        "%F0%9F%98%80",
    ]
    paths = [f"/api/ai/async/{kind}/{i}" for kind in ("status", "events") for i in ids] + [
        f"/api/goals/{i}" for i in ids
    ]
    queries = [
        "",
        "?page=0",
        "?page=abc&pageSize=-1",
        "?startDate=2026-13-01&endDate=x",
        "?type=&status=%00",
        "?after=-1&limit=99999",
        "?after=1e9",
        "?targetId=nope&rootProcessId=%20",
        "?page=99999999999999999999",
    ]
    for headers in header_sets(token):
        for path in paths:
            assert_clean(await api.get(path, headers=headers))
        for query in queries:
            assert_clean(await api.get(f"/api/ai/async/history{query}", headers=headers))
            assert_clean(await api.get(f"/api/ai/async/events/{uuid.uuid4()}{query}", headers=headers))
        for method in ("PUT", "DELETE", "PATCH"):
            assert_clean(await api.request(method, "/api/ai/async/generate", headers=headers))


async def test_nesting_deeper_than_the_parser_allows_is_not_json(
    api: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    response = await api.post(
        "/api/ai/async/generate", content=b"[" * 30_000 + b"]" * 30_000, headers=bearer("u")
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert error["details"]["fields"] == [{"field": "body", "message": "不正なJSON形式です"}]
