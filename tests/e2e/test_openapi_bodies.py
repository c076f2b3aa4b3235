"""Every answer the API really gives, with a worker running jobs to each end state, matches what
/openapi.json declares for its operation and status: the declared models cannot drift from api/views.py.

A response hook checks each answer (status declared, media type, closed JSON schema, declared headers);
the test then asserts that every operation's success answer was among them.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy import text

from db.repository import JobRepository
from settings import Settings
from tests.support.api import bearer, serve
from tests.support.jobs import subgoal_body
from tests.support.openapi_check import OpenApiDocument

ACTIVE = ("PENDING", "PROCESSING")
FAULT = "#fault:action:rejected "


class Api:
    """A user's calls; ``states`` collects the status bodies seen while polling."""

    def __init__(self, http: httpx.AsyncClient, auth: dict[str, str]) -> None:
        self.http = http
        self.auth = auth
        self.states: set[tuple[str, str]] = set()

    async def start(self, body: dict[str, Any], path: str = "/api/ai/async/generate") -> dict[str, Any]:
        response = await self.http.post(path, json=body, headers=self.auth)
        assert response.status_code == 202, response.text
        data: dict[str, Any] = response.json()["data"]
        return data

    async def status(self, process_id: str, **headers: str) -> dict[str, Any]:
        response = await self.http.get(f"/api/ai/async/status/{process_id}", headers=self.auth | headers)
        data: dict[str, Any] = response.json()["data"]
        self.states.add((data["status"], data["scope"]))
        return data

    async def until(self, process_id: str, *statuses: str) -> dict[str, Any]:
        for _ in range(600):
            data = await self.status(process_id)
            if data["status"] in statuses:
                return data
            await asyncio.sleep(0.1)
        raise AssertionError(f"{process_id} never reached {statuses}")

    async def get(self, path: str, **headers: str) -> httpx.Response:
        return await self.http.get(path, headers=self.auth | headers)


async def test_every_answer_matches_the_declared_schema_for_its_operation_and_status(
    repo: JobRepository, make_settings: Callable[..., Settings], worker_for: Callable[[Settings], Any]
) -> None:
    settings = make_settings(
        rate_limit_read_per_minute=100_000, rate_limit_write_per_minute=1000, heartbeat_timeout_seconds=3
    )
    async with worker_for(settings), serve(settings) as http:
        document = OpenApiDocument((await http.get("/openapi.json")).json())
        http.event_hooks["response"].append(document.check)
        api = Api(http, bearer("schema-user", settings.jwt_secret))

        sub = await api.start(subgoal_body())
        done = await api.until(sub["processId"], "COMPLETED")
        goal_id = done["result"]["goalId"]
        subgoal_ids = [s["id"] for s in done["result"]["subGoals"]]
        assert (await api.get(f"/api/goals/{goal_id}")).status_code == 200

        # A goal-scope job with one failing unit: FAILED with a result that lists it, then a retry mends it.
        async with repo.engine.begin() as conn:
            await conn.execute(
                text("UPDATE sub_goals SET title = :f || title WHERE id = :id"),
                {"f": FAULT, "id": uuid.UUID(subgoal_ids[3])},
            )
        actions = await api.start({"type": "ACTION_GENERATION", "params": {"goalId": goal_id}})
        failed = await api.until(actions["processId"], "FAILED")
        assert failed["result"]["failedUnits"][0]["unitId"] == subgoal_ids[3]
        async with repo.engine.begin() as conn:
            await conn.execute(text("UPDATE sub_goals SET title = replace(title, :f, '')"), {"f": FAULT})
        child = await api.start({}, f"/api/ai/async/retry/{actions['processId']}")
        assert child["originalProcessId"] == actions["processId"]
        await api.until(child["processId"], "COMPLETED")

        # Target scope for an action and a subgoal: their results carry the generation context.
        tree = (await api.get(f"/api/goals/{goal_id}")).json()["data"]["goal"]
        action_id = tree["subGoals"][0]["actions"][0]["id"]
        tasks = await api.start({"type": "TASK_GENERATION", "params": {"actionId": action_id}})
        assert "actionContext" in (await api.until(tasks["processId"], "COMPLETED"))["result"]["metadata"]
        again = {"type": "ACTION_GENERATION", "params": {"subGoalId": subgoal_ids[0], "regenerate": True}}
        regenerated = await api.start(again)
        assert "goalContext" in (await api.until(regenerated["processId"], "COMPLETED"))["result"]["metadata"]
        refused = await http.post(
            "/api/ai/async/generate",
            json={"type": "ACTION_GENERATION", "params": {"goalId": goal_id}},
            headers=api.auth,
        )
        assert refused.json()["error"]["details"]["unitsWithChildren"]

        # A job cancelled while its AI call hangs.
        hanging = await api.start(subgoal_body(title="#fault:subgoal:hang 止まる目標"))
        await api.until(hanging["processId"], "PROCESSING")
        cancelled = await http.post(
            f"/api/ai/async/cancel/{hanging['processId']}", json={"reason": "試験"}, headers=api.auth
        )
        assert cancelled.json()["data"]["cancelReason"] == "試験"
        assert (await api.status(hanging["processId"], **{"Accept-Language": "en"}))["cancelledBy"] == "USER"

        history = (await api.get("/api/ai/async/history?pageSize=100")).json()["data"]
        assert {p["status"] for p in history["processes"]} == {"COMPLETED", "FAILED", "CANCELLED"}
        assert (
            await api.get("/api/ai/async/history?type=TASK_GENERATION&status=COMPLETED")
        ).status_code == 200
        page = (await api.get(f"/api/ai/async/events/{actions['processId']}?limit=3")).json()["data"]
        assert page["hasMore"] is True
        stream = await api.get(f"/api/ai/async/events/{sub['processId']}", Accept="text/event-stream")
        frames = [line[len("data: ") :] for line in stream.text.splitlines() if line.startswith("data: ")]
        for frame in frames:
            document.validate_component(json.loads(frame), "Event")
        assert len(frames) == 5

        # A repeated Idempotency-Key: the first answer replayed, another body refused.
        keyed = api.auth | {"Idempotency-Key": "schema-user-1"}
        body = subgoal_body(title="鍵つきの目標")
        first = await http.post("/api/ai/async/generate", json=body, headers=keyed)
        replayed = await http.post("/api/ai/async/generate", json=body, headers=keyed)
        assert replayed.headers["Idempotent-Replayed"] == "true" and replayed.json() == first.json()
        reused = await http.post("/api/ai/async/generate", json=subgoal_body(), headers=keyed)
        assert reused.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
        await api.until(first.json()["data"]["processId"], "COMPLETED")

        # Error answers go through the same check.
        pid = actions["processId"]
        await http.post(f"/api/ai/async/retry/{pid}", headers=api.auth)  # 409 ALREADY_RETRIED
        await http.post(f"/api/ai/async/cancel/{pid}", headers=api.auth)  # 400 CANCEL_NOT_ALLOWED
        await http.post("/api/ai/async/generate", content=b"{", headers=api.auth)  # 400 VALIDATION_ERROR
        await api.get("/api/ai/async/status/not-a-uuid")  # 400 INVALID_UUID
        await api.get(f"/api/goals/{uuid.uuid4()}")  # 404 GOAL_NOT_FOUND
        await http.get("/api/ai/async/history")  # 401 UNAUTHORIZED
        await http.get("/health")
        await http.get("/health/ready")

    assert api.states >= {
        ("COMPLETED", "TARGET"),
        ("FAILED", "GOAL"),
        ("COMPLETED", "GOAL"),
        ("PROCESSING", "TARGET"),
        ("CANCELLED", "TARGET"),
    }
    answered = {(method, template, status) for method, template, status in document.checked}
    for template, operations in document.document["paths"].items():
        for method, operation in operations.items():
            success = next(s for s in operation["responses"] if s.startswith("2"))
            assert (method.upper(), template, int(success)) in answered, (method, template)
    assert {status for _, _, status in answered} >= {400, 401, 404, 409, 422}
