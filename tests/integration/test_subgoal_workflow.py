"""SUBGOAL_GENERATION through the real worker, Temporal dev server and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from db.transitions import RunStatus
from domain.workflow_io import SA_PROCESSING_STATUS, PersistUnitRequest, UnitRef
from tests.support.jobs import (
    events,
    make_user,
    record_history,
    rows,
    run_failing_subgoal_job,
    start_subgoal_job,
    subgoal_params,
    wait_status,
)


async def test_subgoal_job_completes_with_eight_subgoals(repo, client, make_settings, worker_for) -> None:
    settings = make_settings()
    user = await make_user(repo.engine)
    async with worker_for(settings):
        process_id, handle = await start_subgoal_job(repo, client, settings, user)
        summary = await handle.result()
        await record_history("success", handle)
    assert summary.outcome == "COMPLETED"

    job = await repo.get_job(process_id)
    assert job is not None
    assert job.status == "COMPLETED" and job.progress == 100
    assert job.started_at is not None and job.completed_at is not None
    assert (job.deadline_at - job.started_at).total_seconds() == settings.job_deadline_seconds

    evs = await events(repo, process_id)
    assert [e.seq for e in evs] == list(range(1, len(evs) + 1))
    assert [(e.type, e.progress) for e in evs] == [
        ("CREATED", 0),
        ("STARTED", 0),
        ("PROGRESS", 50),
        ("UNIT_SUCCEEDED", 50),
        ("COMPLETED", 100),
    ]
    assert evs[1].payload == {"workflowRunId": job.workflow_run_id}

    subgoals = await rows(
        repo,
        "SELECT title, description, background, position, generated_by_process_id FROM sub_goals"
        " WHERE goal_id=:g ORDER BY position",
        g=job.target_id,
    )
    assert [s.position for s in subgoals] == list(range(8))
    for s in subgoals:
        assert 1 <= len(s.title) <= 30 and 50 <= len(s.description) <= 200 and len(s.background) <= 100
        assert s.generated_by_process_id == process_id
    goal = (
        await rows(
            repo, "SELECT user_id, title, created_by_process_id FROM goals WHERE id=:g", g=job.target_id
        )
    )[0]
    assert goal.user_id == user and goal.created_by_process_id == process_id

    result = job.result
    assert result["goalId"] == str(job.target_id)
    assert [s["position"] for s in result["subGoals"]] == list(range(8))
    meta = result["metadata"]
    assert meta["provider"] == "offline" and meta["model"] == "offline-v1"
    assert meta["generationAttempts"] == 1 and meta["replacedCount"] == 0
    assert meta["tokensUsed"]["total"] == meta["tokensUsed"]["input"] + meta["tokensUsed"]["output"] > 0

    desc = await handle.describe()
    assert desc.typed_search_attributes.get(SA_PROCESSING_STATUS) == "COMPLETED"


async def test_bad_quality_once_is_regenerated(repo, client, make_settings, worker_for) -> None:
    settings = make_settings()
    user = await make_user(repo.engine)
    async with worker_for(settings):
        process_id, handle = await start_subgoal_job(
            repo, client, settings, user, subgoal_params("#fault:subgoal:bad_quality:1 学習計画")
        )
        await handle.result()
    job = await repo.get_job(process_id)
    assert job is not None and job.status == "COMPLETED"
    assert job.result["metadata"]["generationAttempts"] == 2
    attempt_events = [e for e in await events(repo, process_id) if e.type == "ATTEMPT_FAILED"]
    assert len(attempt_events) == 1
    assert attempt_events[0].payload["kind"] == "REGENERATION"
    assert attempt_events[0].payload["errorCode"] == "QUALITY_ERROR"


async def test_bad_quality_three_times_fails_with_quality_error(
    repo, client, make_settings, worker_for
) -> None:
    settings = make_settings()
    user = await make_user(repo.engine)
    async with worker_for(settings):
        process_id, handle = await start_subgoal_job(
            repo, client, settings, user, subgoal_params("#fault:subgoal:bad_quality:3 学習計画")
        )
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
    assert isinstance(failure.value.cause, ApplicationError)
    assert failure.value.cause.type == "QUALITY_ERROR"
    job = await repo.get_job(process_id)
    assert job is not None
    assert job.status == "FAILED" and job.error_code == "QUALITY_ERROR"
    assert job.error["retryable"] is True and job.error["details"]["violations"]
    assert job.progress == 0 and job.completed_at is not None
    units = await rows(repo, "SELECT status, error FROM processing_units WHERE process_id=:p", p=process_id)
    assert [u.status for u in units] == ["FAILED"]
    evs = await events(repo, process_id)
    assert [e.type for e in evs].count("ATTEMPT_FAILED") == 2
    assert evs[-1].type == "FAILED" and evs[-1].payload["errorCode"] == "QUALITY_ERROR"
    assert await rows(repo, "SELECT 1 FROM goals WHERE id=:g", g=job.target_id) == []


async def test_rejected_fails_after_one_attempt(repo, client, make_settings, worker_for) -> None:
    process_id = await run_failing_subgoal_job(
        repo, client, make_settings(), worker_for, "#fault:subgoal:rejected"
    )
    job = await repo.get_job(process_id)
    assert job is not None and job.error_code == "AI_REQUEST_REJECTED" and job.error["retryable"] is False
    assert [e.type for e in await events(repo, process_id)].count("ATTEMPT_FAILED") == 0


async def test_throttle_twice_completes_on_third_attempt(repo, client, make_settings, worker_for) -> None:
    settings = make_settings()
    user = await make_user(repo.engine)
    async with worker_for(settings):
        process_id, handle = await start_subgoal_job(
            repo, client, settings, user, subgoal_params("#fault:subgoal:throttle:2 学習計画")
        )
        await handle.result()
    job = await repo.get_job(process_id)
    assert job is not None and job.status == "COMPLETED"
    retries = [e.payload for e in await events(repo, process_id) if e.type == "ATTEMPT_FAILED"]
    assert [(p["attempt"], p["kind"], p["errorCode"]) for p in retries] == [
        (1, "ACTIVITY_RETRY", "AI_ERROR"),
        (2, "ACTIVITY_RETRY", "AI_ERROR"),
    ]


async def test_cancel_stops_the_ai_call_and_writes_nothing(repo, client, make_settings, worker_for) -> None:
    settings = make_settings(ai_offline_latency_ms=30_000, heartbeat_timeout_seconds=3)
    user = await make_user(repo.engine)
    async with worker_for(settings):
        process_id, handle = await start_subgoal_job(repo, client, settings, user)
        await wait_status(repo, process_id, "PROCESSING")
        await asyncio.sleep(0.5)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await handle.cancel(reason="operator says stop")
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        elapsed = loop.time() - started
        await record_history("cancel", handle)
    assert elapsed < 15
    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
    job = await repo.get_job(process_id)
    assert job is not None
    assert job.status == "CANCELLED" and job.cancelled_by == "OPERATOR"
    assert job.cancel_reason == "operator says stop" and job.error_code == "CANCELLED"
    assert await rows(repo, "SELECT 1 FROM goals WHERE id=:g", g=job.target_id) == []


async def test_job_deadline_times_out_a_hanging_call(repo, client, make_settings, worker_for) -> None:
    settings = make_settings(job_deadline_seconds=3, heartbeat_timeout_seconds=2)
    user = await make_user(repo.engine)
    async with worker_for(settings):
        process_id, handle = await start_subgoal_job(
            repo, client, settings, user, subgoal_params("#fault:subgoal:hang 学習計画")
        )
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
        await record_history("timeout", handle)
    assert isinstance(failure.value.cause, ApplicationError) and failure.value.cause.type == "TIMEOUT_ERROR"
    job = await repo.get_job(process_id)
    assert job is not None and job.status == "TIMEOUT"
    assert job.error["details"] == {"timeoutKind": "JOB_DEADLINE"}


async def test_persist_unit_twice_is_idempotent(repo, client, make_settings, worker_for) -> None:
    settings = make_settings()
    user = await make_user(repo.engine)
    async with worker_for(settings):
        process_id, handle = await start_subgoal_job(repo, client, settings, user)
        await handle.result()
    job = await repo.get_job(process_id)
    assert job is not None
    before = await rows(repo, "SELECT id FROM sub_goals WHERE goal_id=:g ORDER BY position", g=job.target_id)
    from domain.generation import GeneratedUnit, GenerationMetadata, SubGoalItem

    replay = PersistUnitRequest(
        process_id=process_id,
        unit=UnitRef(unit_id=job.target_id, unit_type="GOAL", ordinal=0),
        scope="TARGET",
        output=GeneratedUnit(
            subgoals=[SubGoalItem(title=f"t{i}", description="d" * 60) for i in range(8)],
            metadata=GenerationMetadata(provider="offline", model="offline-v1"),
        ),
    )

    async def not_current() -> RunStatus:
        return RunStatus(current=False)

    again = await repo.persist_unit(replay, job.workflow_run_id or "", not_current)
    assert again.created_count == 8 and again.job_completed is True
    after = await rows(repo, "SELECT id FROM sub_goals WHERE goal_id=:g ORDER BY position", g=job.target_id)
    assert after == before


async def test_a_run_whose_row_was_cancelled_without_telling_temporal_ends_quietly_showing_cancelled(
    repo, client, make_settings, worker_for
) -> None:
    """The API's cancel wrote the row but its Temporal cancel was lost: the AI call's result is refused by
    the claim check, nothing is saved, and the run shows the row's CANCELLED rather than PROCESSING."""
    settings = make_settings(ai_offline_latency_ms=1_500)
    user = await make_user(repo.engine)
    async with worker_for(settings):
        process_id, handle = await start_subgoal_job(repo, client, settings, user)
        await wait_status(repo, process_id, "PROCESSING")
        assert await repo.cancel_by_user(process_id, "やめる") is not None
        summary = await handle.result()
        await record_history("quiet_row_cancelled", handle)
    assert summary.outcome == "ROW_ALREADY_TERMINAL"
    assert [e.type for e in await events(repo, process_id)] == ["CREATED", "STARTED", "CANCELLED"]
    job = await repo.get_job(process_id)
    assert job is not None and not await rows(repo, "SELECT 1 FROM goals WHERE id=:g", g=job.target_id)
    desc = await handle.describe()
    assert desc.typed_search_attributes.get(SA_PROCESSING_STATUS) == "CANCELLED"
