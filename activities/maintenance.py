"""Reconciler and retention batches (spec 6.10, 6.11): keep Postgres true whatever operators do."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio import activity
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from activities.boundary import boundary
from activities.mirror import mirror_row
from db.housekeeping import Housekeeping
from db.idempotency import purge_expired_keys
from db.repository import JobRepository
from domain.workflow_io import Act, ReconcileSummary, RetentionInput, RetentionSummary
from observability import metrics

log = logging.getLogger("activities.maintenance")
BATCH = 500
QUIET_FOR = timedelta(seconds=60)
RESEND_WITHIN = timedelta(hours=24)
RESEND_AFTER = timedelta(seconds=30)
PURGE_BATCH = 1000
RATE_WINDOW_RETENTION = timedelta(days=1)


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
            fixed += await mirror_row(client, self.repo, job)
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
