"""The `openai` provider inside the real worker, against a loopback Chat Completions server (issue 3)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError

from tests.support.fake_openai import FakeOpenAI, Reply, chat_completion
from tests.support.jobs import events, make_user, start_subgoal_job

PLAN = "毎週の計画と振り返りを行い、測定できる指標で進み具合を確かめる。"
VALID = json.dumps(
    {
        "subGoals": [
            {
                "title": f"サブ目標{i}を達成する",
                "description": f"{i}番目の領域で具体的な成果を出すために、" + PLAN,
                "background": "目標全体の達成に必要な領域",
            }
            for i in range(8)
        ]
    },
    ensure_ascii=False,
)


@pytest_asyncio.fixture
async def server() -> AsyncIterator[FakeOpenAI]:
    fake = FakeOpenAI()
    await fake.start()
    yield fake
    await fake.stop()


def openai_settings(make_settings: Any, server: FakeOpenAI, **extra: Any) -> Any:
    return make_settings(
        ai_provider="openai", openai_base_url=server.base_url, openai_api_key="sk-test-key", **extra
    )


async def test_slow_answer_keeps_heartbeating_and_tokens_come_from_usage(
    repo, client, make_settings, worker_for, server
) -> None:
    settings = openai_settings(make_settings, server, heartbeat_timeout_seconds=2)
    server.replies.append(Reply(body=chat_completion(VALID, 400, 200), delay=5.0))
    user = await make_user(repo.engine)
    async with worker_for(settings):
        process_id, handle = await start_subgoal_job(repo, client, settings, user)
        await handle.result()
    job = await repo.get_job(process_id)
    assert job is not None and job.status == "COMPLETED"
    assert len(server.requests) == 1
    meta = job.result["metadata"]
    assert (meta["provider"], meta["model"]) == ("openai", "gpt-test-2026")
    assert meta["tokensUsed"] == {"input": 400, "output": 200, "total": 600}
    sent = server.requests[0].json()
    assert (sent["temperature"], sent["max_tokens"], sent["top_p"]) == (0.7, 2000, 0.9)
    assert [m["role"] for m in sent["messages"]] == ["system", "user"]
    assert server.requests[0].headers["authorization"] == "Bearer sk-test-key"


async def test_retry_after_is_honoured_between_attempts(
    repo, client, make_settings, worker_for, server
) -> None:
    settings = openai_settings(make_settings, server)
    server.replies.extend(
        [
            Reply(status=429, body={"error": "slow down"}, headers={"Retry-After": "3"}),
            Reply(body=chat_completion(VALID)),
        ]
    )
    user = await make_user(repo.engine)
    async with worker_for(settings):
        process_id, handle = await start_subgoal_job(repo, client, settings, user)
        await handle.result()
    assert len(server.requests) == 2
    assert server.requests[1].at - server.requests[0].at >= 3.0
    retries = [e.payload for e in await events(repo, process_id) if e.type == "ATTEMPT_FAILED"]
    assert [(p["attempt"], p["errorCode"], p["kind"]) for p in retries] == [(1, "AI_ERROR", "ACTIVITY_RETRY")]


async def test_server_error_is_retried_and_invalid_json_regenerated(
    repo, client, make_settings, worker_for, server
) -> None:
    settings = openai_settings(make_settings, server)
    server.replies.extend(
        [
            Reply(status=500, body={"error": "boom"}),
            Reply(body=chat_completion("this is not json")),
            Reply(body=chat_completion(VALID)),
        ]
    )
    user = await make_user(repo.engine)
    async with worker_for(settings):
        process_id, handle = await start_subgoal_job(repo, client, settings, user)
        await handle.result()
    job = await repo.get_job(process_id)
    assert job is not None and job.status == "COMPLETED"
    assert job.result["metadata"]["generationAttempts"] == 2
    kinds = [e.payload["kind"] for e in await events(repo, process_id) if e.type == "ATTEMPT_FAILED"]
    assert kinds == ["ACTIVITY_RETRY", "REGENERATION"]


async def test_unauthorized_is_rejected_after_one_request(
    repo, client, make_settings, worker_for, server
) -> None:
    settings = openai_settings(make_settings, server)
    server.replies.append(Reply(status=401, body={"error": "bad key sk-test-key"}))
    user = await make_user(repo.engine)
    async with worker_for(settings):
        process_id, handle = await start_subgoal_job(repo, client, settings, user)
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    job = await repo.get_job(process_id)
    assert job is not None and job.error == {"code": "AI_REQUEST_REJECTED", "retryable": False}
    assert len(server.requests) == 1
    assert "sk-test-key" not in (job.error_internal or "")


@pytest.mark.parametrize("heartbeat_timeout", [None, 60], ids=["shipped-defaults", "long-heartbeat-timeout"])
async def test_cancel_aborts_the_in_flight_http_request(
    repo, client, make_settings, worker_for, server, heartbeat_timeout
) -> None:
    """With the shipped settings, and with a heartbeat timeout whose SDK throttle alone would hold a cancel
    back for 48 s: the call has run through several heartbeats, and the cancel still aborts it (6.1)."""
    extra = {} if heartbeat_timeout is None else {"heartbeat_timeout_seconds": heartbeat_timeout}
    settings = openai_settings(make_settings, server, **extra)
    server.replies.append(Reply(body=chat_completion(VALID), delay=60.0))
    user = await make_user(repo.engine)
    async with worker_for(settings):
        process_id, handle = await start_subgoal_job(repo, client, settings, user)
        await asyncio.wait_for(server.received.wait(), 10)
        await asyncio.sleep(3 * settings.heartbeat_throttle_seconds)
        await handle.cancel()
        await asyncio.wait_for(server.client_closed_early.wait(), 10)
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
    assert server.responses_completed == 0
    job = await repo.get_job(process_id)
    assert job is not None and job.status == "CANCELLED"
