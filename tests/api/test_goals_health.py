"""I77-I78: the goal tree and the health probes."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from settings import Settings
from tests.support.api import TIMESTAMP, assert_error, bearer, ensure_user, seed_tree, serve
from tests.support.servers import closed_port_address

ALICE = bearer("alice")


async def test_goal_tree_in_position_order(api: httpx.AsyncClient, clean_db: AsyncEngine) -> None:
    tree = await seed_tree(clean_db, await ensure_user(clean_db, "alice"), subgoals=3, actions=2, tasks=3)
    response = await api.get(f"/api/goals/{tree.goal_id}", headers=ALICE)
    assert response.status_code == 200
    goal = response.json()["data"]["goal"]
    assert set(goal) == {
        "id",
        "title",
        "description",
        "deadline",
        "background",
        "constraints",
        "status",
        "progress",
        "createdAt",
        "updatedAt",
        "subGoals",
    }
    assert (goal["id"], goal["deadline"], goal["constraints"], goal["status"]) == (
        str(tree.goal_id),
        "2030-01-01T09:00:00.000Z",
        None,
        "ACTIVE",
    )
    assert [s["id"] for s in goal["subGoals"]] == [str(i) for i in tree.subgoal_ids]
    assert [s["position"] for s in goal["subGoals"]] == [0, 1, 2]
    actions = [a for s in goal["subGoals"] for a in s["actions"]]
    assert [a["id"] for a in actions] == [str(i) for i in tree.action_ids]
    assert [(a["position"], a["type"]) for a in goal["subGoals"][1]["actions"]] == [
        (0, "EXECUTION"),
        (1, "HABIT"),
    ]
    tasks = goal["subGoals"][2]["actions"][1]["tasks"]
    assert [(t["title"], t["position"], t["dependsOn"], t["estimatedMinutes"]) for t in tasks] == [
        ("T2-1-0", 0, [], 30),
        ("T2-1-1", 1, [0], 31),
        ("T2-1-2", 2, [0, 1], 32),
    ]
    assert set(tasks[0]) == {
        "id",
        "title",
        "description",
        "type",
        "status",
        "estimatedMinutes",
        "priority",
        "position",
        "dependsOn",
        "deadline",
        "completedAt",
        "createdAt",
        "updatedAt",
    }
    assert (tasks[0]["status"], tasks[0]["priority"], tasks[0]["type"]) == ("NOT_STARTED", "MEDIUM", "HABIT")
    assert set(goal["subGoals"][0]) == {
        "id",
        "title",
        "description",
        "background",
        "position",
        "progress",
        "createdAt",
        "updatedAt",
        "actions",
    }


async def test_goal_checks(api: httpx.AsyncClient, clean_db: AsyncEngine) -> None:
    bobs = await seed_tree(clean_db, await ensure_user(clean_db, "bob"))
    error = assert_error(await api.get("/api/goals/g00d", headers=ALICE), 400, "INVALID_UUID")
    assert error["details"] == {
        "fields": [{"field": "goalId", "message": "有効なUUID形式で指定してください"}]
    }
    error = assert_error(await api.get(f"/api/goals/{uuid.uuid4()}", headers=ALICE), 404, "GOAL_NOT_FOUND")
    assert error["message"] == "目標が見つかりません"
    assert_error(await api.get(f"/api/goals/{bobs.goal_id}", headers=ALICE), 403, "FORBIDDEN")
    assert_error(await api.get(f"/api/goals/{bobs.goal_id}"), 401, "UNAUTHORIZED")
    assert (await api.get(f"/api/goals/{bobs.goal_id}", headers=bearer("bob"))).json()["data"]["goal"][
        "subGoals"
    ] == []


async def test_health_needs_no_token(api: httpx.AsyncClient) -> None:
    response = await api.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert (
        set(body) == {"status", "timestamp"} and body["status"] == "ok" and TIMESTAMP.match(body["timestamp"])
    )
    assert "x-ratelimit-limit" not in response.headers
    ready = await api.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ok" and ready.json()["checks"] == {"database": "ok", "temporal": "ok"}


async def test_ready_is_503_when_postgres_is_down(
    clean_db: AsyncEngine, api_settings: Callable[..., Settings], database_url: str
) -> None:
    port = int(closed_port_address().rsplit(":", 1)[1])
    down = make_url(database_url).set(port=port).render_as_string(hide_password=False)
    async with serve(api_settings(database_url=down)) as http:
        assert (await http.get("/health")).status_code == 200
        ready = await http.get("/health/ready")
    assert ready.status_code == 503
    body = ready.json()
    assert (body["status"], body["checks"]) == ("unavailable", {"database": "error", "temporal": "ok"})
    assert TIMESTAMP.match(body["timestamp"])
