"""Creating a job and starting its workflow: shared by POST /generate and POST /retry (spec 5.3 steps 1-2)."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from api.log_context import log_event
from api.services import Services
from api.targets import Units
from api.temporal_gateway import start_generation
from db.durations import recent_completed
from db.models import ProcessingState
from db.repository import NewJob
from domain.enums import ProcessingType, Scope, TargetType
from domain.errors import AppError, ErrorCode
from domain.eta import HISTORY_WINDOW, estimated_completion_at, learned_estimate_seconds
from domain.workflow_io import GenerationInput, workflow_id_for


async def new_job(
    svc: Services,
    *,
    user_id: uuid.UUID,
    job_type: ProcessingType,
    params: dict[str, Any],
    target_type: TargetType,
    target_id: uuid.UUID,
    scope: Scope,
    units: Units,
    request_id: str | None,
    parent: ProcessingState | None = None,
) -> NewJob:
    s = svc.settings
    created_at = datetime.now(UTC)
    async with svc.engine.connect() as conn:
        observed = await recent_completed(
            conn, job_type, since=created_at - HISTORY_WINDOW, limit=s.eta_history_jobs
        )
    estimate = learned_estimate_seconds(
        observed, concurrency=s.goal_scope_concurrency, configured=s.estimate_seconds(job_type)
    )
    eta = estimated_completion_at(
        created_at,
        scope=scope,
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
    )


async def launch(svc: Services, job: NewJob, scope: Scope) -> None:
    """Insert the PENDING row, then start the workflow; a failed start ends the row FAILED (T9) and answers
    503 WORKFLOW_START_ERROR, so no row stays PENDING forever (D-20)."""
    await svc.jobs.create_job(job)
    workflow_input = GenerationInput(
        process_id=job.process_id,
        user_id=job.user_id,
        type=job.type,
        target_type=job.target_type,
        target_id=job.target_id,
        scope=scope,
    )
    fields = {"processId": str(job.process_id), "workflowId": workflow_id_for(job.process_id)}
    try:
        client = await svc.temporal.client()
        await start_generation(client, workflow_input, svc.settings)
    except Exception as exc:  # any failure to reach Temporal or to start is the same outcome for the user
        cause = _one_line(exc)
        log_event(logging.ERROR, "workflow_start_failed", "workflow start failed", cause=cause, **fields)
        await svc.jobs.fail_start(job.process_id, internal=cause)
        raise AppError(ErrorCode.WORKFLOW_START_ERROR, {"processId": str(job.process_id)}) from exc
    log_event(logging.INFO, "workflow_started", "workflow started", type=job.type.value, **fields)


def _one_line(exc: BaseException) -> str:
    """The exception class and the first line of its message, for operators (error_internal, logs)."""
    first = next(iter(str(exc).splitlines()), "")
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
