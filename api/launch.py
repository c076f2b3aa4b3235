"""Creating a job and starting its workflow: shared by POST /generate and POST /retry (spec 5.3 steps 1-2)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection
from temporalio.client import Client, WorkflowHandle

from api.log_context import log_event
from api.targets import Units
from api.temporal_gateway import start_generation
from db.durations import recent_completed
from db.models import ProcessingState
from db.repository import JobRepository
from db.users import Identity
from domain.enums import ProcessingType, TargetType
from domain.errors import AppError, ErrorCode
from domain.eta import HISTORY_WINDOW, estimated_completion_at, learned_estimate_seconds
from domain.jobs import NewJob, job_scope
from domain.workflow_io import WorkflowSummary, workflow_id_for
from settings import Settings


async def completed_history(
    conn: AsyncConnection, s: Settings, job_type: ProcessingType
) -> list[tuple[float, int]]:
    """What the estimate of a new `job_type` job learns from (domain.eta.learned_estimate_seconds): read
    on every start, so the next job's estimate already counts the job that just completed."""
    since = datetime.now(UTC) - HISTORY_WINDOW
    return await recent_completed(conn, job_type, since=since, limit=s.eta_history_jobs)


def new_job(
    s: Settings,
    *,
    user_id: uuid.UUID,
    job_type: ProcessingType,
    params: dict[str, Any],
    target_type: TargetType,
    target_id: uuid.UUID,
    units: Units,
    request_id: str | None,
    parent: ProcessingState | None = None,
    target_is_new: bool = False,
    history: Sequence[tuple[float, int]] = (),
) -> NewJob:
    """The job to insert; `history` (``completed_history``) makes the estimate learned, not configured."""
    created_at = datetime.now(UTC)
    estimate = learned_estimate_seconds(
        history, concurrency=s.goal_scope_concurrency, configured=s.estimate_seconds(job_type)
    )
    eta = estimated_completion_at(
        created_at,
        scope=job_scope(job_type, target_type),
        estimate_seconds=estimate,
        units=len(units),
        concurrency=s.goal_scope_concurrency,
        deadline_seconds=s.goal_scope_deadline_seconds,
    )
    return NewJob(
        process_id=uuid.uuid4(),
        user_id=user_id,
        type=job_type,
        target_type=target_type,
        target_id=target_id,
        params=params,
        total_units=len(units),
        created_at=created_at,
        estimated_completion_at=eta,
        request_id=request_id,
        parent_process_id=parent.id if parent else None,
        root_process_id=parent.root_process_id if parent else None,
        retry_count=parent.retry_count + 1 if parent else 0,
        units=units,
        target_is_new=target_is_new,
    )


async def launch(
    jobs: JobRepository,
    temporal: Callable[[], Awaitable[Client]],
    settings: Settings,
    job: NewJob,
    owner: Identity,
) -> WorkflowHandle[Any, WorkflowSummary]:
    """Insert the PENDING row, then start the workflow (``temporal`` gives the client) and return its
    handle. A failed start ends the row FAILED and answers 503 WORKFLOW_START_ERROR, so no row stays
    PENDING forever. ``owner`` is the token identity of the job's user (operators search by it)."""
    await jobs.create_job(job)
    fields = {"processId": str(job.process_id), "workflowId": workflow_id_for(job.process_id)}
    try:
        client = await temporal()
        handle = await start_generation(client, job.workflow_input(), settings, owner)
    except Exception as exc:  # any failure to reach Temporal or to start is the same outcome for the user
        cause = _one_line(exc)
        log_event(logging.ERROR, "workflow_start_failed", "workflow start failed", cause=cause, **fields)
        await jobs.fail_start(job.process_id, internal=cause)
        raise AppError(ErrorCode.WORKFLOW_START_ERROR, {"processId": str(job.process_id)}) from exc
    log_event(logging.INFO, "workflow_started", "workflow started", type=job.type.value, **fields)
    return handle


def _one_line(exc: BaseException) -> str:
    """The exception class and the first line of its message, for operators (error_internal, logs)."""
    first = next(iter(str(exc).splitlines()), "")
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
