"""G67-G72: GET /api/ai/async/history."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.enums import ProcessingStatus, ProcessingType, TargetType
from domain.errors import ErrorCode
from tests.support.api import assert_error, bearer, ensure_user, field_messages, seed_tree
from tests.support.jobs import Jobs

ALICE = bearer("alice")
HISTORY = "/api/ai/async/history"
BASE = datetime(2026, 3, 1, 12, tzinfo=UTC)


async def page(api: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await api.get(HISTORY, params=params, headers=ALICE)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def test_only_own_rows_newest_first(api: httpx.AsyncClient, clean_db: AsyncEngine, jobs: Jobs) -> None:
    alice, bob = await ensure_user(clean_db, "alice"), await ensure_user(clean_db, "bob")
    mine = [await jobs.pending(alice, created_at=BASE + timedelta(minutes=i)) for i in range(3)]
    same_time = [await jobs.pending(alice, created_at=BASE + timedelta(minutes=9)) for _ in range(2)]
    await jobs.pending(bob, created_at=BASE + timedelta(minutes=5))
    listed = [p["processId"] for p in (await page(api))["processes"]]
    assert listed == [str(i) for i in sorted(same_time, key=str, reverse=True)] + [
        str(i) for i in reversed(mine)
    ]


async def test_paging(api: httpx.AsyncClient, clean_db: AsyncEngine, jobs: Jobs) -> None:
    alice = await ensure_user(clean_db, "alice")
    ids = [
        str(await jobs.pending(alice, created_at=BASE - timedelta(minutes=i))) for i in range(25)
    ]  # newest first
    first = await page(api)
    assert [p["processId"] for p in first["processes"]] == ids[:20]
    assert first["pagination"] == {
        "page": 1,
        "pageSize": 20,
        "totalCount": 25,
        "totalPages": 2,
        "hasNext": True,
        "hasPrevious": False,
    }
    second = await page(api, page=2, pageSize=10)
    assert [p["processId"] for p in second["processes"]] == ids[10:20]
    assert (second["pagination"]["hasNext"], second["pagination"]["hasPrevious"]) == (True, True)
    last = await page(api, page=3, pageSize=10)
    assert [p["processId"] for p in last["processes"]] == ids[20:]
    assert (last["pagination"]["totalPages"], last["pagination"]["hasNext"]) == (3, False)
    beyond = await page(api, page=10**30, pageSize=100)
    assert beyond["processes"] == [] and beyond["pagination"]["totalCount"] == 25


async def test_empty_history(api: httpx.AsyncClient) -> None:
    data = await page(api)
    assert data == {
        "processes": [],
        "pagination": {
            "page": 1,
            "pageSize": 20,
            "totalCount": 0,
            "totalPages": 0,
            "hasNext": False,
            "hasPrevious": False,
        },
    }


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"page": "0"}, {"page": "pageは1以上の整数である必要があります"}),
        ({"page": "-1"}, {"page": "pageは1以上の整数である必要があります"}),
        ({"page": "1.5"}, {"page": "pageは1以上の整数である必要があります"}),
        ({"pageSize": "0"}, {"pageSize": "pageSizeは1から100の整数である必要があります"}),
        ({"pageSize": "101"}, {"pageSize": "pageSizeは1から100の整数である必要があります"}),
        ({"pageSize": "abc"}, {"pageSize": "pageSizeは1から100の整数である必要があります"}),
        (
            {"type": "SUBGOAL", "status": "DONE", "startDate": "yesterday", "targetId": "x"},
            {
                "type": "処理タイプが不正です",
                "status": "処理状態が不正です",
                "startDate": "日時はISO 8601形式で指定してください",
                "targetId": "有効なUUID形式で指定してください",
            },
        ),
        ({"endDate": "2026-03-01T10:00:00"}, {"endDate": "日時はISO 8601形式で指定してください"}),
        ({"endDate": "2026-02-30"}, {"endDate": "日時はISO 8601形式で指定してください"}),
        (
            {"startDate": "2026-03-02", "endDate": "2026-03-01"},
            {"startDate": "startDateはendDate以前である必要があります"},
        ),
    ],
)
async def test_invalid_query_values(
    api: httpx.AsyncClient, params: dict[str, str], expected: dict[str, str]
) -> None:
    response = await api.get(HISTORY, params=params | {"unknownParameter": "ignored"}, headers=ALICE)
    assert_error(response, 400, "VALIDATION_ERROR")
    assert field_messages(response) == expected


async def test_filters_alone_and_combined(api: httpx.AsyncClient, clean_db: AsyncEngine, jobs: Jobs) -> None:
    alice = await ensure_user(clean_db, "alice")
    target = (await seed_tree(clean_db, alice, subgoals=1, actions=1)).action_ids[0]
    day1 = await jobs.pending(
        alice, ProcessingType.TASK_GENERATION, TargetType.ACTION, target, created_at=BASE
    )
    day2 = await jobs.pending(alice, created_at=BASE + timedelta(days=1))
    day3 = await jobs.pending(
        alice, ProcessingType.TASK_GENERATION, TargetType.ACTION, created_at=BASE + timedelta(days=2)
    )
    for process_id in (day1, day2):
        await jobs.processing(process_id)
        await jobs.finish(process_id, ProcessingStatus.FAILED, ErrorCode.AI_ERROR.value)
    retried = await api.post(f"/api/ai/async/retry/{day1}", headers=ALICE)
    child = uuid.UUID(retried.json()["data"]["processId"])  # created now, same target and root

    async def ids(**params: Any) -> set[uuid.UUID]:
        return {uuid.UUID(p["processId"]) for p in (await page(api, **params))["processes"]}

    assert await ids(type="TASK_GENERATION") == {day1, day3, child}
    assert await ids(status="FAILED") == {day1, day2}
    assert await ids(status="PENDING", type="TASK_GENERATION") == {day3, child}
    assert await ids(targetId=str(target)) == {day1, child}
    assert await ids(rootProcessId=str(day1)) == {day1, child}
    assert await ids(rootProcessId=str(day1), status="PENDING") == {child}
    assert await ids(startDate="2026-03-02", endDate="2026-03-02") == {day2}
    assert await ids(startDate="2026-03-01T12:00:00Z", endDate="2026-03-02T12:00:00.000Z") == {day1, day2}
    assert await ids(startDate="2026-03-01T21:00:00.001+09:00", endDate="2026-03-03") == {day2, day3}
    assert await ids(endDate="2026-03-01") == {day1}
    assert await ids(startDate="2026-03-03", type="TASK_GENERATION") == {day3, child}
    totals = (await page(api, type="TASK_GENERATION", pageSize=1))["pagination"]
    assert (totals["totalCount"], totals["totalPages"], totals["hasNext"]) == (3, 3, True)


async def test_items_carry_errors_only_when_terminal_unsuccessful(
    api: httpx.AsyncClient, clean_db: AsyncEngine, jobs: Jobs
) -> None:
    alice = await ensure_user(clean_db, "alice")
    states = {}
    for final, code in (
        (ProcessingStatus.FAILED, ErrorCode.AI_ERROR),
        (ProcessingStatus.TIMEOUT, ErrorCode.TIMEOUT_ERROR),
        (ProcessingStatus.CANCELLED, ErrorCode.CANCELLED),
        (ProcessingStatus.COMPLETED, None),
    ):
        process_id = await jobs.pending(alice, ProcessingType.ACTION_GENERATION, TargetType.GOAL)
        await jobs.processing(process_id)
        await jobs.finish(process_id, final, code.value if code else None, {"x": 1} if code else None)
        states[str(process_id)] = final
    pending = await jobs.pending(alice)
    processing = await jobs.pending(alice)
    await jobs.processing(processing, progress=50)
    items = {p["processId"]: p for p in (await page(api))["processes"]}
    for process_id, item in items.items():
        assert set(item) >= {
            "processId",
            "type",
            "status",
            "progress",
            "targetType",
            "targetId",
            "retryCount",
            "parentProcessId",
            "createdAt",
            "updatedAt",
            "completedAt",
        }
        if states.get(process_id) in (
            ProcessingStatus.FAILED,
            ProcessingStatus.TIMEOUT,
            ProcessingStatus.CANCELLED,
        ):
            assert set(item["error"]) == {"code", "message", "retryable"} and item["completedAt"]
        else:
            assert "error" not in item
    assert items[str(pending)]["completedAt"] is None and items[str(processing)]["completedAt"] is None
    assert items[str(processing)]["progress"] == 50
    failed = next(i for i in items.values() if i["status"] == "FAILED")
    assert failed["error"] == {
        "code": "AI_ERROR",
        "message": "AI生成に失敗しました。もう一度お試しください。",
        "retryable": True,
    }
