"""Fault directives through the real worker (J87–J90) and the persistence rules (J95, L113, L121, L122)."""

from __future__ import annotations

import itertools
import logging
import uuid
from typing import Any

import pytest
from sqlalchemy import text
from temporalio.client import WorkflowFailureError

from db.repository import JobRepository
from domain.enums import ProcessingType, TargetType
from tests.support.jobs import (
    events,
    make_user,
    rows,
    run_failing_subgoal_job,
    start_job,
    start_subgoal_job,
    subgoal_params,
)


async def test_throttle_waits_follow_the_backoff_and_are_logged(
    repo, client, make_settings, worker_for, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings()
    user = await make_user(repo.engine)
    caplog.set_level(logging.INFO, logger="activities")
    async with worker_for(settings):
        process_id, handle = await start_subgoal_job(
            repo, client, settings, user, subgoal_params("#fault:subgoal:throttle:2 学習計画")
        )
        await handle.result()
    failed_attempts = [
        r.attempt for r in caplog.records if getattr(r, "event", None) == "activity_attempt_failed"
    ]
    assert failed_attempts == [1, 2]
    retried = [r.attempt for r in caplog.records if getattr(r, "event", None) == "activity_attempt_retried"]
    assert retried == [2, 3]
    stamps = await rows(
        repo,
        "SELECT created_at FROM processing_events"
        " WHERE process_id=:p AND type IN ('ATTEMPT_FAILED','PROGRESS') ORDER BY seq",
        p=process_id,
    )
    gaps = [(b.created_at - a.created_at).total_seconds() for a, b in itertools.pairwise(stamps)]
    # throttle sends Retry-After 1 s; it never shortens the policy's backoff of 1 s, then 2 s
    assert len(gaps) == 2 and gaps[0] >= 0.9 and gaps[1] >= 1.9


async def test_throttle_four_times_fails_with_ai_error_after_four_attempts(
    repo, client, make_settings, worker_for
) -> None:
    process_id = await run_failing_subgoal_job(
        repo, client, make_settings(), worker_for, "#fault:subgoal:throttle:4"
    )
    job = await repo.get_job(process_id)
    assert job is not None and job.status == "FAILED" and job.error == {"code": "AI_ERROR", "retryable": True}
    attempts = [e.payload["attempt"] for e in await events(repo, process_id) if e.type == "ATTEMPT_FAILED"]
    assert attempts == [1, 2, 3]


async def test_invalid_json_three_times_fails_with_ai_response_invalid(
    repo, client, make_settings, worker_for
) -> None:
    process_id = await run_failing_subgoal_job(
        repo, client, make_settings(), worker_for, "#fault:subgoal:invalid_json:3"
    )
    job = await repo.get_job(process_id)
    assert job is not None and job.error_code == "AI_RESPONSE_INVALID" and job.error["retryable"] is True
    kinds = [e.payload["kind"] for e in await events(repo, process_id) if e.type == "ATTEMPT_FAILED"]
    assert kinds == ["REGENERATION", "REGENERATION"]


async def completed_goal(repo: JobRepository, client, settings, user: uuid.UUID) -> uuid.UUID:
    process_id, handle = await start_subgoal_job(repo, client, settings, user)
    await handle.result()
    job = await repo.get_job(process_id)
    assert job is not None and job.status == "COMPLETED"
    return job.target_id


async def test_regenerate_with_goal_id_replaces_subgoals_and_updates_the_goal(
    repo, client, make_settings, worker_for
) -> None:
    settings = make_settings()
    user = await make_user(repo.engine)
    async with worker_for(settings):
        goal = await completed_goal(repo, client, settings, user)
        old = {r.id for r in await rows(repo, "SELECT id FROM sub_goals WHERE goal_id=:g", g=goal)}
        sub0 = next(iter(old))
        async with repo.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO actions (id, sub_goal_id, title, description, position)"
                    " VALUES (:i, :s, 'a', 'd', 0)"
                ),
                {"i": uuid.uuid4(), "s": sub0},
            )
        params = subgoal_params("新しい目標タイトル", goalId=str(goal), regenerate=True)
        del params["constraints"]
        process_id, handle = await start_subgoal_job(repo, client, settings, user, params, target_id=goal)
        await handle.result()
    job = await repo.get_job(process_id)
    assert job is not None and job.status == "COMPLETED"
    assert job.result["metadata"]["replacedCount"] == 8
    new = {r.id for r in await rows(repo, "SELECT id FROM sub_goals WHERE goal_id=:g", g=goal)}
    assert len(new) == 8 and not (new & old)
    assert await rows(repo, "SELECT 1 FROM actions WHERE sub_goal_id=:s", s=sub0) == []
    g = (await rows(repo, "SELECT title, constraints FROM goals WHERE id=:g", g=goal))[0]
    assert (g.title, g.constraints) == ("新しい目標タイトル", None)


async def test_failure_before_commit_keeps_the_old_children(repo, client, make_settings, worker_for) -> None:
    settings = make_settings()
    user = await make_user(repo.engine)
    async with worker_for(settings):
        goal = await completed_goal(repo, client, settings, user)
        old = await rows(repo, "SELECT id, title FROM sub_goals WHERE goal_id=:g ORDER BY position", g=goal)
        # A real database error raised by the INSERT that follows the DELETE of the old subgoals.
        async with repo.engine.begin() as conn:
            await conn.execute(
                text(
                    "CREATE FUNCTION refuse_subgoal() RETURNS trigger LANGUAGE plpgsql AS"
                    " $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$"
                )
            )
            await conn.execute(
                text(
                    "CREATE TRIGGER refuse BEFORE INSERT ON sub_goals"
                    " FOR EACH ROW EXECUTE FUNCTION refuse_subgoal()"
                )
            )
        try:
            params = subgoal_params(goalId=str(goal), regenerate=True)
            process_id, handle = await start_subgoal_job(repo, client, settings, user, params, target_id=goal)
            with pytest.raises(WorkflowFailureError):
                await handle.result()
        finally:
            async with repo.engine.begin() as conn:
                await conn.execute(text("DROP TRIGGER refuse ON sub_goals"))
                await conn.execute(text("DROP FUNCTION refuse_subgoal()"))
    job = await repo.get_job(process_id)
    assert job is not None and job.status == "FAILED" and job.error_code == "DATABASE_ERROR"
    after = await rows(repo, "SELECT id, title FROM sub_goals WHERE goal_id=:g ORDER BY position", g=goal)
    assert after == old
    persist_retries = [
        e.payload
        for e in await events(repo, process_id)
        if e.type == "ATTEMPT_FAILED" and e.payload["activity"] == "persist_unit"
    ]
    assert [p["attempt"] for p in persist_retries] == [1, 2, 3]


async def test_target_scope_tasks_result_lists_only_new_tasks(
    repo, client, make_settings, worker_for
) -> None:
    settings = make_settings(ai_cost_per_1k_tokens_usd=0.25)
    user = await make_user(repo.engine)
    async with worker_for(settings):
        goal = await completed_goal(repo, client, settings, user)
        sub = (await rows(repo, "SELECT id FROM sub_goals WHERE goal_id=:g AND position=0", g=goal))[0].id
        action = uuid.uuid4()
        async with repo.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO actions (id, sub_goal_id, title, description, type, position)"
                    " VALUES (:i, :s, '毎日30分コードを書く', :d, 'HABIT', 0)"
                ),
                {"i": action, "s": sub, "d": "毎日の習慣として" * 15},
            )
            await conn.execute(
                text(
                    "INSERT INTO tasks (id, action_id, title, type, estimated_minutes, position)"
                    " VALUES (:i, :a, '古いタスク', 'HABIT', 30, 0)"
                ),
                {"i": uuid.uuid4(), "a": action},
            )
        process_id, handle = await start_job(
            repo,
            client,
            settings,
            user,
            ProcessingType.TASK_GENERATION,
            TargetType.ACTION,
            action,
            {"actionId": str(action), "regenerate": True},
        )
        await handle.result()
    job = await repo.get_job(process_id)
    assert job is not None and job.status == "COMPLETED"
    result: dict[str, Any] = job.result
    stored = await rows(
        repo, "SELECT id, title, type, estimated_minutes FROM tasks WHERE action_id=:a", a=action
    )
    assert "古いタスク" not in {t.title for t in stored}
    assert sorted(t["id"] for t in result["tasks"]) == sorted(str(t.id) for t in stored)
    assert all(t["type"] == "HABIT" for t in result["tasks"]) and 1 <= len(result["tasks"]) <= 3
    meta = result["metadata"]
    assert meta["taskCount"] == len(result["tasks"])
    assert meta["totalEstimatedMinutes"] == sum(t.estimated_minutes for t in stored)
    assert meta["actionContext"]["actionTitle"] == "毎日30分コードを書く"
    assert meta["actionContext"]["actionType"] == "HABIT" and meta["replacedCount"] == 1
    total = meta["tokensUsed"]["input"] + meta["tokensUsed"]["output"]
    assert meta["tokensUsed"]["total"] == total > 0
    assert meta["estimatedCostUsd"] == pytest.approx(total / 1000 * 0.25)
