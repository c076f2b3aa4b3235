"""A client that times out and resends, many times at once (issue 7): 20 concurrent duplicates of one
POST /generate with one Idempotency-Key, against the API and the worker as their own processes."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from tests.support.api import assert_error, user_id_of
from tests.support.jobs import rows, subgoal_body, wait_status
from tests.support.live_stack import live_stack
from tests.support.outcomes import assert_completed_once, jobs_of

GENERATE = "/api/ai/async/generate"
DUPLICATES = 20


async def test_concurrent_duplicates_with_one_idempotency_key_start_one_job(
    database_url, temporal_env, repo, tmp_path
) -> None:
    address = temporal_env.client.service_client.config.target_host
    body = subgoal_body()
    with live_stack(database_url, address, tmp_path) as stack:
        headers = {"Authorization": f"Bearer {stack.token('duplicates')}", "Idempotency-Key": "order-42"}
        async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as http:
            answers = await asyncio.gather(
                *(http.post(GENERATE, json=body, headers=headers) for _ in range(DUPLICATES))
            )
            first = [a for a in answers if a.status_code == 202 and "Idempotent-Replayed" not in a.headers]
            assert len(first) == 1, [(a.status_code, a.text) for a in answers]
            for answer in answers:
                if answer.status_code == 202 and answer is not first[0]:  # a replay: byte for byte
                    assert answer.headers["Idempotent-Replayed"] == "true"
                    assert answer.content == first[0].content
                elif answer is not first[0]:
                    assert_error(answer, 409, "IDEMPOTENCY_KEY_IN_PROGRESS")
            process_id = uuid.UUID(first[0].json()["data"]["processId"])
            await wait_status(repo, process_id, "COMPLETED", seconds=60)
            late = await http.post(GENERATE, json=body, headers=headers)
            assert late.status_code == 202 and late.content == first[0].content
    user = await user_id_of(repo.engine, "duplicates")
    assert await jobs_of(repo, user) == [process_id]
    assert len(await rows(repo, "SELECT 1 FROM idempotency_keys WHERE user_id=:u", u=user)) == 1
    await assert_completed_once(repo, process_id)
