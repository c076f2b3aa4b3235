"""D41-D49: GET /api/ai/async/status/{processId}; job states are written through the repository."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from db.models import ProcessingUnit
from domain.enums import ProcessingStatus, ProcessingType, Scope, TargetType, UnitStatus
from domain.errors import ErrorCode
from tests.support.api import assert_error, bearer, ensure_user, seed_tree
from tests.support.jobs import Jobs

ALICE = bearer("alice")
STATUS = "/api/ai/async/status/"
ALWAYS = {
    "processId",
    "type",
    "status",
    "progress",
    "targetType",
    "targetId",
    "scope",
    "units",
    "retryCount",
    "parentProcessId",
    "rootProcessId",
    "createdAt",
    "updatedAt",
    "startedAt",
    "completedAt",
}


async def status_of(api: httpx.AsyncClient, process_id: uuid.UUID | str, **headers: str) -> dict[str, Any]:
    response = await api.get(f"{STATUS}{process_id}", headers=ALICE | headers)
    assert response.status_code == 200, response.text
    assert "error" not in response.json()
    data: dict[str, Any] = response.json()["data"]
    return data


async def test_path_id_format(api: httpx.AsyncClient, clean_db: AsyncEngine, jobs: Jobs) -> None:
    for bad in (
        "invalid-id",
        "12345678-1234-1234-1234",
        "123456781234123412341234567890ab",
        "12345678-1234-1234-1234-12345678901g",
        "12345678-1234-1234-1234-1234567890abc",
    ):
        error = assert_error(await api.get(STATUS + bad, headers=ALICE), 400, "INVALID_UUID")
        assert error["message"] == "UUIDの形式が不正です"
        assert error["details"] == {
            "fields": [{"field": "processId", "message": "有効なUUID形式で指定してください"}]
        }
    process_id = await jobs.pending(await ensure_user(clean_db, "alice"))
    assert (await status_of(api, str(process_id).upper()))["processId"] == str(process_id)
    non_rfc = "12345678-1234-0234-f234-123456789abc"
    assert_error(await api.get(STATUS + non_rfc, headers=ALICE), 404, "PROCESSING_NOT_FOUND")


async def test_unknown_and_foreign_jobs(api: httpx.AsyncClient, clean_db: AsyncEngine, jobs: Jobs) -> None:
    error = assert_error(await api.get(f"{STATUS}{uuid.uuid4()}", headers=ALICE), 404, "PROCESSING_NOT_FOUND")
    assert error["message"] == "処理が見つかりません"
    bobs = await jobs.pending(await ensure_user(clean_db, "bob"))
    error = assert_error(await api.get(f"{STATUS}{bobs}", headers=ALICE), 403, "FORBIDDEN")
    assert error["message"] == "この操作を実行する権限がありません"


async def test_pending_job(api: httpx.AsyncClient, clean_db: AsyncEngine, jobs: Jobs) -> None:
    process_id = await jobs.pending(await ensure_user(clean_db, "alice"))
    data = await status_of(api, process_id)
    assert set(data) == ALWAYS | {"estimatedCompletionTime"}
    assert (data["status"], data["progress"], data["startedAt"], data["completedAt"]) == (
        "PENDING",
        0,
        None,
        None,
    )
    assert data["units"] == {"total": 1, "succeeded": 0, "failed": 0}
    assert (data["rootProcessId"], data["parentProcessId"], data["retryCount"]) == (str(process_id), None, 0)
    assert (data["scope"], data["targetType"]) == ("TARGET", "SUB_GOAL")


async def test_estimate_is_stable_and_disappears_when_terminal(
    api: httpx.AsyncClient, clean_db: AsyncEngine, jobs: Jobs
) -> None:
    process_id = await jobs.pending(await ensure_user(clean_db, "alice"))
    first = (await status_of(api, process_id))["estimatedCompletionTime"]
    await jobs.processing(process_id, progress=50)
    processing = await status_of(api, process_id)
    assert processing["estimatedCompletionTime"] == first and processing["startedAt"] is not None
    assert (processing["status"], processing["progress"]) == ("PROCESSING", 50)
    await jobs.finish(process_id, ProcessingStatus.FAILED, ErrorCode.AI_ERROR.value)
    assert "estimatedCompletionTime" not in await status_of(api, process_id)


async def test_completed_job_shows_its_result(
    api: httpx.AsyncClient, clean_db: AsyncEngine, jobs: Jobs
) -> None:
    alice = await ensure_user(clean_db, "alice")
    goal_id = uuid.uuid4()
    params = {
        "title": "目標",
        "description": "説明",
        "background": "背景",
        "deadline": "2099-01-01T00:00:00.000Z",
    }
    process_id = await jobs.pending(
        alice,
        ProcessingType.SUBGOAL_GENERATION,
        TargetType.GOAL,
        goal_id,
        params=params | {"regenerate": False},
    )
    await jobs.processing(process_id)
    await jobs.save_unit(process_id, (goal_id, TargetType.GOAL), 0, Scope.TARGET)
    data = await status_of(api, process_id)
    assert set(data) == ALWAYS | {"result"}
    assert (data["status"], data["progress"]) == ("COMPLETED", 100) and data["completedAt"]
    assert data["units"] == {"total": 1, "succeeded": 1, "failed": 0}
    result = data["result"]
    assert result["goalId"] == str(goal_id) and len(result["subGoals"]) == 8
    assert result["metadata"]["provider"] == "offline" and result["metadata"]["tokensUsed"]["total"] == 30


async def test_failed_job_shows_its_error_inside_data(
    api: httpx.AsyncClient, clean_db: AsyncEngine, jobs: Jobs
) -> None:
    process_id = await jobs.pending(
        await ensure_user(clean_db, "alice"), ProcessingType.TASK_GENERATION, TargetType.ACTION
    )
    await jobs.processing(process_id, progress=50)
    violations = {"violations": [{"rule": "TK_ESTIMATE_RANGE", "item": 2, "actual": 180, "limit": "15..120"}]}
    await jobs.finish(process_id, ProcessingStatus.FAILED, ErrorCode.QUALITY_ERROR.value, violations)
    response = await api.get(f"{STATUS}{process_id}", headers=ALICE)
    assert set(response.json()) == {"success", "data"}
    data = response.json()["data"]
    assert set(data) == ALWAYS | {"error"}
    assert (data["status"], data["progress"]) == ("FAILED", 50) and data["completedAt"]
    assert data["error"] == {
        "code": "QUALITY_ERROR",
        "message": "AI生成結果の品質が基準を満たしませんでした。もう一度お試しください。",
        "retryable": True,
        "details": violations,
    }
    english = await status_of(api, process_id, **{"Accept-Language": "en"})
    assert english["error"]["message"] == "The AI output did not meet the quality criteria. Please try again."


async def test_timeout_and_cancelled_jobs(api: httpx.AsyncClient, clean_db: AsyncEngine, jobs: Jobs) -> None:
    alice = await ensure_user(clean_db, "alice")
    timed_out = await jobs.pending(alice)
    await jobs.processing(timed_out)
    await jobs.finish(
        timed_out, ProcessingStatus.TIMEOUT, ErrorCode.TIMEOUT_ERROR.value, {"timeoutKind": "JOB_DEADLINE"}
    )
    data = await status_of(api, timed_out)
    assert data["status"] == "TIMEOUT" and data["error"]["code"] == "TIMEOUT_ERROR"
    assert data["error"]["details"] == {"timeoutKind": "JOB_DEADLINE"}
    assert "cancelReason" not in data

    by_user = await jobs.pending(alice)
    assert (await api.post(f"/api/ai/async/cancel/{by_user}", headers=ALICE)).status_code == 200
    data = await status_of(api, by_user)
    assert set(data) == ALWAYS | {"error", "cancelReason", "cancelledBy"}
    assert data["error"] == {"code": "CANCELLED", "message": "処理はキャンセルされました", "retryable": False}
    assert (data["cancelReason"], data["cancelledBy"]) == ("ユーザーによるキャンセル", "USER")

    by_operator = await jobs.pending(alice)
    await jobs.processing(by_operator, progress=50)
    await jobs.finish(by_operator, ProcessingStatus.CANCELLED, ErrorCode.CANCELLED.value)
    data = await status_of(api, by_operator)
    assert (data["progress"], data["cancelReason"], data["cancelledBy"]) == (
        50,
        "オペレーターによるキャンセル",
        "OPERATOR",
    )


async def test_no_internal_text_in_status_bodies(
    api: httpx.AsyncClient, clean_db: AsyncEngine, jobs: Jobs
) -> None:
    process_id = await jobs.pending(await ensure_user(clean_db, "alice"))
    await jobs.processing(process_id)
    internal = 'Traceback (most recent call last): File "/srv/ai/openai.py" SELECT 1; openai said: quota'
    await jobs.finish(process_id, ProcessingStatus.FAILED, ErrorCode.AI_ERROR.value, internal=internal)
    response = await api.get(f"{STATUS}{process_id}", headers=ALICE)
    assert response.json()["data"]["error"] == {
        "code": "AI_ERROR",
        "message": "AI生成に失敗しました。もう一度お試しください。",
        "retryable": True,
    }
    for fragment in ("Traceback", "openai", "SELECT", "/srv", "quota"):
        assert fragment not in response.text


async def test_unit_counts_and_goal_scope_result(
    api: httpx.AsyncClient, clean_db: AsyncEngine, jobs: Jobs
) -> None:
    alice = await ensure_user(clean_db, "alice")
    tree = await seed_tree(clean_db, alice, subgoals=8)
    started = await api.post(
        "/api/ai/async/generate",
        json={"type": "ACTION_GENERATION", "params": {"goalId": str(tree.goal_id)}},
        headers=ALICE,
    )
    process_id = uuid.UUID(started.json()["data"]["processId"])
    await jobs.processing(process_id)
    for ordinal in (0, 1, 3):
        await jobs.save_unit(
            process_id, (tree.subgoal_ids[ordinal], TargetType.SUB_GOAL), ordinal, Scope.GOAL
        )
    await jobs.fail_unit(process_id, tree.subgoal_ids[2], ErrorCode.QUALITY_ERROR)
    data = await status_of(api, process_id)
    assert (data["scope"], data["progress"]) == ("GOAL", 50)
    assert data["units"] == {"total": 8, "succeeded": 3, "failed": 1}
    async with clean_db.connect() as conn:
        stored = dict(
            (
                await conn.execute(
                    select(ProcessingUnit.status, func.count())
                    .where(ProcessingUnit.process_id == process_id)
                    .group_by(ProcessingUnit.status)
                )
            ).all()
        )
    assert stored == {UnitStatus.SUCCEEDED: 3, UnitStatus.FAILED: 1, UnitStatus.PENDING: 4}
    details = {"succeeded": 3, "failed": 1, "notAttempted": 4}
    await jobs.finish(process_id, ProcessingStatus.FAILED, ErrorCode.PARTIAL_FAILURE.value, details)
    data = await status_of(api, process_id)
    assert data["error"]["code"] == "PARTIAL_FAILURE" and data["error"]["details"] == details
    result = data["result"]
    assert [u["unitId"] for u in result["succeededUnits"]] == [str(tree.subgoal_ids[i]) for i in (0, 1, 3)]
    assert result["failedUnits"] == [
        {
            "unitId": str(tree.subgoal_ids[2]),
            "unitType": "SUB_GOAL",
            "error": {
                "code": "QUALITY_ERROR",
                "message": "AI生成結果の品質が基準を満たしませんでした。もう一度お試しください。",
                "retryable": True,
            },
        }
    ]
    assert result["notAttemptedUnits"] == [str(tree.subgoal_ids[i]) for i in range(4, 8)]
    english = await status_of(api, process_id, **{"Accept-Language": "en"})
    assert english["result"]["failedUnits"][0]["error"]["message"] == (
        "The AI output did not meet the quality criteria. Please try again."
    )
