"""The two housekeeping Schedules, created or updated idempotently when a worker starts."""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from domain.workflow_io import RECONCILER_SCHEDULE_ID, RETENTION_SCHEDULE_ID, RetentionInput


def reconciler_schedule(task_queue: str, interval_seconds: int) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            "ReconcileWorkflow",
            id="ai-gen-reconcile",
            task_queue=task_queue,
            execution_timeout=timedelta(minutes=10),
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=interval_seconds))]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


def retention_schedule(task_queue: str, cron: str, days: int) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            "RetentionWorkflow",
            RetentionInput(older_than_days=days),
            id="ai-gen-retention-run",
            task_queue=task_queue,
            execution_timeout=timedelta(hours=1),
        ),
        spec=ScheduleSpec(cron_expressions=[cron], time_zone_name="UTC"),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def upsert_schedule(client: Client, schedule_id: str, schedule: Schedule) -> None:
    try:
        await client.create_schedule(schedule_id, schedule)
    except ScheduleAlreadyRunningError:

        def replace(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(schedule_id).update(replace)


async def ensure_schedules(
    client: Client, task_queue: str, interval_seconds: int, cron: str, retention_days: int
) -> None:
    await upsert_schedule(client, RECONCILER_SCHEDULE_ID, reconciler_schedule(task_queue, interval_seconds))
    await upsert_schedule(client, RETENTION_SCHEDULE_ID, retention_schedule(task_queue, cron, retention_days))
