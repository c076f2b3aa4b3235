"""Reconciler, retention and their Schedules against the real Temporal dev server (spec 6.10, 6.11)."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.worker import Worker

from cli.temporal_server import find_temporal_cli
from db.idempotency import IdempotencyStore, StoredResponse
from db.repository import JobRepository
from domain.enums import ProcessingType, Scope, TargetType
from domain.workflow_io import (
    RECONCILER_SCHEDULE_ID,
    RETENTION_SCHEDULE_ID,
    SA_PROCESSING_STATUS,
    GenerationInput,
    ReconcileSummary,
    RetentionInput,
    RetentionSummary,
    workflow_id_for,
)
from settings import Settings
from tests.support.jobs import Jobs, events, make_user, start_subgoal_job, subgoal_params, wait_status
from workflows.schedules import ensure_schedules


@asynccontextmanager
async def maintenance_worker(
    client: Client, settings: Settings, repo: JobRepository
) -> AsyncIterator[Worker]:
    from worker import build_maintenance_worker

    async with build_maintenance_worker(client, settings, repo) as worker:
        yield worker


async def reconcile(client: Client, settings: Settings) -> ReconcileSummary:
    return await client.execute_workflow(
        "ReconcileWorkflow",
        id=f"reconcile-{uuid.uuid4()}",
        task_queue=settings.temporal_maintenance_task_queue,
        result_type=ReconcileSummary,
    )


async def retention(client: Client, settings: Settings, repo: JobRepository) -> RetentionSummary:
    """One run of RetentionWorkflow (90 days) on a maintenance worker of its own."""
    async with maintenance_worker(client, settings, repo):
        return await client.execute_workflow(
            "RetentionWorkflow",
            RetentionInput(older_than_days=90),
            id=f"retention-{uuid.uuid4()}",
            task_queue=settings.temporal_maintenance_task_queue,
            result_type=RetentionSummary,
        )


async def age(repo: JobRepository, process_id: uuid.UUID, **intervals: str) -> None:
    """Move a row's timestamps into the past, as if the reconciler ran later."""
    sets = ", ".join(f"{column} = {column} - CAST(:{column} AS interval)" for column in intervals)
    async with repo.engine.begin() as conn:
        await conn.execute(
            text(f"UPDATE processing_states SET {sets} WHERE id = :id"), {"id": process_id, **intervals}
        )


async def pending_row(repo: JobRepository, user: uuid.UUID) -> tuple[uuid.UUID, uuid.UUID]:
    """A PENDING SUBGOAL row with no workflow started for it: (process id, target id)."""
    target_id = uuid.uuid4()
    process_id = await Jobs(repo).pending(
        user, ProcessingType.SUBGOAL_GENERATION, TargetType.GOAL, target_id, params=subgoal_params()
    )
    return process_id, target_id


async def terminate(settings: Settings, process_id: uuid.UUID, reason: str) -> None:
    await asyncio.to_thread(
        subprocess.run,
        [
            str(find_temporal_cli()),
            "workflow",
            "terminate",
            "-w",
            workflow_id_for(process_id),
            "--reason",
            reason,
            "--address",
            settings.temporal_address,
        ],
        check=True,
        capture_output=True,
    )


async def doomed_job(repo: JobRepository, client: Client, user: uuid.UUID) -> tuple[uuid.UUID, Any]:
    """A PENDING row whose workflow (started as the API does) times out after 1 s: no worker polls it."""
    process_id, target = await pending_row(repo, user)
    handle = await client.start_workflow(
        "GenerationWorkflow",
        GenerationInput(
            process_id=process_id,
            user_id=user,
            type=ProcessingType.SUBGOAL_GENERATION,
            target_type=TargetType.GOAL,
            target_id=target,
            scope=Scope.TARGET,
        ),
        id=workflow_id_for(process_id),
        task_queue=f"nobody-{uuid.uuid4()}",
        execution_timeout=timedelta(seconds=1),
        search_attributes=TypedSearchAttributes([SearchAttributePair(SA_PROCESSING_STATUS, "PENDING")]),
    )
    return process_id, handle


@pytest.fixture
def maintenance_settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(temporal_maintenance_task_queue=f"maintenance-{uuid.uuid4()}")


async def test_terminated_workflow_becomes_cancelled_terminated(
    repo, client, maintenance_settings, worker_for
) -> None:
    settings = maintenance_settings
    user = await make_user(repo.engine)
    async with worker_for(settings), maintenance_worker(client, settings, repo):
        process_id, _ = await start_subgoal_job(
            repo, client, settings, user, subgoal_params("#fault:subgoal:hang 学習計画")
        )
        await wait_status(repo, process_id, "PROCESSING")
        await terminate(settings, process_id, "stuck provider")
        assert (await reconcile(client, settings)).fixed == 0  # recent rows are left alone
        await age(repo, process_id, updated_at="2 minutes")
        summary = await reconcile(client, settings)
    assert summary.fixed == 1
    job = await repo.get_job(process_id)
    assert job is not None
    assert (job.status, job.error_code, job.cancelled_by, job.cancel_reason) == (
        "CANCELLED",
        "TERMINATED",
        "OPERATOR",
        "stuck provider",
    )
    last = (await events(repo, process_id))[-1]
    assert (last.type, last.payload["source"], last.payload["errorCode"]) == (
        "CANCELLED",
        "reconciler",
        "TERMINATED",
    )


async def test_sweep_mirrors_terminate_and_execution_timeout_without_waiting_for_quiet_rows(
    repo, client, maintenance_settings, worker_for
) -> None:
    """Spec 6.10: closed workflows whose ProcessingStatus still says PENDING/PROCESSING are found through
    visibility by the worker's sweep (shipped cadence), not only after their rows are quiet for 60 s."""
    from worker import closed_sweep

    settings = maintenance_settings
    user = await make_user(repo.engine)
    async with worker_for(settings):
        terminated, _ = await start_subgoal_job(
            repo, client, settings, user, subgoal_params("#fault:subgoal:hang 学習計画")
        )
        await wait_status(repo, terminated, "PROCESSING")
    timed_out, _ = await doomed_job(repo, client, user)
    untouched = await repo.get_job(terminated)
    async with closed_sweep(client, settings, repo):
        await terminate(settings, terminated, "stuck provider")
        await wait_status(repo, terminated, "CANCELLED", seconds=30)
        await wait_status(repo, timed_out, "TIMEOUT", seconds=30)
    job = await repo.get_job(terminated)
    assert job is not None and untouched is not None
    assert (job.status, job.error_code, job.cancelled_by, job.cancel_reason) == (
        "CANCELLED",
        "TERMINATED",
        "OPERATOR",
        "stuck provider",
    )
    assert settings.closed_sweep_seconds == Settings().closed_sweep_seconds  # the shipped cadence
    last = (await events(repo, terminated))[-1]
    assert (last.type, last.payload["source"]) == ("CANCELLED", "reconciler")
    timed = await repo.get_job(timed_out)
    assert timed is not None and timed.error["details"] == {"timeoutKind": "WORKFLOW_EXECUTION"}


async def test_missing_workflow_and_execution_timeout(repo, client, maintenance_settings, worker_for) -> None:
    settings = maintenance_settings
    user = await make_user(repo.engine)
    # a workflow terminated before any worker ran it
    orphan, _ = await start_subgoal_job(repo, client, settings, user)
    await client.get_workflow_handle(workflow_id_for(orphan)).terminate()
    never, _ = await pending_row(repo, user)  # the row alone, no workflow at all
    # a workflow that times out with no worker polling its queue
    timed_out, handle = await doomed_job(repo, client, user)
    for _ in range(100):
        if (await handle.describe()).status == WorkflowExecutionStatus.TIMED_OUT:
            break
        await asyncio.sleep(0.1)
    for pid in (orphan, never, timed_out):
        await age(repo, pid, updated_at="2 minutes")
    async with maintenance_worker(client, settings, repo):
        first = await reconcile(client, settings)
        assert (await repo.get_job(never)).status == "PENDING"  # younger than 5 minutes: maybe still starting
        await age(repo, never, created_at="6 minutes")
        second = await reconcile(client, settings)
    assert first.fixed == 2 and second.fixed == 1
    assert (await repo.get_job(never)).error_code == "WORKFLOW_START_ERROR"
    timed = await repo.get_job(timed_out)
    assert timed is not None and timed.status == "TIMEOUT"
    assert timed.error == {
        "code": "TIMEOUT_ERROR",
        "retryable": True,
        "details": {"timeoutKind": "WORKFLOW_EXECUTION"},
    }
    terminated = await repo.get_job(orphan)
    assert terminated is not None and terminated.error_code == "TERMINATED"
    assert first.queue_depth == 1 and second.queue_depth == 0


async def test_retention_deletes_only_old_terminal_rows(repo, client, maintenance_settings) -> None:
    settings = maintenance_settings
    user = await make_user(repo.engine)
    ids: dict[str, uuid.UUID] = {}
    for name in ("old", "recent", "active"):
        pid, _ = await start_subgoal_job(repo, client, settings, user)
        ids[name] = pid
    for name in ("old", "recent"):
        await repo.cancel_by_user(ids[name], "x")
    await age(repo, ids["old"], completed_at="91 days", created_at="91 days")
    await age(repo, ids["recent"], completed_at="89 days", created_at="89 days")
    await age(repo, ids["active"], created_at="400 days")
    goal = uuid.uuid4()
    async with repo.engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO goals (id, user_id, title, created_by_process_id) VALUES (:g, :u, 't', :p)"),
            {"g": goal, "u": user, "p": ids["old"]},
        )
    summary = await retention(client, settings, repo)
    assert summary.deleted_jobs == 1
    assert await repo.get_job(ids["old"]) is None
    assert await repo.get_job(ids["recent"]) is not None and await repo.get_job(ids["active"]) is not None
    async with repo.engine.connect() as conn:
        orphaned = (
            await conn.execute(
                text("SELECT count(*) FROM processing_events WHERE process_id=:p"), {"p": ids["old"]}
            )
        ).scalar_one()
        kept_goal = (
            await conn.execute(text("SELECT created_by_process_id FROM goals WHERE id=:g"), {"g": goal})
        ).one()
    assert orphaned == 0 and kept_goal.created_by_process_id is None


async def test_retention_purges_idempotency_keys_older_than_a_day(repo, client, maintenance_settings) -> None:
    user = await make_user(repo.engine)
    store = IdempotencyStore(repo.engine)
    for key in ("old", "fresh"):
        claim = await store.claim(user, key, "f" * 64)
        assert isinstance(claim, uuid.UUID)
        await store.complete(user, key, claim, StoredResponse(202, b"{}"))
    async with repo.engine.begin() as conn:
        await conn.execute(
            text("UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE key = 'old'")
        )
    summary = await retention(client, maintenance_settings, repo)
    assert summary.deleted_idempotency_keys == 1
    async with repo.engine.connect() as conn:
        kept = (await conn.execute(text("SELECT key FROM idempotency_keys"))).scalars().all()
    assert kept == ["fresh"]


async def test_schedules_are_created_once_and_updated_in_place(client, maintenance_settings) -> None:
    settings = maintenance_settings
    for interval in (60, 90):
        await ensure_schedules(client, settings.temporal_maintenance_task_queue, interval, "0 3 * * *", 90)
    listed = [s.id async for s in await client.list_schedules()]
    assert listed.count(RECONCILER_SCHEDULE_ID) == 1 and listed.count(RETENTION_SCHEDULE_ID) == 1
    desc = await client.get_schedule_handle(RECONCILER_SCHEDULE_ID).describe()
    assert desc.schedule.spec.intervals[0].every == timedelta(seconds=90)
    for schedule_id in (RECONCILER_SCHEDULE_ID, RETENTION_SCHEDULE_ID):
        await client.get_schedule_handle(schedule_id).delete()
