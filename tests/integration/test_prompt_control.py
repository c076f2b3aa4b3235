"""Deadline and cancel never wait on an AI call that ignores its cancel (spec 6.8, issue 6.2).

The offline ``deaf`` fault is a provider call that hears no cancel: it runs its AI_OFFLINE_LATENCY_MS to
the end and then returns valid output. The row must reach its terminal state before that output exists,
and the late output must change nothing: no goal, no subgoal, no event after the terminal one.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from db.repository import JobRepository
from domain.workflow_io import SA_PROCESSING_STATUS, OperatorCancel, ProgressView
from tests.support.jobs import (
    events,
    make_user,
    record_history,
    rows,
    start_subgoal_job,
    subgoal_params,
    wait_status,
)

DEAF = subgoal_params("#fault:subgoal:deaf 学習計画")
LATE_OUTPUT_AFTER_MS = 8_000  # the deadline / cancel comes at about 3 s: the output arrives 5 s later


def seen(caplog: pytest.LogCaptureFixture, event: str, **fields: Any) -> bool:
    return any(
        getattr(r, "event", None) == event and all(getattr(r, k, None) == v for k, v in fields.items())
        for r in caplog.records
    )


async def late_write_refused(caplog: pytest.LogCaptureFixture, process_id: uuid.UUID) -> None:
    """Wait until the deaf call's output has come back and its progress write was refused."""
    for _ in range(400):
        if seen(caplog, "transition_refused", processId=str(process_id), eventType="PROGRESS"):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the late output never came back")


async def assert_nothing_after(repo: JobRepository, process_id: uuid.UUID, terminal: str) -> None:
    job = await repo.get_job(process_id)
    assert job is not None and job.status == terminal
    assert await rows(repo, "SELECT 1 FROM goals WHERE id=:g", g=job.target_id) == []
    assert await rows(repo, "SELECT 1 FROM sub_goals WHERE goal_id=:g", g=job.target_id) == []
    history = await events(repo, process_id)
    assert history[-1].type == terminal and history[-1].seq == job.event_seq
    assert "PROGRESS" not in [e.type for e in history]


async def test_deadline_times_out_the_row_before_a_deaf_call_returns(
    repo, client, make_settings, worker_for, caplog
) -> None:
    caplog.set_level(logging.INFO)
    settings = make_settings(job_deadline_seconds=3, ai_offline_latency_ms=LATE_OUTPUT_AFTER_MS)
    user = await make_user(repo.engine)
    async with worker_for(settings):
        process_id, handle = await start_subgoal_job(repo, client, settings, user, DEAF)
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
        # the workflow did not wait for the call: its output does not exist yet
        assert not seen(caplog, "ai_generation_completed", processId=str(process_id))
        job = await repo.get_job(process_id)
        assert job is not None and job.status == "TIMEOUT"
        assert job.error["details"] == {"timeoutKind": "JOB_DEADLINE"}
        await late_write_refused(caplog, process_id)
        await record_history("timeout_deaf_call", handle)
    assert isinstance(failure.value.cause, ApplicationError) and failure.value.cause.type == "TIMEOUT_ERROR"
    await assert_nothing_after(repo, process_id, "TIMEOUT")


async def test_workflow_cancel_closes_canceled_before_a_deaf_call_returns(
    repo, client, make_settings, worker_for, caplog
) -> None:
    caplog.set_level(logging.INFO)
    settings = make_settings(ai_offline_latency_ms=LATE_OUTPUT_AFTER_MS)
    user = await make_user(repo.engine)
    async with worker_for(settings):
        process_id, handle = await start_subgoal_job(repo, client, settings, user, DEAF)
        await wait_status(repo, process_id, "PROCESSING")
        await asyncio.sleep(1)
        await handle.cancel()
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        assert not seen(caplog, "ai_generation_completed", processId=str(process_id))
        assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
        job = await repo.get_job(process_id)
        assert job is not None and (job.status, job.cancelled_by) == ("CANCELLED", "OPERATOR")
        await late_write_refused(caplog, process_id)
        await record_history("cancel_deaf_call", handle)
    await assert_nothing_after(repo, process_id, "CANCELLED")


async def test_operator_cancel_update_records_the_reason_and_answers_with_the_progress(
    repo, client, make_settings, worker_for
) -> None:
    settings = make_settings()
    user = await make_user(repo.engine)
    async with worker_for(settings):
        process_id, handle = await start_subgoal_job(
            repo, client, settings, user, subgoal_params("#fault:subgoal:hang 学習計画")
        )
        await wait_status(repo, process_id, "PROCESSING")
        view = await handle.execute_update(
            "cancel", OperatorCancel(reason="provider outage"), result_type=ProgressView
        )
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
        await record_history("operator_cancel", handle)
    assert view.status == "CANCELLED"
    assert isinstance(failure.value.cause, ApplicationError) and failure.value.cause.type == "CANCELLED"
    job = await repo.get_job(process_id)
    assert job is not None
    assert (job.status, job.error_code, job.cancelled_by, job.cancel_reason) == (
        "CANCELLED",
        "CANCELLED",
        "OPERATOR",
        "provider outage",
    )
    desc = await handle.describe()
    assert desc.typed_search_attributes.get(SA_PROCESSING_STATUS) == "CANCELLED"
