"""The API's only use of Temporal: start and cancel GenerationWorkflow (spec 6.4), plus a readiness probe.

Workflows are started by type name, so the API never imports workflow code. The client connects lazily:
when Temporal is down at start-up the API still serves, and each use retries the connection. A start
never waits long on a dead Temporal (issue 7.3): the connect is bounded by
TEMPORAL_CONNECT_TIMEOUT_SECONDS, and the SDK's own retrying of UNAVAILABLE (10 s by default) by
TEMPORAL_UNAVAILABLE_RETRY_SECONDS; a Temporal that answers gets TEMPORAL_RPC_TIMEOUT_SECONDS per call.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any
from uuid import UUID

from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client, WorkflowHandle
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.service import RetryConfig

from api.log_context import log_event
from db.users import Identity
from domain.enums import ProcessingStatus, Scope
from domain.workflow_io import (
    SA_PROCESSING_STATUS,
    SA_PROCESSING_TYPE,
    SA_TARGET_ID,
    SA_USER_ID,
    SA_USER_ISSUER,
    SA_USER_SUBJECT,
    GenerationInput,
    WorkflowSummary,
    workflow_id_for,
)
from settings import Settings
from temporal_client import connect_temporal

WORKFLOW_TYPE = "GenerationWorkflow"
EXECUTION_TIMEOUT_MARGIN = timedelta(seconds=300)


def retry_config(settings: Settings) -> RetryConfig:
    """The SDK's retry of calls that fail with UNAVAILABLE, cut to TEMPORAL_UNAVAILABLE_RETRY_SECONDS."""
    return RetryConfig(max_elapsed_time_millis=int(settings.temporal_unavailable_retry_seconds * 1000))


class TemporalConnection:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: Client | None = None
        self._lock = asyncio.Lock()

    async def client(self, within: float | None = None) -> Client:
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    self._client = await connect_temporal(
                        self._settings,
                        within=within or self._settings.temporal_connect_timeout_seconds,
                        retry_config=retry_config(self._settings),
                    )
        return self._client

    async def try_connect(self) -> None:
        """Connect at start-up if possible; a failure is logged and retried on first use."""
        try:
            await self.client()
        except Exception as exc:  # the API must start without Temporal
            log_event(logging.WARNING, "temporal_unavailable", str(exc), cause=type(exc).__name__)

    async def check_ready(self, within: float) -> None:
        """Connect if needed and describe the namespace; the caller bounds the total time."""
        client = await self.client(within)
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=client.namespace),
            timeout=timedelta(seconds=within),
        )


async def start_generation(
    client: Client, job: GenerationInput, settings: Settings, owner: Identity
) -> WorkflowHandle[Any, WorkflowSummary]:
    deadline = (
        settings.goal_scope_deadline_seconds if job.scope is Scope.GOAL else settings.job_deadline_seconds
    )
    return await client.start_workflow(
        WORKFLOW_TYPE,
        job,
        result_type=WorkflowSummary,
        id=workflow_id_for(job.process_id),
        task_queue=settings.temporal_task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        execution_timeout=timedelta(seconds=deadline) + EXECUTION_TIMEOUT_MARGIN,
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(SA_PROCESSING_TYPE, job.type.value),
                SearchAttributePair(SA_PROCESSING_STATUS, ProcessingStatus.PENDING.value),
                SearchAttributePair(SA_USER_ID, str(job.user_id)),
                SearchAttributePair(SA_TARGET_ID, str(job.target_id)),
                SearchAttributePair(SA_USER_SUBJECT, owner.subject),
                *([SearchAttributePair(SA_USER_ISSUER, owner.issuer)] if owner.issuer else []),
            ]
        ),
        rpc_timeout=timedelta(seconds=settings.temporal_rpc_timeout_seconds),
    )


async def cancel_generation(client: Client, process_id: UUID, reason: str, settings: Settings) -> None:
    handle = client.get_workflow_handle(workflow_id_for(process_id))
    await handle.cancel(reason=reason, rpc_timeout=timedelta(seconds=settings.temporal_rpc_timeout_seconds))
