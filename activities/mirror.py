"""Mirroring a closed workflow into its still-open row (spec 6.10).

Shared by the reconciler's quiet-row batch (the Schedule, the safety net) and the worker's frequent
sweep of Temporal visibility, which finds closed workflows whose ``ProcessingStatus`` search attribute
still says PENDING or PROCESSING (terminate, execution timeout, a run that died before its final write),
so that operator actions reach the REST status within seconds.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime, timedelta

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ApplicationError, TerminatedError
from temporalio.service import RPCError, RPCStatusCode

from db.housekeeping import Housekeeping, OpenJob
from db.repository import JobRepository
from domain.enums import CancelledBy, ProcessingStatus
from domain.errors import ErrorCode, is_catalogue_code
from domain.workflow_io import WORKFLOW_ID_PREFIX, FinalizeRequest
from observability import metrics

log = logging.getLogger("activities.mirror")
START_GRACE = timedelta(minutes=5)
# Closed workflows older than this are left to the quiet-row batch (their rows are untouched for 60 s).
SWEEP_LOOKBACK = timedelta(minutes=5)
S = ProcessingStatus


async def _failure_of(client: Client, workflow_id: str) -> BaseException | None:
    """The cause a closed workflow failed with (None when it completed)."""
    try:
        await client.get_workflow_handle(workflow_id).result()
    except WorkflowFailureError as failure:
        return failure.cause
    return None


async def decide(client: Client, job: OpenJob, now: datetime) -> FinalizeRequest | None:
    """What an open row must become, given its workflow's state (None: leave it alone)."""

    def end(status: ProcessingStatus, code: str | None = None, **extra: object) -> FinalizeRequest:
        return FinalizeRequest.model_validate(
            {
                "process_id": job.process_id,
                "status": status,
                "error_code": code,
                "source": "reconciler",
                **extra,
            }
        )

    try:
        status = (await client.get_workflow_handle(job.workflow_id).describe()).status
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        too_old = now - job.created_at > START_GRACE
        return end(S.FAILED, ErrorCode.WORKFLOW_START_ERROR.value) if too_old else None
    if status in (None, WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.CONTINUED_AS_NEW):
        return None
    if status in (WorkflowExecutionStatus.COMPLETED, WorkflowExecutionStatus.FAILED):
        cause = await _failure_of(client, job.workflow_id)
        code = cause.type if isinstance(cause, ApplicationError) and cause.type else None
        code = code if code and is_catalogue_code(code) else ErrorCode.UNKNOWN_ERROR.value
        return end(S.COMPLETED, code)  # the repository keeps COMPLETED only if every unit was saved
    if status == WorkflowExecutionStatus.CANCELED:
        return end(S.CANCELLED, ErrorCode.CANCELLED.value, cancelled_by=CancelledBy.OPERATOR)
    if status == WorkflowExecutionStatus.TERMINATED:
        cause = await _failure_of(client, job.workflow_id)
        reason = cause.message if isinstance(cause, TerminatedError) and cause.message else None
        return end(
            S.CANCELLED, ErrorCode.TERMINATED.value, cancelled_by=CancelledBy.OPERATOR, cancel_reason=reason
        )
    return end(S.TIMEOUT, ErrorCode.TIMEOUT_ERROR.value, details={"timeoutKind": "WORKFLOW_EXECUTION"})


async def mirror_row(client: Client, repo: JobRepository, job: OpenJob) -> int:
    """Bring one open row in line with its workflow; 1 when the row changed."""
    request = await decide(client, job, datetime.now(UTC))
    if request is None or not await repo.reconcile(request):
        return 0
    metrics.reconciler_correction(request.status)
    log.info(
        "reconciler fixed row",
        extra={
            "event": "reconciler_fixed_row",
            "processId": str(job.process_id),
            "toStatus": request.status.value,
            "errorCode": request.error_code,
        },
    )
    return 1


def closed_but_open_query(since: datetime) -> str:
    """Visibility query: GenerationWorkflow runs closed since ``since`` whose attribute says still open."""
    return (
        'WorkflowType = "GenerationWorkflow" AND ExecutionStatus != "Running" '
        'AND ProcessingStatus IN ("PENDING", "PROCESSING") '
        f'AND CloseTime > "{since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}"'
    )


async def sweep_closed(client: Client, repo: JobRepository, housekeeping: Housekeeping) -> int:
    """One pass of the visibility sweep; returns the number of rows corrected."""
    query = closed_but_open_query(datetime.now(UTC) - SWEEP_LOOKBACK)
    ids = {
        uuid.UUID(execution.id.removeprefix(WORKFLOW_ID_PREFIX))
        async for execution in client.list_workflows(query)
        if execution.id.startswith(WORKFLOW_ID_PREFIX)
    }
    fixed = 0
    for job in await housekeeping.open_jobs(ids):
        fixed += await mirror_row(client, repo, job)
    return fixed


async def run_closed_sweep(
    client: Client, repo: JobRepository, housekeeping: Housekeeping, every_seconds: float
) -> None:
    """The worker's sweep loop; a failed pass (Temporal or the database down) is logged and retried."""
    while True:
        try:
            await sweep_closed(client, repo, housekeeping)
        except Exception as exc:  # an outage must not stop the loop; the next pass retries
            log.warning(
                "closed-workflow sweep failed",
                extra={"event": "closed_sweep_failed", "cause": type(exc).__name__},
            )
        await asyncio.sleep(every_seconds)
