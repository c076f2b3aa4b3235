"""Idempotency-Key on POST generate and retry (issue 7; spec 12)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from api.idempotency import fingerprint
from db.idempotency import IdempotencyStore
from domain.enums import ProcessingStatus, ProcessingType, TargetType
from domain.errors import ErrorCode
from settings import Settings
from tests.support.api import assert_error, bearer, ensure_user, field_messages, seed_tree, serve
from tests.support.jobs import Jobs
from tests.support.servers import closed_port_address

GENERATE = "/api/ai/async/generate"
ALICE = bearer("alice")


def start_body(title: str = "目標") -> dict[str, Any]:
    deadline = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0).isoformat()
    return {
        "type": "SUBGOAL_GENERATION",
        "params": {"title": title, "description": "説明", "deadline": deadline, "background": "背景"},
    }


def keyed(key: str, headers: dict[str, str] = ALICE) -> dict[str, str]:
    return {**headers, "Idempotency-Key": key}


async def count(engine: AsyncEngine, table: str = "processing_states") -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())


async def test_the_first_response_is_replayed_for_the_same_request(
    api: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    body = start_body()
    first = await api.post(GENERATE, json=body, headers=keyed("order-1"))
    assert first.status_code == 202 and "Idempotent-Replayed" not in first.headers
    # The same JSON with other key order and spacing, in another language: still the same request.
    same = json.dumps({"params": body["params"], "type": body["type"]}, indent=2).encode()
    again = await api.post(GENERATE, content=same, headers={**keyed("order-1"), "Accept-Language": "en"})
    assert again.status_code == 202 and again.content == first.content
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["Idempotent-Replayed"] == "true" and again.headers["Content-Language"] == "ja"
    assert await count(clean_db) == 1
    # Without the header, or with another key, the same body starts another job.
    assert (await api.post(GENERATE, json=body, headers=ALICE)).status_code == 202
    assert (await api.post(GENERATE, json=body, headers=keyed("order-2"))).status_code == 202
    assert await count(clean_db) == 3


async def test_the_same_key_for_another_request_is_refused(
    api: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    assert (await api.post(GENERATE, json=start_body("A"), headers=keyed("k"))).status_code == 202
    response = await api.post(GENERATE, json=start_body("B"), headers=keyed("k"))
    error = assert_error(response, 422, "IDEMPOTENCY_KEY_REUSED")
    assert error["message"] == "このIdempotency-Keyは別の内容のリクエストで既に使用されています"
    assert error["retryable"] is False
    english = await api.post(GENERATE, json=start_body("B"), headers={**keyed("k"), "Accept-Language": "en"})
    assert assert_error(english, 422, "IDEMPOTENCY_KEY_REUSED")["message"] == (
        "This Idempotency-Key has already been used for a different request."
    )
    # Another endpoint is another request too.
    retry = await api.post(f"/api/ai/async/retry/{uuid.uuid4()}", headers=keyed("k"))
    assert_error(retry, 422, "IDEMPOTENCY_KEY_REUSED")
    assert await count(clean_db) == 1
    # Keys belong to one user: Bob's "k" is his own.
    assert (
        await api.post(GENERATE, json=start_body("B"), headers=keyed("k", bearer("bob")))
    ).status_code == 202


async def test_twenty_concurrent_duplicates_start_one_job(
    api: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    body = start_body()
    responses = await asyncio.gather(
        *(api.post(GENERATE, json=body, headers=keyed("burst")) for _ in range(20))
    )
    assert {r.status_code for r in responses} <= {202, 409}
    accepted = [r for r in responses if r.status_code == 202]
    assert accepted and {r.content for r in accepted} == {accepted[0].content}
    for response in responses:
        if response.status_code == 409:
            error = assert_error(response, 409, "IDEMPOTENCY_KEY_IN_PROGRESS")
            assert error["retryable"] is True and response.headers["Retry-After"] == "1"
    assert await count(clean_db) == 1
    assert await count(clean_db, "idempotency_keys") == 1


async def test_a_duplicate_while_the_first_is_in_flight_is_409(
    api: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    body = start_body()
    raw = json.dumps(body).encode()
    store = IdempotencyStore(clean_db)
    alice = await ensure_user(clean_db, "alice")
    claim = await store.claim(alice, "in-flight", fingerprint("POST", GENERATE, raw))  # the first request
    assert isinstance(claim, uuid.UUID)
    response = await api.post(GENERATE, content=raw, headers=keyed("in-flight"))
    error = assert_error(response, 409, "IDEMPOTENCY_KEY_IN_PROGRESS")
    assert (
        error["message"]
        == "同じIdempotency-Keyのリクエストを処理中です。しばらく待ってから再試行してください"
    )
    assert await count(clean_db) == 0
    # A claim whose request died (no response within the lease) is taken over.
    async with clean_db.begin() as conn:
        await conn.execute(text("UPDATE idempotency_keys SET updated_at = now() - interval '61 seconds'"))
    assert (await api.post(GENERATE, content=raw, headers=keyed("in-flight"))).status_code == 202
    assert await count(clean_db) == 1


async def test_answers_that_changed_nothing_free_the_key(
    api: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    missing = {"type": "ACTION_GENERATION", "params": {"goalId": str(uuid.uuid4())}}
    assert_error(await api.post(GENERATE, json=missing, headers=keyed("k")), 404, "GOAL_NOT_FOUND")
    invalid = {"type": "SUBGOAL_GENERATION", "params": {}}
    assert_error(await api.post(GENERATE, json=invalid, headers=keyed("k")), 400, "VALIDATION_ERROR")
    assert await count(clean_db, "idempotency_keys") == 0
    assert (await api.post(GENERATE, json=start_body(), headers=keyed("k"))).status_code == 202


async def test_a_failed_workflow_start_is_kept_and_replayed(
    clean_db: AsyncEngine, api_settings: Callable[..., Settings]
) -> None:
    async with serve(api_settings(temporal_address=closed_port_address())) as http:
        body = start_body()  # one body: its deadline is taken from the clock
        first = await http.post(GENERATE, json=body, headers=keyed("down"))
        again = await http.post(GENERATE, json=body, headers=keyed("down"))
    assert_error(first, 503, "WORKFLOW_START_ERROR")
    assert again.status_code == 503 and again.content == first.content
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await count(clean_db) == 1


async def test_an_expired_key_starts_afresh(api: httpx.AsyncClient, clean_db: AsyncEngine) -> None:
    first = await api.post(GENERATE, json=start_body(), headers=keyed("daily"))
    async with clean_db.begin() as conn:
        await conn.execute(text("UPDATE idempotency_keys SET created_at = now() - interval '25 hours'"))
    second = await api.post(GENERATE, json=start_body("別"), headers=keyed("daily"))
    assert second.status_code == 202 and second.json() != first.json()
    assert await count(clean_db) == 2


async def test_retry_replays_its_child(api: httpx.AsyncClient, clean_db: AsyncEngine, jobs: Jobs) -> None:
    alice = await ensure_user(clean_db, "alice")
    tree = await seed_tree(clean_db, alice, subgoals=1)
    parent = await jobs.pending(
        alice, ProcessingType.ACTION_GENERATION, TargetType.SUB_GOAL, tree.subgoal_ids[0]
    )
    await jobs.processing(parent)
    await jobs.finish(parent, ProcessingStatus.FAILED, ErrorCode.AI_ERROR.value)
    url = f"/api/ai/async/retry/{parent}"
    first = await api.post(url, headers=keyed("retry-1"))
    again = await api.post(url, content=b"{}", headers=keyed("retry-1"))
    assert first.status_code == 202 and again.content == first.content
    assert await count(clean_db) == 2  # the parent and one child
    # Without the key the same retry is the ordinary ALREADY_RETRIED.
    assert_error(await api.post(url, headers=ALICE), 409, "ALREADY_RETRIED")


async def test_the_header_must_be_a_short_visible_ascii_token(
    api: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    body = json.dumps(start_body()).encode()
    bad: list[list[tuple[bytes, bytes]]] = [
        [(b"Idempotency-Key", b"")],
        [(b"Idempotency-Key", b"x" * 256)],
        [(b"Idempotency-Key", b"with space")],
        [(b"Idempotency-Key", "日本".encode())],
        [(b"Idempotency-Key", b"a"), (b"Idempotency-Key", b"b")],
    ]
    auth = [(b"Authorization", ALICE["Authorization"].encode())]
    for headers in bad:
        response = await api.post(GENERATE, content=body, headers=auth + headers)
        assert_error(response, 400, "VALIDATION_ERROR")
        assert field_messages(response) == {
            "Idempotency-Key": "Idempotency-Keyは1〜255文字の表示可能なASCII文字で指定してください"
        }
    assert await count(clean_db) == 0 and await count(clean_db, "idempotency_keys") == 0
    longest = "k" * 255
    assert (await api.post(GENERATE, content=body, headers=keyed(longest))).status_code == 202
