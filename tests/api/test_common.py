"""B15-B20 and the other common rules of spec 5.1: envelope, language, request id, headers, 404/405/413,
500/503 without internal text, CORS."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from settings import Settings
from tests.support.api import assert_error, assert_timestamps, bearer, seed_tree, serve, user_id_of
from tests.support.jobs import subgoal_body
from tests.support.servers import closed_port_address

ALICE = bearer("alice")
STATUS = "/api/ai/async/status/"
GENERATE = "/api/ai/async/generate"
FORBIDDEN_TEXT = ("Traceback", 'File "', "SELECT", "sqlalchemy", "psycopg", "postgresql", "boom-secret")


async def test_error_bodies_have_exactly_success_and_error(api: httpx.AsyncClient) -> None:
    cases = [
        (await api.get(STATUS + str(uuid.uuid4())), 401, "UNAUTHORIZED"),
        (await api.get(STATUS + "nope", headers=ALICE), 400, "INVALID_UUID"),
        (await api.get(STATUS + str(uuid.uuid4()), headers=ALICE), 404, "PROCESSING_NOT_FOUND"),
        (await api.post(GENERATE, content=b"{", headers=ALICE), 400, "VALIDATION_ERROR"),
        (await api.get("/api/unknown", headers=ALICE), 404, "NOT_FOUND"),
        (await api.put(GENERATE, headers=ALICE), 405, "METHOD_NOT_ALLOWED"),
    ]
    for response, status, code in cases:
        error = assert_error(response, status, code)
        assert isinstance(error["retryable"], bool)
        assert "details" not in error or isinstance(error["details"], dict)


async def test_language_follows_the_first_accept_language_range(api: httpx.AsyncClient) -> None:
    url = STATUS + str(uuid.uuid4())
    english = await api.get(url, headers=ALICE | {"Accept-Language": "en-US,ja;q=0.8"})
    assert english.headers["Content-Language"] == "en"
    assert assert_error(english, 404, "PROCESSING_NOT_FOUND")["message"] == "The process was not found."
    for extra in ({}, {"Accept-Language": "fr"}, {"Accept-Language": "ja,en;q=0.9"}):
        response = await api.get(url, headers=ALICE | extra)
        assert response.headers["Content-Language"] == "ja"
        assert assert_error(response, 404, "PROCESSING_NOT_FOUND")["message"] == "処理が見つかりません"
    fields = await api.post(GENERATE, json=subgoal_body(title=""), headers=ALICE | {"Accept-Language": "en"})
    details = assert_error(fields, 400, "VALIDATION_ERROR")["details"]
    assert details == {"fields": [{"field": "params.title", "message": "The goal title is required."}]}
    ok = await api.get("/health", headers={"Accept-Language": "en"})
    assert ok.headers["Content-Language"] == "en"


async def test_request_id_is_reused_or_generated_on_every_response(
    clean_db: AsyncEngine, api_settings: Callable[..., Settings]
) -> None:
    def boom(app: FastAPI) -> None:
        @app.get("/boom")
        async def _boom() -> None:
            raise RuntimeError("boom-secret")

    async with serve(api_settings(rate_limit_read_per_minute=1), extend=boom) as http:
        ok = await http.get("/api/ai/async/history", headers=ALICE | {"X-Request-ID": "abc.DEF_1-2"})
        assert ok.status_code == 200 and ok.headers["X-Request-ID"] == "abc.DEF_1-2"
        limited = await http.get("/api/ai/async/history", headers=ALICE | {"X-Request-ID": "x" * 128})
        assert_error(limited, 429, "RATE_LIMIT_EXCEEDED")
        assert limited.headers["X-Request-ID"] == "x" * 128
        for bad in ("x" * 129, "has space", "a/b", ""):
            unauthorized = await http.get("/api/ai/async/history", headers={"X-Request-ID": bad})
            assert_error(unauthorized, 401, "UNAUTHORIZED")
            generated = unauthorized.headers["X-Request-ID"]
            assert generated.startswith("req-") and uuid.UUID(generated[4:])
        crashed = await http.get("/boom", headers={"X-Request-ID": "trace-500"})
        assert crashed.headers["X-Request-ID"] == "trace-500"
        assert (await http.get("/health")).headers["X-Request-ID"].startswith("req-")


async def test_every_timestamp_has_milliseconds_and_z(api: httpx.AsyncClient, clean_db: AsyncEngine) -> None:
    started = await api.post(
        GENERATE, json=subgoal_body(deadline="2099-12-31T23:59:59.5+09:00"), headers=ALICE
    )
    process_id = started.json()["data"]["processId"]
    await api.get("/api/ai/async/history", headers=ALICE)
    tree = await seed_tree(clean_db, await user_id_of(clean_db, "alice"), subgoals=1, actions=1, tasks=2)
    bodies = [
        started.json(),
        (await api.get(STATUS + process_id, headers=ALICE)).json(),
        (await api.get("/api/ai/async/history", headers=ALICE)).json(),
        (await api.get(f"/api/ai/async/events/{process_id}", headers=ALICE)).json(),
        (await api.post(f"/api/ai/async/cancel/{process_id}", headers=ALICE)).json(),
        (await api.get(STATUS + process_id, headers=ALICE)).json(),
        (await api.get(f"/api/goals/{tree.goal_id}", headers=ALICE)).json(),
        (await api.get("/health")).json(),
    ]
    assert sum(assert_timestamps(body) for body in bodies) >= 25


async def test_unknown_path_wrong_method_and_cache_control(api: httpx.AsyncClient) -> None:
    missing = await api.get("/nowhere")
    assert_error(missing, 404, "NOT_FOUND")
    assert missing.json()["error"]["message"] == "指定されたリソースが見つかりません"
    wrong = await api.get(GENERATE, headers=ALICE)
    assert_error(wrong, 405, "METHOD_NOT_ALLOWED")
    assert wrong.json()["error"]["message"] == "このメソッドは許可されていません"
    assert wrong.headers["Allow"] == "POST"
    for response in (
        missing,
        wrong,
        await api.get("/health"),
        await api.get("/api/ai/async/history", headers=ALICE),
    ):
        assert response.headers["Cache-Control"] == "no-store"


async def test_body_over_64_kib_is_413_after_auth(api: httpx.AsyncClient, clean_db: AsyncEngine) -> None:
    padding = "x" * (64 * 1024)
    too_big = f'{{"type":"SUBGOAL_GENERATION","pad":"{padding}"}}'.encode()
    response = await api.post(GENERATE, content=too_big, headers=ALICE)
    error = assert_error(response, 413, "PAYLOAD_TOO_LARGE")
    assert error["message"] == "リクエストのサイズが大きすぎます"
    assert response.headers["X-RateLimit-Remaining"]  # 413 comes after the rate limit (order of checks)

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the streamed size is what counts
        for _ in range(70):
            yield b"x" * 1024

    assert_error(await api.post(GENERATE, content=chunks(), headers=ALICE), 413, "PAYLOAD_TOO_LARGE")
    assert_error(await api.post(GENERATE, content=too_big), 401, "UNAUTHORIZED")
    assert_error(
        await api.post(f"/api/ai/async/cancel/{'z' * 9}", content=too_big, headers=ALICE),
        413,
        "PAYLOAD_TOO_LARGE",
    )
    exactly = b'{"type":"X","p":"' + b"x" * (64 * 1024 - 19) + b'"}'
    assert len(exactly) == 64 * 1024
    assert_error(await api.post(GENERATE, content=exactly, headers=ALICE), 400, "INVALID_PROCESS_TYPE")
    async with clean_db.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM processing_states"))).scalar_one() == 0


async def test_unexpected_exception_is_500_without_internal_text(
    clean_db: AsyncEngine, api_settings: Callable[..., Settings]
) -> None:
    def boom(app: FastAPI) -> None:
        @app.get("/boom")
        async def _boom() -> None:
            raise RuntimeError("boom-secret SELECT * FROM users; postgresql://u:p@h/db")

    async with serve(api_settings(), extend=boom) as http:
        response = await http.get("/boom")
    error = assert_error(response, 500, "INTERNAL_ERROR")
    assert error == {"code": "INTERNAL_ERROR", "message": "サーバーエラーが発生しました", "retryable": True}
    assert not any(text in response.text for text in FORBIDDEN_TEXT)
    assert response.headers["Cache-Control"] == "no-store"


async def test_database_down_is_503_and_other_database_failures_are_500(
    clean_db: AsyncEngine, api_settings: Callable[..., Settings], database_url: str
) -> None:
    down = make_url(database_url).set(port=int(closed_port_address().rsplit(":", 1)[1]))
    async with serve(api_settings(database_url=down.render_as_string(hide_password=False))) as http:
        for response in (
            await http.get(STATUS + str(uuid.uuid4()), headers=ALICE),
            await http.post(GENERATE, json=subgoal_body(), headers=ALICE),
        ):
            error = assert_error(response, 503, "DATABASE_CONNECTION_ERROR")
            assert error["message"] == "データベースに接続できません。しばらく待ってから再試行してください"
            assert error["retryable"] is True
            assert response.headers["X-Request-ID"].startswith("req-")
            assert not any(text in response.text for text in FORBIDDEN_TEXT)

    empty_name = f"api_empty_{uuid.uuid4().hex}"
    admin = create_async_engine(database_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{empty_name}"'))
        unmigrated = make_url(database_url).set(database=empty_name).render_as_string(hide_password=False)
        async with serve(api_settings(database_url=unmigrated)) as http:
            response = await http.get(STATUS + str(uuid.uuid4()), headers=ALICE)
        error = assert_error(response, 500, "DATABASE_ERROR")
        assert error["message"] == "データベースエラーが発生しました。しばらくしてからお試しください。"
        assert not any(text in response.text for text in (*FORBIDDEN_TEXT, "users", "relation"))
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE "{empty_name}"'))
    finally:
        await admin.dispose()


async def test_cors_only_when_configured(
    clean_db: AsyncEngine, api_settings: Callable[..., Settings]
) -> None:
    preflight = {
        "Origin": "https://app.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    async with serve(api_settings()) as http:
        response = await http.options(GENERATE, headers=preflight)
        assert "access-control-allow-origin" not in response.headers
        plain = await http.get("/health", headers={"Origin": "https://app.example"})
        assert "access-control-allow-origin" not in plain.headers
    async with serve(api_settings(cors_allow_origins=["https://app.example"])) as http:
        response = await http.options(GENERATE, headers=preflight)
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "https://app.example"
        assert response.headers["X-Request-ID"].startswith("req-")
        simple = await http.get("/api/ai/async/history", headers=ALICE | {"Origin": "https://app.example"})
        assert simple.headers["access-control-allow-origin"] == "https://app.example"
        assert "x-ratelimit-remaining" in simple.headers["access-control-expose-headers"].lower()
        other = await http.options(GENERATE, headers=preflight | {"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


async def test_request_logs_are_structured_and_free_of_user_text(
    api: httpx.AsyncClient, clean_db: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="api")
    headers = ALICE | {"X-Request-ID": "req-logs-1"}
    response = await api.post(GENERATE, json=subgoal_body(title="秘密のタイトル"), headers=headers)
    process_id = response.json()["data"]["processId"]
    await api.get(STATUS + process_id, headers=ALICE | {"X-Request-ID": "req-logs-2"})
    records = [r.__dict__ for r in caplog.records if r.name == "api"]
    first = [r for r in records if r.get("requestId") == "req-logs-1"]
    assert [r["event"] for r in first] == ["workflow_started", "job_accepted", "http_request"]
    alice = str(await user_id_of(clean_db, "alice"))
    assert all(r["userId"] == alice for r in first)
    http = first[-1]
    assert (http["method"], http["route"], http["status"]) == ("POST", "/api/ai/async/generate", 202)
    assert isinstance(http["durationMs"], float)
    assert first[1]["processId"] == process_id and first[0]["workflowId"] == f"ai-gen-{process_id}"
    status_log = next(
        r for r in records if r.get("requestId") == "req-logs-2" and r["event"] == "http_request"
    )
    assert (status_log["route"], status_log["status"]) == ("/api/ai/async/status/{processId}", 200)
    token = ALICE["Authorization"].split()[1]
    assert all("秘密" not in str(r) and token not in str(r) for r in records)
