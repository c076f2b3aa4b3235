"""Operator reset with the real `temporal` CLI: the claim check reopens FAILED/CANCELLED rows (spec 6.9)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from typing import Any

import pytest
from sqlalchemy import text
from temporalio.client import WorkflowFailureError

from cli.temporal_server import find_temporal_cli
from db.repository import JobRepository
from domain.workflow_io import SA_PROCESSING_STATUS, WorkflowSummary, workflow_id_for
from tests.support.jobs import (
    events,
    make_user,
    run_failing_subgoal_job,
    start_subgoal_job,
    subgoal_params,
    wait_status,
)


def temporal_cli(address: str, *args: str) -> str:
    out = subprocess.run(
        [str(find_temporal_cli()), *args, "--address", address], capture_output=True, text=True, check=True
    )
    return out.stdout


async def reset_and_wait(client: Any, address: str, process_id: Any) -> Any:
    wid = workflow_id_for(process_id)
    await asyncio.to_thread(
        temporal_cli,
        address,
        "workflow",
        "reset",
        "-w",
        wid,
        "--type",
        "FirstWorkflowTask",
        "--reason",
        "retry in place",
    )
    handle = client.get_workflow_handle(wid, result_type=WorkflowSummary)  # follows the newest run
    try:
        return await handle.result()
    except WorkflowFailureError as failure:
        return failure


async def remove_fault(repo: JobRepository, process_id: Any) -> None:
    async with repo.engine.begin() as conn:
        await conn.execute(
            text("UPDATE processing_states SET params = params || CAST(:p AS jsonb) WHERE id = :id"),
            {"p": json.dumps({"title": "学習計画"}), "id": process_id},
        )


async def assert_untouched(repo: JobRepository, before: Any) -> None:
    """The row is exactly as ``before`` (no write, no event, no run recorded) and no goal was created."""
    after = await repo.get_job(before.id)
    assert after is not None
    fields = ("status", "error_code", "event_seq", "updated_at", "workflow_run_id")
    assert [getattr(after, f) for f in fields] == [getattr(before, f) for f in fields]
    async with repo.engine.connect() as conn:
        goals = (await conn.execute(text("SELECT count(*) FROM goals"))).scalar_one()
    assert goals == 0


async def test_reset_of_a_failed_job_reopens_and_completes(repo, client, make_settings, worker_for) -> None:
    settings = make_settings()
    address = settings.temporal_address
    user = await make_user(repo.engine)
    async with worker_for(settings):
        process_id, handle = await start_subgoal_job(
            repo, client, settings, user, subgoal_params("#fault:subgoal:rejected 学習計画")
        )
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        failed = await repo.get_job(process_id)
        assert failed is not None and failed.status == "FAILED"
        await remove_fault(repo, process_id)
        outcome = await reset_and_wait(client, address, process_id)
    assert getattr(outcome, "outcome", None) == "COMPLETED"
    job = await repo.get_job(process_id)
    assert job is not None
    assert (job.status, job.reopen_count, job.error, job.error_code) == ("COMPLETED", 1, None, None)
    assert job.workflow_run_id != failed.workflow_run_id and job.retry_count == 0
    reopened = [e for e in await events(repo, process_id) if e.type == "REOPENED"]
    assert len(reopened) == 1
    assert reopened[0].payload == {"previousStatus": "FAILED", "workflowRunId": job.workflow_run_id}


async def test_reset_of_a_cancelled_job_reopens_it(repo, client, make_settings, worker_for) -> None:
    settings = make_settings(ai_offline_latency_ms=20_000, heartbeat_timeout_seconds=2)
    user = await make_user(repo.engine)
    async with worker_for(settings):
        process_id, handle = await start_subgoal_job(repo, client, settings, user)
        await wait_status(repo, process_id, "PROCESSING")
        cancelled = await repo.cancel_by_user(process_id, "やめる")
        assert cancelled is not None
        await handle.cancel()
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    fast = settings.model_copy(update={"ai_offline_latency_ms": 0})
    async with worker_for(fast):
        outcome = await reset_and_wait(client, settings.temporal_address, process_id)
    assert getattr(outcome, "outcome", None) == "COMPLETED"
    job = await repo.get_job(process_id)
    assert job is not None and (job.status, job.reopen_count, job.cancel_reason) == ("COMPLETED", 1, None)


async def test_reset_of_a_completed_job_changes_nothing(repo, client, make_settings, worker_for) -> None:
    settings = make_settings()
    user = await make_user(repo.engine)
    async with worker_for(settings):
        process_id, handle = await start_subgoal_job(repo, client, settings, user)
        await handle.result()
        before = await repo.get_job(process_id)
        outcome = await reset_and_wait(client, settings.temporal_address, process_id)
    assert getattr(outcome, "outcome", None) == "ROW_ALREADY_TERMINAL"
    after = await repo.get_job(process_id)
    assert before is not None and after is not None
    assert (after.status, after.updated_at, after.event_seq, after.reopen_count) == (
        "COMPLETED",
        before.updated_at,
        before.event_seq,
        0,
    )


async def cancel_while_pending(repo: JobRepository, process_id: Any) -> None:
    """The API cancelled the row before any worker picked the workflow up (e.g. the Temporal cancel was
    lost)."""
    assert await repo.cancel_by_user(process_id, "ユーザーによるキャンセル") is not None


async def give_up_on_the_start(repo: JobRepository, process_id: Any) -> None:
    """Issue 7.3: the start's RPC timed out, so the API answered 503 and failed the row (T9), yet the
    server had started the workflow."""
    await repo.fail_start(process_id, internal="RPCError: Timeout expired")


@pytest.mark.parametrize(
    ("end_row", "status"),
    [(cancel_while_pending, "CANCELLED"), (give_up_on_the_start, "FAILED")],
    ids=["cancelled-while-pending", "start-timed-out-but-reached-temporal"],
)
async def test_first_run_of_a_job_whose_row_ended_before_it_started_writes_nothing(
    repo, client, make_settings, worker_for, end_row, status
) -> None:
    """When the run finally starts it is the current run, but not a reset, so it must not reopen; it shows
    the row's status to operators instead of the PENDING it was started with."""
    settings = make_settings()
    user = await make_user(repo.engine)
    process_id, handle = await start_subgoal_job(repo, client, settings, user)
    await end_row(repo, process_id)
    before = await repo.get_job(process_id)
    assert before is not None and (before.status, before.workflow_run_id) == (status, None)
    async with worker_for(settings):
        summary = await handle.result()
    assert summary.outcome == "ROW_ALREADY_TERMINAL"
    await assert_untouched(repo, before)
    desc = await handle.describe()
    assert desc.typed_search_attributes.get(SA_PROCESSING_STATUS) == status


async def test_reset_that_meets_another_active_job_fails_and_leaves_no_open_search_attribute(
    repo, client, make_settings, worker_for
) -> None:
    """Spec 6.9: the reopen collides with the active job on the same target, so the new run fails with
    JOB_ALREADY_RUNNING and the row is unchanged; its ProcessingStatus must not stay PENDING (7.7)."""
    settings = make_settings()
    process_id = await run_failing_subgoal_job(repo, client, settings, worker_for, "#fault:subgoal:rejected")
    failed = await repo.get_job(process_id)
    assert failed is not None
    async with worker_for(settings):
        hanging = subgoal_params("#fault:subgoal:hang 学習計画")
        other, other_handle = await start_subgoal_job(
            repo, client, settings, failed.user_id, hanging, target_id=failed.target_id
        )
        await wait_status(repo, other, "PROCESSING")
        outcome = await reset_and_wait(client, settings.temporal_address, process_id)
        await other_handle.cancel()
    assert isinstance(outcome, WorkflowFailureError)
    assert getattr(outcome.cause, "type", None) == "JOB_ALREADY_RUNNING"
    after = await repo.get_job(process_id)
    assert after is not None and (after.status, after.event_seq, after.reopen_count) == (
        "FAILED",
        failed.event_seq,
        0,
    )
    desc = await client.get_workflow_handle(workflow_id_for(process_id)).describe()
    assert desc.typed_search_attributes.get(SA_PROCESSING_STATUS) == "FAILED"
