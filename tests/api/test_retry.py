"""Spec 5.5 / checklist E50-E58 (the parts that need no worker): POST /api/ai/async/retry/{processId}."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment

from db.models import ProcessingEvent, ProcessingState, ProcessingUnit
from domain.enums import ProcessingStatus, ProcessingType, Scope, TargetType
from domain.errors import ErrorCode
from settings import Settings
from tests.support.api import (
    RETRY_ACCEPTED_KEYS,
    assert_error,
    bearer,
    ensure_user,
    field_messages,
    seed_tree,
    serve,
)
from tests.support.jobs import Jobs
from tests.support.servers import closed_port_address

ALICE = bearer("alice")


def retry_url(process_id: uuid.UUID | str) -> str:
    return f"/api/ai/async/retry/{process_id}"


async def load(engine: AsyncEngine, process_id: uuid.UUID | str) -> ProcessingState:
    async with engine.connect() as conn:
        stmt = select(ProcessingState).where(ProcessingState.id == uuid.UUID(str(process_id)))
        return ProcessingState(**(await conn.execute(stmt)).one()._mapping)


async def events(engine: AsyncEngine, process_id: uuid.UUID) -> list[tuple[int, str, dict[str, Any]]]:
    async with engine.connect() as conn:
        stmt = (
            select(ProcessingEvent.seq, ProcessingEvent.type, ProcessingEvent.payload)
            .where(ProcessingEvent.process_id == process_id)
            .order_by(ProcessingEvent.seq)
        )
        return [(r.seq, r.type, r.payload) for r in (await conn.execute(stmt)).all()]


async def failed_job(
    jobs: Jobs, user: uuid.UUID, target: uuid.UUID, status: ProcessingStatus = ProcessingStatus.FAILED
) -> uuid.UUID:
    process_id = await jobs.pending(user, target_id=target)
    await jobs.processing(process_id, progress=50)
    code = ErrorCode.TIMEOUT_ERROR if status is ProcessingStatus.TIMEOUT else ErrorCode.AI_ERROR
    await jobs.finish(process_id, status, code.value)
    return process_id


async def test_retry_of_failed_and_timed_out_jobs(
    api: httpx.AsyncClient, clean_db: AsyncEngine, jobs: Jobs, temporal_env: WorkflowEnvironment
) -> None:
    alice = await ensure_user(clean_db, "alice")
    tree = await seed_tree(clean_db, alice, subgoals=2)
    for target, status in (
        (tree.subgoal_ids[0], ProcessingStatus.FAILED),
        (tree.subgoal_ids[1], ProcessingStatus.TIMEOUT),
    ):
        parent = await failed_job(jobs, alice, target, status)
        response = await api.post(retry_url(parent), headers=ALICE)
        assert response.status_code == 202, response.text
        data = response.json()["data"]
        assert set(data) == RETRY_ACCEPTED_KEYS
        assert data["processId"] != str(parent)
        assert response.headers["Location"] == f"/api/ai/async/status/{data['processId']}"
        assert (data["status"], data["type"], data["targetType"], data["targetId"]) == (
            "PENDING",
            "ACTION_GENERATION",
            "SUB_GOAL",
            str(target),
        )
        assert (data["retryCount"], data["originalProcessId"], data["rootProcessId"]) == (
            1,
            str(parent),
            str(parent),
        )
        description = await temporal_env.client.get_workflow_handle(f"ai-gen-{data['processId']}").describe()
        assert description.workflow_type == "GenerationWorkflow"


async def test_chain_of_three_retries_then_refused(
    api: httpx.AsyncClient, clean_db: AsyncEngine, jobs: Jobs
) -> None:
    alice = await ensure_user(clean_db, "alice")
    target = (await seed_tree(clean_db, alice, subgoals=1)).subgoal_ids[0]
    root = current = await failed_job(jobs, alice, target)
    for expected in (1, 2, 3):
        data = (await api.post(retry_url(current), headers=ALICE)).json()["data"]
        assert (data["retryCount"], data["originalProcessId"], data["rootProcessId"]) == (
            expected,
            str(current),
            str(root),
        )
        current = uuid.UUID(data["processId"])
        await jobs.processing(current)
        await jobs.finish(current, ProcessingStatus.FAILED, ErrorCode.AI_ERROR.value)
    error = assert_error(await api.post(retry_url(current), headers=ALICE), 400, "MAX_RETRY_EXCEEDED")
    assert error["message"] == "リトライ回数の上限（3回）を超えました。新しい処理として開始してください"


async def test_only_failed_or_timed_out_jobs_can_be_retried(
    api: httpx.AsyncClient, clean_db: AsyncEngine, jobs: Jobs
) -> None:
    alice = await ensure_user(clean_db, "alice")
    tree = await seed_tree(clean_db, alice, subgoals=4)
    pending = await jobs.pending(alice, target_id=tree.subgoal_ids[0])
    processing = await jobs.pending(alice, target_id=tree.subgoal_ids[1])
    await jobs.processing(processing)
    other_goal = (await seed_tree(clean_db, alice, subgoals=1)).goal_id  # free of the jobs above
    completed = await jobs.pending(alice, ProcessingType.ACTION_GENERATION, TargetType.GOAL, other_goal)
    await jobs.processing(completed)
    await jobs.finish(completed, ProcessingStatus.COMPLETED)
    cancelled = await jobs.pending(alice, target_id=tree.subgoal_ids[3])
    await api.post(f"/api/ai/async/cancel/{cancelled}", headers=ALICE)
    for process_id in (pending, processing, completed, cancelled):
        error = assert_error(await api.post(retry_url(process_id), headers=ALICE), 400, "RETRY_NOT_ALLOWED")
        assert error["message"] == "この状態の処理はリトライできません"


async def test_child_copies_params_and_parent_only_gains_retry_created(
    api: httpx.AsyncClient, clean_db: AsyncEngine, jobs: Jobs
) -> None:
    alice = await ensure_user(clean_db, "alice")
    started = await api.post(
        "/api/ai/async/generate",
        json={
            "type": "SUBGOAL_GENERATION",
            "params": {
                "title": "目標",
                "description": "説明",
                "deadline": "2099-06-30T12:00:00+09:00",
                "background": "背景",
                "constraints": "制約",
            },
        },
        headers=ALICE,
    )
    parent_id = uuid.UUID(started.json()["data"]["processId"])
    await jobs.processing(parent_id)
    await jobs.finish(parent_id, ProcessingStatus.FAILED, ErrorCode.QUALITY_ERROR.value)
    before = await load(clean_db, parent_id)
    response = await api.post(retry_url(parent_id), content=b"{}", headers=ALICE)
    child = await load(clean_db, response.json()["data"]["processId"])
    assert (child.retry_count, child.parent_process_id, child.root_process_id) == (1, parent_id, parent_id)
    assert (
        child.params
        == before.params
        == {
            "title": "目標",
            "description": "説明",
            "deadline": "2099-06-30T03:00:00.000Z",
            "background": "背景",
            "constraints": "制約",
            "regenerate": False,
        }
    )
    assert (child.type, child.target_type, child.target_id) == (
        before.type,
        before.target_type,
        before.target_id,
    )
    assert child.status == ProcessingStatus.PENDING and child.user_id == alice
    after = await load(clean_db, parent_id)
    changed = {c for c in ProcessingState.__table__.columns.keys() if getattr(before, c) != getattr(after, c)}
    assert changed == {"event_seq"} and after.event_seq == before.event_seq + 1
    last = (await events(clean_db, parent_id))[-1]
    assert last == (after.event_seq, "RETRY_CREATED", {"childProcessId": str(child.id)})
    child_events = await events(clean_db, child.id)
    assert [e[:2] for e in child_events] == [(1, "CREATED")]
    assert child_events[0][2]["parentProcessId"] == str(parent_id)


async def test_a_job_is_retried_at_most_once(
    api: httpx.AsyncClient, clean_db: AsyncEngine, jobs: Jobs
) -> None:
    alice = await ensure_user(clean_db, "alice")
    tree = await seed_tree(clean_db, alice, subgoals=2)
    parent = await failed_job(jobs, alice, tree.subgoal_ids[0])
    child = (await api.post(retry_url(parent), headers=ALICE)).json()["data"]["processId"]
    error = assert_error(await api.post(retry_url(parent), headers=ALICE), 409, "ALREADY_RETRIED")
    assert error["details"] == {"childProcessId": child}
    assert error["message"] == "この処理は既にリトライされています"

    racing = await failed_job(jobs, alice, tree.subgoal_ids[1])
    responses = await asyncio.gather(*(api.post(retry_url(racing), headers=ALICE) for _ in range(2)))
    assert sorted(r.status_code for r in responses) == [202, 409]
    winner = next(r for r in responses if r.status_code == 202).json()["data"]["processId"]
    loser = next(r for r in responses if r.status_code == 409).json()["error"]
    assert (loser["code"], loser["details"]) == ("ALREADY_RETRIED", {"childProcessId": winner})
    async with clean_db.connect() as conn:
        children = (
            await conn.execute(select(ProcessingState.id).where(ProcessingState.parent_process_id == racing))
        ).all()
    assert len(children) == 1


async def test_retry_checks_id_owner_token_and_body(
    api: httpx.AsyncClient, clean_db: AsyncEngine, jobs: Jobs
) -> None:
    bob = await ensure_user(clean_db, "bob")
    bobs = await failed_job(jobs, bob, (await seed_tree(clean_db, bob, subgoals=1)).subgoal_ids[0])
    assert_error(await api.post(retry_url("not-a-uuid"), headers=ALICE), 400, "INVALID_UUID")
    assert_error(await api.post(retry_url(uuid.uuid4()), headers=ALICE), 404, "PROCESSING_NOT_FOUND")
    assert_error(await api.post(retry_url(bobs), headers=ALICE), 403, "FORBIDDEN")
    assert_error(await api.post(retry_url(bobs)), 401, "UNAUTHORIZED")
    response = await api.post(retry_url(bobs), json={"force": True}, headers=bearer("bob"))
    assert_error(response, 400, "VALIDATION_ERROR")
    assert field_messages(response) == {"force": "不明なフィールドです"}
    listed = await api.post(retry_url(bobs), json=[], headers=bearer("bob"))
    assert field_messages(listed) == {"body": "リクエストボディはJSONオブジェクトである必要があります"}
    async with clean_db.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM processing_states"))).scalar_one() == 1


async def test_retry_reruns_the_target_checks(
    api: httpx.AsyncClient, clean_db: AsyncEngine, jobs: Jobs
) -> None:
    alice = await ensure_user(clean_db, "alice")
    tree = await seed_tree(clean_db, alice, subgoals=2)
    busy = await failed_job(jobs, alice, tree.subgoal_ids[0])
    async with clean_db.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO actions (id, sub_goal_id, title, description, position)"
                " VALUES (:i, :s, 't', 'd', 0)"
            ),
            {"i": uuid.uuid4(), "s": tree.subgoal_ids[0]},
        )
    error = assert_error(await api.post(retry_url(busy), headers=ALICE), 409, "TARGET_HAS_CHILDREN")
    assert error["details"]["unitsWithChildren"] == [str(tree.subgoal_ids[0])]
    gone = await failed_job(jobs, alice, tree.subgoal_ids[1])
    async with clean_db.begin() as conn:
        await conn.execute(text("DELETE FROM sub_goals WHERE id = :s"), {"s": tree.subgoal_ids[1]})
    assert_error(await api.post(retry_url(gone), headers=ALICE), 404, "SUBGOAL_NOT_FOUND")


async def test_goal_scope_retry_processes_only_unfinished_units(
    api: httpx.AsyncClient, clean_db: AsyncEngine, jobs: Jobs
) -> None:
    alice = await ensure_user(clean_db, "alice")
    tree = await seed_tree(clean_db, alice, subgoals=8)
    units = [(s, TargetType.SUB_GOAL) for s in tree.subgoal_ids]
    parent = await jobs.pending(
        alice, ProcessingType.ACTION_GENERATION, TargetType.GOAL, tree.goal_id, units=units
    )
    await jobs.processing(parent)
    for ordinal, unit in enumerate(units):
        if ordinal in (2, 5):
            await jobs.fail_unit(parent, unit[0], ErrorCode.QUALITY_ERROR)
        else:
            await jobs.save_unit(parent, unit, ordinal, Scope.GOAL)
    await jobs.finish(parent, ProcessingStatus.FAILED, ErrorCode.PARTIAL_FAILURE.value)
    # Regenerate is false, yet the 6 saved subgoals' actions do not block: only the units to process count.
    response = await api.post(retry_url(parent), headers=ALICE)
    assert response.status_code == 202, response.text
    data = response.json()["data"]
    assert (data["scope"], data["totalUnits"]) == ("GOAL", 2)
    child = await load(clean_db, data["processId"])
    assert child.total_units == 2
    async with clean_db.connect() as conn:
        planned = (
            (
                await conn.execute(
                    select(ProcessingUnit.unit_id)
                    .where(ProcessingUnit.process_id == child.id)
                    .order_by(ProcessingUnit.ordinal)
                )
            )
            .scalars()
            .all()
        )
    assert planned == [tree.subgoal_ids[2], tree.subgoal_ids[5]]


async def test_subgoal_retry_with_a_past_deadline_is_accepted(
    api: httpx.AsyncClient, clean_db: AsyncEngine, jobs: Jobs
) -> None:
    alice = await ensure_user(clean_db, "alice")
    past = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    params = {"title": "t", "description": "d", "background": "b", "deadline": past, "regenerate": False}
    parent = await jobs.pending(alice, ProcessingType.SUBGOAL_GENERATION, TargetType.GOAL, params=params)
    await jobs.processing(parent)
    await jobs.finish(parent, ProcessingStatus.FAILED, ErrorCode.AI_ERROR.value)
    response = await api.post(retry_url(parent), headers=ALICE)
    assert response.status_code == 202, response.text
    assert response.json()["data"]["targetId"] == str((await load(clean_db, parent)).target_id)


async def test_retry_when_temporal_is_unreachable(
    clean_db: AsyncEngine, api_settings: Callable[..., Settings], jobs: Jobs
) -> None:
    alice = await ensure_user(clean_db, "alice")
    parent = await failed_job(jobs, alice, (await seed_tree(clean_db, alice, subgoals=1)).subgoal_ids[0])
    async with serve(api_settings(temporal_address=closed_port_address())) as http:
        error = assert_error(await http.post(retry_url(parent), headers=ALICE), 503, "WORKFLOW_START_ERROR")
    child = await load(clean_db, error["details"]["processId"])
    assert child.parent_process_id == parent and child.status == ProcessingStatus.FAILED
    assert child.error_code == "WORKFLOW_START_ERROR" and child.completed_at is not None
