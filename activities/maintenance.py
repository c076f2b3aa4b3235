"""Reconciler and retention batches (spec 6.10, 6.11): keep Postgres true whatever operators do."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ApplicationError, TerminatedError
from temporalio.service import RPCError, RPCStatusCode

from activities.boundary import boundary
from db.housekeeping import Housekeeping, OpenJob
from db.idempotency import purge_expired_keys
from db.repository import JobRepository
from domain.enums import CancelledBy, ProcessingStatus
from domain.errors import ErrorCode, is_catalogue_code
from domain.workflow_io import Act, FinalizeRequest, ReconcileSummary, RetentionInput, RetentionSummary
from observability import metrics

log = logging.getLogger("activities.maintenance")
BATCH = 500
QUIET_FOR = timedelta(seconds=60)
START_GRACE = timedelta(minutes=5)
RESEND_WITHIN = timedelta(hours=24)
RESEND_AFTER = timedelta(seconds=30)
PURGE_BATCH = 1000
RATE_WINDOW_RETENTION = timedelta(days=1)
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


class MaintenanceActivities:
    def __init__(
        self, repo: JobRepository, housekeeping: Housekeeping, reconcile_interval_seconds: int
    ) -> None:
        self.repo = repo
        self.housekeeping = housekeeping
        self.reconcile_interval_seconds = reconcile_interval_seconds

    @activity.defn(name=Act.RECONCILE_BATCH)
    @boundary
    async def reconcile_batch(self) -> ReconcileSummary:
        client = activity.client()
        stale = await self.housekeeping.stale_open_jobs(QUIET_FOR, BATCH)
        fixed = 0
        for checked, job in enumerate(stale, 1):
            activity.heartbeat(checked)
            request = await decide(client, job, datetime.now(UTC))
            if request is not None and await self.repo.reconcile(request):
                fixed += 1
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
        resent = 0
        for job in await self.housekeeping.recently_cancelled_by_user(RESEND_WITHIN, RESEND_AFTER, BATCH):
            handle = client.get_workflow_handle(job.workflow_id)
            try:
                if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
                    await handle.cancel(reason="cancelled through the API (re-sent by the reconciler)")
                    resent += 1
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise
        depth = await self.housekeeping.queue_depth()
        metrics.set_queue_depth(depth, fresh_for_seconds=3 * self.reconcile_interval_seconds)
        return ReconcileSummary(checked=len(stale), fixed=fixed, cancels_resent=resent, queue_depth=depth)

    @activity.defn(name=Act.PURGE_BATCH)
    @boundary
    async def purge_batch(self, inp: RetentionInput) -> RetentionSummary:
        older_than = timedelta(days=inp.older_than_days)
        deleted = 0
        while batch := await self.housekeeping.purge_batch(older_than, PURGE_BATCH):
            deleted += batch
            activity.heartbeat(deleted)
        windows = await self.housekeeping.purge_rate_limit_windows(RATE_WINDOW_RETENTION)
        keys = await purge_expired_keys(self.housekeeping.engine)
        log.info(
            "retention deleted",
            extra={
                "event": "retention_deleted",
                "count": deleted,
                "rateLimitWindows": windows,
                "idempotencyKeys": keys,
            },
        )
        return RetentionSummary(
            deleted_jobs=deleted, deleted_rate_limit_windows=windows, deleted_idempotency_keys=keys
        )

    def all(self) -> list[Callable[..., Any]]:
        return [self.reconcile_batch, self.purge_batch]
