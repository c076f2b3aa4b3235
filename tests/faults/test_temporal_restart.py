"""The Temporal dev server restarted under running jobs (issue 7): file-backed, as `mandala dev` runs it.

Jobs in flight continue and complete once; starts while it is down answer 503 WORKFLOW_START_ERROR within
about a second and leave their row FAILED (spec 5.3 step 2), with no workflow behind it. Temporal is down
10 s, longer than the heartbeat timeout, so an AI call may be made a second time (at most once more);
docs/architecture.md ("A Temporal outage") says why."""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections.abc import Iterator

import pytest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from cli.temporal_server import DevTemporalServer
from domain.workflow_io import WorkflowSummary, workflow_id_for
from temporal_client import connect_temporal
from tests.support.api import assert_error, bearer, serve, user_id_of
from tests.support.jobs import running_worker, subgoal_body, wait_status
from tests.support.outcomes import (
    COMPLETED_TARGET,
    assert_event_log,
    assert_subgoals_saved_once,
    jobs_of,
)
from tests.support.servers import free_port, server_dir

GENERATE = "/api/ai/async/generate"
JOBS = 5
AI_SECONDS = 4
DOWN_SECONDS = 10
REFUSED_STARTS = 3
# A start with Temporal down answers within about 1 s (docs/architecture.md); before issue 7 it took
# 5.6-9.4 s. The bound leaves room for a loaded 2-core machine.
START_ANSWER_SECONDS = 2.5


@pytest.fixture
def own_temporal() -> Iterator[DevTemporalServer]:
    """A Temporal dev server of this test alone, on its own SQLite file, so that it can be restarted."""
    data = server_dir()
    server = DevTemporalServer(data, port=free_port(), headless=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(data.parent, ignore_errors=True)


async def ai_attempts(client: Client, process_id: uuid.UUID) -> int:
    """How many attempts of generate_unit (the AI call) the job's workflow history records."""
    handle = client.get_workflow_handle(workflow_id_for(process_id))
    return max(
        [
            e.activity_task_started_event_attributes.attempt
            async for e in handle.fetch_history_events()
            if e.HasField("activity_task_started_event_attributes")
        ]
    )


async def test_temporal_restarted_under_running_jobs(repo, make_settings, own_temporal) -> None:
    settings = make_settings(temporal_address=own_temporal.address, ai_offline_latency_ms=AI_SECONDS * 1000)
    client = await connect_temporal(settings)  # the worker's connection, as worker.py makes it
    headers = bearer("temporal-restart")
    async with running_worker(client, settings, repo), serve(settings) as http:
        started = [await http.post(GENERATE, json=subgoal_body(), headers=headers) for _ in range(JOBS)]
        ids = [uuid.UUID(r.json()["data"]["processId"]) for r in started]
        for process_id in ids:
            await wait_status(repo, process_id, "PROCESSING")
        await asyncio.sleep(AI_SECONDS / 2)  # mid AI call

        await asyncio.to_thread(own_temporal.stop)
        down_since = time.monotonic()
        refused = []
        for _ in range(REFUSED_STARTS):
            asked = time.monotonic()
            response = await http.post(GENERATE, json=subgoal_body(), headers=headers)
            assert time.monotonic() - asked < START_ANSWER_SECONDS
            refused.append(
                uuid.UUID(assert_error(response, 503, "WORKFLOW_START_ERROR")["details"]["processId"])
            )
        await asyncio.sleep(max(0.0, down_since + DOWN_SECONDS - time.monotonic()))
        await asyncio.to_thread(own_temporal.start)

        for process_id in ids:
            handle = client.get_workflow_handle(workflow_id_for(process_id), result_type=WorkflowSummary)
            assert (await asyncio.wait_for(handle.result(), 120)).outcome == "COMPLETED"
    for process_id in ids:
        # Down longer than the heartbeat timeout, a call whose completion could not be delivered is timed
        # out by the restarted server and made again, once (docs/architecture.md); each attempt that got
        # its output wrote the 50 % checkpoint, and the data is saved once.
        made = await ai_attempts(client, process_id)
        assert made in (1, 2)
        await assert_event_log(repo, process_id, {**COMPLETED_TARGET, "PROGRESS": made})
        await assert_subgoals_saved_once(repo, process_id)
    for process_id in refused:
        job = await assert_event_log(repo, process_id, {"CREATED": 1, "FAILED": 1})
        assert (job.status, job.error_code, job.workflow_run_id) == ("FAILED", "WORKFLOW_START_ERROR", None)
        with pytest.raises(RPCError) as missing:
            await client.get_workflow_handle(workflow_id_for(process_id)).describe()
        assert missing.value.status == RPCStatusCode.NOT_FOUND
    user = await user_id_of(repo.engine, "temporal-restart")
    assert sorted(await jobs_of(repo, user)) == sorted(ids + refused)
