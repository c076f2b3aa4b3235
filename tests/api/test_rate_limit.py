"""I79-I82: per-user rate limits shared through PostgreSQL (spec 5.2)."""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
import uuid
from collections.abc import Callable

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from api.rate_limit import LEASE_SHARE, RateLimiter, _Lease
from settings import Settings
from tests.support.api import assert_error, bearer, ensure_user, seed_tree, serve

ALICE = bearer("alice")
GENERATE = "/api/ai/async/generate"
HEADERS = ("RateLimit-Policy", "RateLimit", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
SUBGOAL = {
    "type": "SUBGOAL_GENERATION",
    "params": {"title": "t", "description": "d", "background": "b", "deadline": "2099-01-01T00:00:00Z"},
}


async def count(engine: AsyncEngine, table: str) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())


def remaining(response: httpx.Response) -> int:
    return int(response.headers["X-RateLimit-Remaining"])


async def test_21st_write_is_rejected_and_writes_nothing(
    clean_db: AsyncEngine, api_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="api")
    unknown = uuid.uuid4()
    async with serve(api_settings(rate_limit_write_per_minute=20)) as http:
        seen = []
        for i in range(20):  # generate, retry and cancel share the budget, whatever the outcome
            if i % 3 == 0:
                response = await http.post(GENERATE, json=SUBGOAL, headers=ALICE)
            elif i % 3 == 1:
                response = await http.post(f"/api/ai/async/retry/{unknown}", headers=ALICE)
            else:
                response = await http.post(f"/api/ai/async/cancel/{unknown}", headers=ALICE)
            assert response.status_code in (202, 404)
            seen.append(remaining(response))
        assert seen == list(range(19, -1, -1))
        jobs_before = await count(clean_db, "processing_states")
        before = time.time()
        rejected = await http.post(GENERATE, json=SUBGOAL, headers=ALICE)
    error = assert_error(rejected, 429, "RATE_LIMIT_EXCEEDED")
    assert error["message"] == "リクエスト数が制限を超えました。しばらく待ってから再試行してください"
    assert error["retryable"] is True
    reset = int(rejected.headers["X-RateLimit-Reset"])
    retry_after = int(rejected.headers["Retry-After"])
    assert 1 <= retry_after <= 61 and abs(retry_after - math.ceil(reset - before)) <= 1
    assert error["details"] == {"retryAfter": retry_after, "limit": 20, "remaining": 0, "reset": reset}
    assert rejected.headers["RateLimit-Policy"] == '"write";q=20;w=60'
    assert re.fullmatch(r'"write";r=0;t=\d+', rejected.headers["RateLimit"])
    assert rejected.headers["RateLimit"].endswith(f"t={retry_after}")
    assert (rejected.headers["X-RateLimit-Limit"], rejected.headers["X-RateLimit-Remaining"]) == ("20", "0")
    assert await count(clean_db, "processing_states") == jobs_before == 7
    logged = [r for r in caplog.records if getattr(r, "event", None) == "rate_limit_exceeded"]
    assert [r.__dict__["bucket"] for r in logged] == ["write"]


async def test_reads_have_their_own_budget_of_120(
    clean_db: AsyncEngine, api_settings: Callable[..., Settings]
) -> None:
    tree = await seed_tree(clean_db, await ensure_user(clean_db, "alice"))
    job = uuid.uuid4()
    urls = [
        "/api/ai/async/history",
        f"/api/ai/async/status/{job}",
        f"/api/ai/async/events/{job}",
        f"/api/goals/{tree.goal_id}",
    ]
    async with serve(api_settings(rate_limit_write_per_minute=20, rate_limit_read_per_minute=120)) as http:
        for i in range(120):
            response = await http.get(urls[i % 4], headers=ALICE)
            assert response.status_code in (200, 404) and remaining(response) == 119 - i
        assert_error(await http.get(urls[1], headers=ALICE), 429, "RATE_LIMIT_EXCEEDED")
        write = await http.post(GENERATE, json=SUBGOAL, headers=ALICE)
        assert write.status_code == 202 and remaining(write) == 19
        assert (await http.get("/health")).status_code == 200
        other_user = await http.get(urls[0], headers=bearer("bob"))
        assert other_user.status_code == 200 and remaining(other_user) == 119


async def test_two_processes_share_one_window_that_restarts(
    clean_db: AsyncEngine, api_settings: Callable[..., Settings]
) -> None:
    settings = api_settings(rate_limit_write_per_minute=3, rate_limit_read_per_minute=2)
    async with serve(settings) as first, serve(settings) as second:
        assert (await first.get("/api/ai/async/history", headers=ALICE)).headers["RateLimit-Policy"] == (
            '"read";q=2;w=60'
        )
        assert remaining(await second.get("/api/ai/async/history", headers=ALICE)) == 0
        assert_error(await first.get("/api/ai/async/history", headers=ALICE), 429, "RATE_LIMIT_EXCEEDED")
        assert_error(await second.get("/api/ai/async/history", headers=ALICE), 429, "RATE_LIMIT_EXCEEDED")
        assert remaining(await first.post(GENERATE, json=SUBGOAL, headers=ALICE)) == 2
        assert remaining(await second.post(GENERATE, json=SUBGOAL, headers=ALICE)) == 1
        # The window ends 60 s after it started; move it into the past instead of sleeping.
        async with clean_db.begin() as conn:
            await conn.execute(
                text("UPDATE rate_limit_windows SET window_started_at = now() - interval '60 seconds'")
            )
        again = await second.get("/api/ai/async/history", headers=ALICE)
        assert again.status_code == 200 and remaining(again) == 1
        assert remaining(await first.post(GENERATE, json=SUBGOAL, headers=ALICE)) == 2
    async with clean_db.connect() as conn:
        windows = (
            await conn.execute(text("SELECT bucket, request_count FROM rate_limit_windows ORDER BY bucket"))
        ).all()
    assert [tuple(w) for w in windows] == [("read", 1), ("write", 1)]


async def test_every_limited_response_carries_the_headers(
    clean_db: AsyncEngine, api_settings: Callable[..., Settings]
) -> None:
    async with serve(api_settings(rate_limit_write_per_minute=5, rate_limit_read_per_minute=5)) as http:
        writes = [
            await http.post(GENERATE, content=b"{", headers=ALICE),  # 400
            await http.post("/api/ai/async/cancel/not-a-uuid", headers=ALICE),  # 400
            await http.post(GENERATE, content=b"x" * (70 * 1024), headers=ALICE),  # 413
            await http.post(f"/api/ai/async/retry/{uuid.uuid4()}", headers=ALICE),  # 404
        ]
        reads = [
            await http.get(f"/api/ai/async/status/{uuid.uuid4()}", headers=ALICE),  # 404
            await http.get("/api/ai/async/history?page=0", headers=ALICE),  # 400
            await http.get("/api/ai/async/history", headers=ALICE),  # 200
        ]
        for responses, bucket in ((writes, "write"), (reads, "read")):
            for i, response in enumerate(responses):
                assert all(h in response.headers for h in HEADERS), response.headers
                assert response.headers["RateLimit-Policy"] == f'"{bucket}";q=5;w=60'
                assert remaining(response) == 4 - i
                assert response.headers["RateLimit"].startswith(f'"{bucket}";r={4 - i};t=')
        unauthenticated = await http.get("/api/ai/async/history")
        assert unauthenticated.status_code == 401 and "X-RateLimit-Remaining" not in unauthenticated.headers


async def test_rate_limit_comes_after_auth_and_before_everything_else(
    clean_db: AsyncEngine, api_settings: Callable[..., Settings]
) -> None:
    async with serve(api_settings(rate_limit_write_per_minute=1)) as http:
        assert (await http.post(GENERATE, content=b"{", headers=ALICE)).status_code == 400
        assert_error(await http.post(GENERATE, json=SUBGOAL), 401, "UNAUTHORIZED")
        assert_error(
            await http.post(GENERATE, content=b"x" * (70 * 1024), headers=ALICE), 429, "RATE_LIMIT_EXCEEDED"
        )
        assert_error(
            await http.post("/api/ai/async/cancel/bad-id", headers=ALICE), 429, "RATE_LIMIT_EXCEEDED"
        )
        assert_error(await http.post(GENERATE, json=SUBGOAL, headers=ALICE), 429, "RATE_LIMIT_EXCEEDED")
    assert await count(clean_db, "processing_states") == 0


async def test_a_busy_user_is_served_from_leases_and_each_header_stays_exact(
    clean_db: AsyncEngine, api_settings: Callable[..., Settings]
) -> None:
    async with serve(api_settings(rate_limit_read_per_minute=1000)) as http:
        seen = [remaining(await http.get("/api/ai/async/history", headers=ALICE)) for _ in range(100)]
    assert seen == list(range(999, 899, -1))
    async with clean_db.connect() as conn:
        counted = (await conn.execute(text("SELECT request_count FROM rate_limit_windows"))).scalar_one()
    assert 100 <= counted <= 100 + 1000 // LEASE_SHARE  # leased ahead by at most one lease


async def test_processes_leasing_concurrently_never_allow_more_than_the_limit(
    clean_db: AsyncEngine, api_settings: Callable[..., Settings]
) -> None:
    limit = 60  # leases of up to 3
    settings = api_settings(rate_limit_read_per_minute=limit)
    async with serve(settings) as first, serve(settings) as second:
        responses = []
        for _ in range(8):
            responses += await asyncio.gather(
                *(
                    http.get("/api/ai/async/history", headers=ALICE)
                    for http in (first, second)
                    for _ in range(5)
                )
            )
    allowed = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    assert len(allowed) + len(refused) == 80
    assert limit - (limit // LEASE_SHARE - 1) <= len(allowed) <= limit
    assert all(remaining(r) == 0 for r in refused)


def test_lease_sizes_grow_while_busy_shrink_when_idle_and_stay_within_the_window() -> None:
    def lease(size: int, taken_at: float, counted_before: int = 0) -> _Lease:
        return _Lease(counted_before, size, size, size, taken_at, 60.0, 0, 0.0)

    grow = RateLimiter._next_size
    assert grow(None, 1000, 0.0) == 1  # a new window starts with one
    assert grow(lease(4, 0.0), 1000, 0.1) == 8  # used up quickly: double
    assert grow(lease(4, 0.0), 1000, 0.5) == 4
    assert grow(lease(4, 0.0), 1000, 2.0) == 2  # slow: halve
    assert grow(lease(40, 0.0), 1000, 0.1) == 1000 // LEASE_SHARE  # capped at 1/20 of the limit
    assert grow(lease(4, 0.0, counted_before=990), 1000, 0.1) == 6  # never past what the window has left
    assert grow(lease(4, 0.0, counted_before=996), 1000, 0.1) == 1  # full: one, to be counted and refused
    assert grow(lease(4, 0.0), 1000, 61.0) == 1  # the window ended
