"""Housekeeping workflows started by Temporal Schedules (spec 6.10, 6.11). Orchestration only."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain.workflow_io import Act, ReconcileSummary, RetentionInput, RetentionSummary
    from workflows.activity_calls import STANDARD_RETRY

BATCH_TIMEOUT = timedelta(seconds=300)
BATCH_HEARTBEAT = timedelta(seconds=60)


@workflow.defn(name="ReconcileWorkflow")
class ReconcileWorkflow:
    @workflow.run
    async def run(self) -> ReconcileSummary:
        summary: ReconcileSummary = await workflow.execute_activity(
            Act.RECONCILE_BATCH,
            result_type=ReconcileSummary,
            start_to_close_timeout=BATCH_TIMEOUT,
            heartbeat_timeout=BATCH_HEARTBEAT,
            retry_policy=STANDARD_RETRY,
        )
        return summary


@workflow.defn(name="RetentionWorkflow")
class RetentionWorkflow:
    @workflow.run
    async def run(self, inp: RetentionInput) -> RetentionSummary:
        summary: RetentionSummary = await workflow.execute_activity(
            Act.PURGE_BATCH,
            inp,
            result_type=RetentionSummary,
            start_to_close_timeout=BATCH_TIMEOUT,
            heartbeat_timeout=BATCH_HEARTBEAT,
            retry_policy=STANDARD_RETRY,
        )
        return summary
