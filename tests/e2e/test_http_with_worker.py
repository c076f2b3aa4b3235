"""End to end through the HTTP API with a worker running: full chart, SSE, partial failure, retry, cancel."""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import text
from temporalio.client import Client, WorkflowExecutionStatus

from db.repository import JobRepository
from domain.workflow_io import workflow_id_for
from settings import Settings
from tests.support.api import bearer, serve
from tests.support.jobs import subgoal_body


async def start(http: httpx.AsyncClient, auth: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    response = await http.post("/api/ai/async/generate", json=body, headers=auth)
    assert response.status_code == 202, response.text
    data: dict[str, Any] = response.json()["data"]
    assert response.headers["Location"] == f"/api/ai/async/status/{data['processId']}"
    return data


async def wait_terminal(http: httpx.AsyncClient, auth: dict[str, str], process_id: str) -> dict[str, Any]:
    for _ in range(600):
        response = await http.get(f"/api/ai/async/status/{process_id}", headers=auth)
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()["data"]
        if data["status"] not in ("PENDING", "PROCESSING"):
            return data
        await asyncio.sleep(0.1)
    raise AssertionError(f"{process_id} did not finish")


def sse_events(body: str) -> list[dict[str, Any]]:
    out = []
    for block in body.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":")
        )
        if "event" in fields:
            out.append(
                {"id": int(fields["id"]), "event": fields["event"], "data": json.loads(fields["data"])}
            )
    return out


async def test_three_requests_build_a_full_chart_and_a_retry_mends_failed_units(
    repo: JobRepository, make_settings: Callable[..., Settings], worker_for: Callable[[Settings], Any]
) -> None:
    settings = make_settings(rate_limit_read_per_minute=100_000, rate_limit_write_per_minute=1000)
    auth = bearer("chart-user", settings.jwt_secret)
    async with worker_for(settings), serve(settings) as http:
        sub = await start(http, auth, subgoal_body())
        assert (sub["status"], sub["scope"], sub["totalUnits"]) == ("PENDING", "TARGET", 1)
        goal_id = sub["targetId"]
        assert (await http.get(f"/api/goals/{goal_id}", headers=auth)).status_code in (404, 200)
        done = await wait_terminal(http, auth, sub["processId"])
        assert done["status"] == "COMPLETED" and done["progress"] == 100
        assert "estimatedCompletionTime" not in done and "error" not in done
        assert len(done["result"]["subGoals"]) == 8

        stream = await http.get(
            f"/api/ai/async/events/{sub['processId']}", headers={**auth, "Accept": "text/event-stream"}
        )
        assert stream.headers["content-type"].startswith("text/event-stream")
        events = sse_events(stream.text)
        assert [(e["event"], e["data"]["progress"]) for e in events] == [
            ("CREATED", 0),
            ("STARTED", 0),
            ("PROGRESS", 50),
            ("UNIT_SUCCEEDED", 50),
            ("COMPLETED", 100),
        ]
        assert [e["id"] for e in events] == [1, 2, 3, 4, 5]
        resumed = await http.get(
            f"/api/ai/async/events/{sub['processId']}",
            headers={**auth, "Accept": "text/event-stream", "Last-Event-ID": "2"},
        )
        assert [e["id"] for e in sse_events(resumed.text)] == [3, 4, 5]

        actions = await start(http, auth, {"type": "ACTION_GENERATION", "params": {"goalId": goal_id}})
        assert (actions["scope"], actions["totalUnits"]) == ("GOAL", 8)
        done = await wait_terminal(http, auth, actions["processId"])
        assert done["status"] == "COMPLETED" and done["units"] == {"total": 8, "succeeded": 8, "failed": 0}
        page = (await http.get(f"/api/ai/async/events/{actions['processId']}?limit=500", headers=auth)).json()
        unit_progress = [e["progress"] for e in page["data"]["events"] if e["type"] == "UNIT_SUCCEEDED"]
        assert unit_progress == [12, 25, 37, 50, 62, 75, 87, 99]
        assert (
            page["data"]["events"][-1]["type"] == "COMPLETED"
            and page["data"]["events"][-1]["progress"] == 100
        )

        tree = (await http.get(f"/api/goals/{goal_id}", headers=auth)).json()["data"]["goal"]
        action_ids = [a["id"] for s in tree["subGoals"] for a in s["actions"]]
        assert len(action_ids) == 64
        broken = [action_ids[1], action_ids[40], action_ids[63]]
        async with repo.engine.begin() as conn:
            await conn.execute(
                text("UPDATE actions SET title = '#fault:task:bad_quality:3 ' || title WHERE id = ANY(:ids)"),
                {"ids": [uuid.UUID(b) for b in broken]},
            )

        tasks = await start(http, auth, {"type": "TASK_GENERATION", "params": {"goalId": goal_id}})
        assert tasks["totalUnits"] == 64
        failed = await wait_terminal(http, auth, tasks["processId"])
        assert failed["status"] == "FAILED" and failed["error"]["code"] == "PARTIAL_FAILURE"
        assert failed["error"]["details"] == {"succeeded": 61, "failed": 3, "notAttempted": 0}
        assert failed["units"] == {"total": 64, "succeeded": 61, "failed": 3}
        failed_units = failed["result"]["failedUnits"]
        assert sorted(u["unitId"] for u in failed_units) == sorted(broken)
        assert (
            failed_units[0]["error"]["message"]
            == "AI生成結果の品質が基準を満たしませんでした。もう一度お試しください。"
        )

        async with repo.engine.begin() as conn:
            await conn.execute(
                text(
                    "UPDATE actions SET title = replace(title, '#fault:task:bad_quality:3 ', '')"
                    " WHERE id = ANY(:ids)"
                ),
                {"ids": [uuid.UUID(b) for b in broken], "d": "#fault:task:bad_quality:3 "},
            )
            before = set((await conn.execute(text("SELECT id FROM tasks"))).scalars())
        retry = await http.post(f"/api/ai/async/retry/{tasks['processId']}", headers=auth)
        assert retry.status_code == 202, retry.text
        child = retry.json()["data"]
        assert (child["retryCount"], child["totalUnits"], child["originalProcessId"]) == (
            1,
            3,
            tasks["processId"],
        )
        mended = await wait_terminal(http, auth, child["processId"])
        assert mended["status"] == "COMPLETED"
        child_events = (await http.get(f"/api/ai/async/events/{child['processId']}", headers=auth)).json()
        saved_units = [
            e["payload"]["unitId"] for e in child_events["data"]["events"] if e["type"] == "UNIT_SUCCEEDED"
        ]
        assert sorted(saved_units) == sorted(broken)

        tree = (await http.get(f"/api/goals/{goal_id}", headers=auth)).json()["data"]["goal"]
    assert len(tree["subGoals"]) == 8
    for s in tree["subGoals"]:
        assert [a["position"] for a in s["actions"]] == list(range(8))
        for a in s["actions"]:
            assert 1 <= len(a["tasks"]) <= 20
            assert [t["position"] for t in a["tasks"]] == list(range(len(a["tasks"])))
            assert all(t["type"] == a["type"] for t in a["tasks"])
    async with repo.engine.connect() as conn:
        after = set((await conn.execute(text("SELECT id FROM tasks"))).scalars())
        duplicates = (
            await conn.execute(
                text(
                    "SELECT count(*) FROM"
                    " (SELECT 1 FROM tasks GROUP BY action_id, position HAVING count(*) > 1) d"
                )
            )
        ).scalar_one()
    assert before <= after and duplicates == 0


async def test_cancel_through_the_api_stops_the_running_job(
    repo: JobRepository,
    client: Client,
    make_settings: Callable[..., Settings],
    worker_for: Callable[[Settings], Any],
) -> None:
    settings = make_settings(ai_offline_latency_ms=30_000, heartbeat_timeout_seconds=3)
    auth = bearer("cancel-user", settings.jwt_secret)
    async with worker_for(settings), serve(settings) as http:
        job = await start(http, auth, subgoal_body())
        for _ in range(100):
            status = (await http.get(f"/api/ai/async/status/{job['processId']}", headers=auth)).json()["data"]
            if status["status"] == "PROCESSING":
                break
            await asyncio.sleep(0.1)
        response = await http.post(f"/api/ai/async/cancel/{job['processId']}", headers=auth)
        assert response.status_code == 200
        assert response.json()["data"]["status"] == "CANCELLED"
        handle = client.get_workflow_handle(workflow_id_for(job["processId"]))
        for _ in range(150):
            if (await handle.describe()).status == WorkflowExecutionStatus.CANCELED:
                break
            await asyncio.sleep(0.1)
        assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
        final = (await http.get(f"/api/ai/async/status/{job['processId']}", headers=auth)).json()["data"]
        assert final["status"] == "CANCELLED" and final["cancelledBy"] == "USER"
        assert final["error"]["code"] == "CANCELLED"
        assert (await http.get(f"/api/goals/{job['targetId']}", headers=auth)).status_code == 404
    async with repo.engine.connect() as conn:
        types = (
            (
                await conn.execute(
                    text("SELECT type FROM processing_events WHERE process_id=:p ORDER BY seq"),
                    {"p": job["processId"]},
                )
            )
            .scalars()
            .all()
        )
    assert types == ["CREATED", "STARTED", "CANCELLED"]


def estimate_seconds(job: dict[str, Any]) -> float:
    eta = datetime.fromisoformat(job["estimatedCompletionTime"])
    return (eta - datetime.fromisoformat(job["createdAt"])).total_seconds()


async def test_a_first_job_fault_fails_the_job_and_a_retry_through_the_api_succeeds(
    repo: JobRepository, make_settings: Callable[..., Settings], worker_for: Callable[[Settings], Any]
) -> None:
    settings = make_settings(ai_offline_faults=True)
    auth = bearer("retry-demo-user", settings.jwt_secret)
    title = "TypeScriptのエキスパートになる #fault:subgoal:server_error:job1"
    async with worker_for(settings), serve(settings) as http:
        first = await start(http, auth, subgoal_body(title=title))
        assert estimate_seconds(first) == settings.estimate_seconds_subgoal  # nothing learned yet
        failed = await wait_terminal(http, auth, first["processId"])
        assert (failed["status"], failed["error"]["code"], failed["error"]["retryable"]) == (
            "FAILED",
            "AI_ERROR",
            True,
        )

        retry = await http.post(f"/api/ai/async/retry/{first['processId']}", headers=auth)
        assert retry.status_code == 202, retry.text
        child = retry.json()["data"]
        assert estimate_seconds(child) == settings.estimate_seconds_subgoal  # a FAILED job teaches nothing
        done = await wait_terminal(http, auth, child["processId"])
        assert done["status"] == "COMPLETED"
        goal = (await http.get(f"/api/goals/{first['targetId']}", headers=auth)).json()["data"]["goal"]
        assert len(goal["subGoals"]) == 8
        assert all("#fault" not in subgoal["title"] for subgoal in goal["subGoals"])

        # the retry completed within a second or so, and the next estimate says so
        took = datetime.fromisoformat(done["completedAt"]) - datetime.fromisoformat(done["createdAt"])
        again = await start(http, auth, subgoal_body())
        assert estimate_seconds(again) == max(1, math.ceil(took.total_seconds()))
