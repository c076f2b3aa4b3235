"""The worker's graceful stop (SIGTERM on a deploy): in-flight AI calls finish and their jobs move on here.

On a stop signal the workers stop polling and give the activities already running up to
WORKER_SHUTDOWN_GRACE_SECONDS to finish (the Worker's `graceful_shutdown_timeout`), so a provider call is
neither cut off nor paid for twice. An activity that finishes then schedules its workflow's next task,
which the stopped worker no longer polls for. So the process goes on serving workflow tasks only
(`no_remote_activities`: no new AI call starts here) until every workflow whose activity finished during
the stop has taken that step — e.g. saved the generated items — or until the grace period is over.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from temporalio import activity, client, worker
from temporalio.service import RPCError, RPCStatusCode

POLL_SECONDS = 0.2


@dataclass(frozen=True)
class Run:
    task_queue: str
    workflow_id: str
    run_id: str


@dataclass
class StopTracker(client.Interceptor, worker.Interceptor):
    """Notes the workflow runs whose (regular) activities end after the stop began.

    Given to the client, it applies to every worker built on that client (see `Client.connect`).
    """

    stopping: bool = False
    runs: set[Run] = field(default_factory=set)

    def intercept_activity(
        self, next: worker.ActivityInboundInterceptor
    ) -> worker.ActivityInboundInterceptor:
        return _NoteEndDuringStop(next, self)

    def handed_over(self, task_queue: str) -> set[Run]:
        return {run for run in self.runs if run.task_queue == task_queue}


class _NoteEndDuringStop(worker.ActivityInboundInterceptor):
    def __init__(self, next: worker.ActivityInboundInterceptor, tracker: StopTracker) -> None:
        super().__init__(next)
        self._tracker = tracker

    async def execute_activity(self, input: worker.ExecuteActivityInput) -> Any:
        try:
            return await super().execute_activity(input)
        finally:
            info = activity.info()
            if self._tracker.stopping and not info.is_local and info.workflow_id and info.workflow_run_id:
                self._tracker.runs.add(Run(info.task_queue, info.workflow_id, info.workflow_run_id))


async def finish_handed_over(stopped: worker.Worker, runs: set[Run], deadline: float) -> None:
    """Serve workflow tasks (no activities) on ``stopped``'s task queue, with its workflows and local
    activities, until none of ``runs`` waits for a workflow task or the loop time reaches ``deadline``."""
    loop = asyncio.get_running_loop()
    if not runs or loop.time() >= deadline:
        return
    config = stopped.config()
    config["no_remote_activities"] = True
    async with worker.Worker(**config):
        while runs and loop.time() < deadline:
            waiting = await asyncio.gather(*(_waits_for_task(stopped.client, run) for run in runs))
            runs = {run for run, waits in zip(runs, waiting, strict=True) if waits}
            if runs:
                await asyncio.sleep(POLL_SECONDS)


async def _waits_for_task(temporal: client.Client, run: Run) -> bool:
    handle = temporal.get_workflow_handle(run.workflow_id, run_id=run.run_id)
    try:
        description = await handle.describe()
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:
            return False
        raise
    return description.raw_description.HasField("pending_workflow_task")
