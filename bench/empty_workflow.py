"""An empty workflow of a job's shape, for ``bench.job_latency``: what the orchestration costs on its own.

A job needs at least a local state write, one heartbeating (cancellable) activity for the AI call and a
local write that saves the result, so this workflow runs exactly that with activities that do nothing: no
database, no AI, the SDK's default converter, no tracing. Its latency and throughput on the same server
bound what any job can reach there, whatever our code does.
"""

from __future__ import annotations

import uuid
from contextlib import AbstractAsyncContextManager
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

STEP = timedelta(seconds=10)


@activity.defn(name="bench_nothing")
async def nothing(step: int) -> int:
    return step + 1


@workflow.defn(name="BenchEmptyJob")
class EmptyJob:
    @workflow.run
    async def run(self, step: int) -> int:
        begun = await workflow.execute_local_activity(nothing, step, start_to_close_timeout=STEP)
        generated = await workflow.execute_activity(
            nothing, begun, start_to_close_timeout=STEP, heartbeat_timeout=STEP
        )
        return await workflow.execute_local_activity(nothing, generated, start_to_close_timeout=STEP)


class EmptyJobs:
    """Start an empty job and wait for it, on ``client`` (``eager``: the first workflow task comes back in
    the start's answer, which needs this process's worker on the same client)."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._queue = f"bench-empty-{uuid.uuid4()}"

    def worker(self) -> AbstractAsyncContextManager[Worker]:
        return Worker(
            self._client,
            task_queue=self._queue,
            workflows=[EmptyJob],
            activities=[nothing],
            workflow_runner=UnsandboxedWorkflowRunner(),
        )

    async def run(self, eager: bool = False) -> None:
        handle = await self._client.start_workflow(
            EmptyJob.run,
            0,
            id=f"bench-empty-{uuid.uuid4()}",
            task_queue=self._queue,
            request_eager_start=eager,
        )
        assert await handle.result() == 3
