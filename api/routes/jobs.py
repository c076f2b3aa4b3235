"""Job endpoints under /api/ai/async (spec 5.3-5.8): translate HTTP to reads, the repository and Temporal."""

from __future__ import annotations

import logging
import math
import uuid
from datetime import UTC, datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from sqlalchemy.ext.asyncio import AsyncConnection

from api import sse
from api.bodies import target_of, validate_cancel_body, validate_generate, validate_retry_body
from api.deps import Body, Lang, Owner, ReadUser, ServicesDep, WriteUser
from api.envelope import success
from api.idempotency import idempotent
from api.launch import completed_history, launch, new_job
from api.log_context import log_event
from api.openapi import EVENT_STREAM, LAST_EVENT_ID, errors, inputs, starts_a_job
from api.response_shapes import CancelledEnvelope, EventsEnvelope, HistoryEnvelope, StatusEnvelope
from api.services import Services
from api.targets import plan_units
from api.temporal_gateway import cancel_generation
from api.validation import events_page_query, history_query, path_id, stream_cursor
from api.views import accepted_view, cancelled_view, event_view, history_item, status_view
from db import reads
from db.users import Identity
from domain.enums import ProcessingStatus, ProcessingType
from domain.errors import AppError, ErrorCode
from domain.jobs import USER_CANCEL_REASON, NewJob
from observability import metrics

PREFIX = "/api/ai/async"
MAX_RETRIES = 3
RETRYABLE_STATUSES = frozenset({ProcessingStatus.FAILED, ProcessingStatus.TIMEOUT})

router = APIRouter(prefix=PREFIX, tags=["jobs"])
ProcessId = Annotated[str, Path(alias="processId", json_schema_extra={"format": "uuid"})]
# Target checks of spec 5.3, run for a start and again for a retry.
TARGET_ERRORS = (
    ErrorCode.GOAL_NOT_FOUND,
    ErrorCode.SUBGOAL_NOT_FOUND,
    ErrorCode.ACTION_NOT_FOUND,
    ErrorCode.FORBIDDEN,
    ErrorCode.TARGET_NOT_READY,
    ErrorCode.TARGET_HAS_CHILDREN,
    ErrorCode.JOB_ALREADY_RUNNING,
    ErrorCode.WORKFLOW_START_ERROR,
)
JOB_ERRORS = (ErrorCode.INVALID_UUID, ErrorCode.PROCESSING_NOT_FOUND, ErrorCode.FORBIDDEN)
BODY_ERRORS = (ErrorCode.PAYLOAD_TOO_LARGE, ErrorCode.VALIDATION_ERROR)


async def _owned_job(conn: AsyncConnection, process_id: UUID, user_id: UUID) -> reads.JobView:
    view = await reads.job_view(conn, process_id)
    if view is None:
        raise AppError(ErrorCode.PROCESSING_NOT_FOUND)
    if view.job.user_id != user_id:
        raise AppError(ErrorCode.FORBIDDEN)
    return view


def _accepted(job: NewJob, trigger: metrics.Trigger) -> JSONResponse:
    metrics.job_started(job.type.value, trigger)
    location = {"Location": f"{PREFIX}/status/{job.process_id}"}
    return success(accepted_view(job), status_code=202, headers=location)


@router.post(
    "/generate",
    summary="Start a generation job",
    **starts_a_job(
        "GenerateRequest",
        True,
        *BODY_ERRORS,
        ErrorCode.INVALID_PROCESS_TYPE,
        ErrorCode.PROMPT_INJECTION_DETECTED,
        *TARGET_ERRORS,
    ),
)
async def generate(
    request: Request, svc: ServicesDep, user_id: WriteUser, owner: Owner, body: Body, lang: Lang
) -> Response:
    return await idempotent(
        svc, request, user_id, body, lang, lambda: _generate(request, svc, user_id, owner, body)
    )


async def _generate(
    request: Request, svc: Services, user_id: UUID, owner: Identity, body: bytes
) -> JSONResponse:
    req = validate_generate(body, datetime.now(UTC))
    target_is_new = req.target.target_id is None
    target_id = req.target.target_id or uuid.uuid4()  # a new goal's id is reserved now
    async with svc.engine.connect() as conn:
        units = await plan_units(conn, user_id, req.type, req.target, target_id)
        history = await completed_history(conn, svc.settings, req.type)
    job = new_job(
        svc.settings,
        history=history,
        user_id=user_id,
        job_type=req.type,
        params=req.params,
        target_type=req.target.target_type,
        target_id=target_id,
        units=units,
        request_id=request.state.request_id,
        target_is_new=target_is_new,
    )
    await launch(svc.jobs, svc.temporal.client, svc.settings, job, owner)
    log_event(
        logging.INFO, "job_accepted", "job accepted", processId=str(job.process_id), type=req.type.value
    )
    return _accepted(job, metrics.Trigger.START)


@router.get(
    "/status/{processId}",
    summary="A job's status, progress, result and error",
    response_model=StatusEnvelope,
    responses=errors(*JOB_ERRORS),
    openapi_extra=inputs(),
)
async def status(svc: ServicesDep, user_id: ReadUser, lang: Lang, process_id: ProcessId) -> JSONResponse:
    pid = path_id(process_id)
    async with svc.autocommit.connect() as conn:
        view = await _owned_job(conn, pid, user_id)
    return success(status_view(view, lang))


@router.post(
    "/retry/{processId}",
    summary="Retry a FAILED or TIMEOUT job",
    **starts_a_job(
        "RetryRequest",
        False,
        *BODY_ERRORS,
        *JOB_ERRORS,
        ErrorCode.RETRY_NOT_ALLOWED,
        ErrorCode.MAX_RETRY_EXCEEDED,
        ErrorCode.ALREADY_RETRIED,
        *TARGET_ERRORS,
    ),
)
async def retry(
    request: Request,
    svc: ServicesDep,
    user_id: WriteUser,
    owner: Owner,
    body: Body,
    lang: Lang,
    process_id: ProcessId,
) -> Response:
    return await idempotent(
        svc, request, user_id, body, lang, lambda: _retry(request, svc, user_id, owner, body, process_id)
    )


async def _retry(
    request: Request, svc: Services, user_id: UUID, owner: Identity, body: bytes, process_id: str
) -> JSONResponse:
    pid = path_id(process_id)
    validate_retry_body(body)
    async with svc.engine.connect() as conn:
        parent = (await _owned_job(conn, pid, user_id)).job
        if ProcessingStatus(parent.status) not in RETRYABLE_STATUSES:
            raise AppError(ErrorCode.RETRY_NOT_ALLOWED)
        if parent.retry_count >= MAX_RETRIES:
            raise AppError(ErrorCode.MAX_RETRY_EXCEEDED)
        child = await reads.child_of(conn, pid)
        if child is not None:
            raise AppError(ErrorCode.ALREADY_RETRIED, {"childProcessId": str(child)})
        job_type = ProcessingType(parent.type)
        target = target_of(job_type, parent.params)
        units = await plan_units(conn, user_id, job_type, target, parent.target_id, retry_of=pid)
        history = await completed_history(conn, svc.settings, job_type)
    job = new_job(
        svc.settings,
        history=history,
        user_id=user_id,
        job_type=job_type,
        params=parent.params,
        target_type=target.target_type,
        target_id=parent.target_id,
        units=units,
        request_id=request.state.request_id,
        parent=parent,
    )
    await launch(svc.jobs, svc.temporal.client, svc.settings, job, owner)
    log_event(
        logging.INFO,
        "retry_accepted",
        "retry accepted",
        processId=str(pid),
        childProcessId=str(job.process_id),
        retryCount=job.retry_count,
    )
    return _accepted(job, metrics.Trigger.RETRY)


@router.post(
    "/cancel/{processId}",
    summary="Cancel a PENDING or PROCESSING job",
    response_model=CancelledEnvelope,
    responses=errors(
        *BODY_ERRORS, ErrorCode.PROMPT_INJECTION_DETECTED, *JOB_ERRORS, ErrorCode.CANCEL_NOT_ALLOWED
    ),
    openapi_extra=inputs(body="CancelRequest", body_required=False),
)
async def cancel(
    svc: ServicesDep, user_id: WriteUser, body: Body, lang: Lang, process_id: ProcessId
) -> JSONResponse:
    pid = path_id(process_id)
    reason = validate_cancel_body(body) or USER_CANCEL_REASON
    async with svc.engine.connect() as conn:
        await _owned_job(conn, pid, user_id)
    outcome = await svc.jobs.cancel_by_user(pid, reason)
    if outcome is None:
        raise AppError(ErrorCode.CANCEL_NOT_ALLOWED)
    job, previous = outcome
    log_event(
        logging.INFO,
        "job_cancelled",
        "job cancelled",
        processId=str(pid),
        previousStatus=previous.value,
        reason=reason,
        cancelledBy=job.cancelled_by,
    )
    try:
        await cancel_generation(await svc.temporal.client(), pid, reason, svc.settings)
    except Exception as exc:  # the reconciler re-sends it; the row is already CANCELLED (spec 5.6)
        log_event(
            logging.WARNING,
            "workflow_cancel_failed",
            "workflow cancel failed",
            processId=str(pid),
            cause=type(exc).__name__,
        )
    return success(cancelled_view(job, lang))


@router.get(
    "/history",
    summary="The caller's jobs, newest first",
    response_model=HistoryEnvelope,
    responses=errors(ErrorCode.VALIDATION_ERROR),
    openapi_extra=inputs(query="HistoryQuery"),
)
async def history(request: Request, svc: ServicesDep, user_id: ReadUser, lang: Lang) -> JSONResponse:
    page, page_size, flt = history_query(request.query_params)
    async with svc.engine.connect() as conn:
        jobs, total = await reads.history_page(conn, user_id, flt, page, page_size)
    total_pages = math.ceil(total / page_size)
    pagination = {
        "page": page,
        "pageSize": page_size,
        "totalCount": total,
        "totalPages": total_pages,
        "hasNext": page < total_pages,
        "hasPrevious": page > 1,
    }
    return success({"processes": [history_item(j, lang) for j in jobs], "pagination": pagination})


@router.get(
    "/events/{processId}",
    summary="A job's events: JSON page, or server-sent events",
    response_model=EventsEnvelope,
    responses=EVENT_STREAM | errors(*JOB_ERRORS, ErrorCode.VALIDATION_ERROR),
    openapi_extra=inputs(query="EventsQuery", headers=[LAST_EVENT_ID]),
)
async def events(
    request: Request, svc: ServicesDep, user_id: ReadUser, process_id: ProcessId
) -> JSONResponse | StreamingResponse:
    pid = path_id(process_id)
    if "text/event-stream" in request.headers.get("accept", "").lower():
        after = stream_cursor(request.headers.get("last-event-id"), request.query_params)
        async with svc.engine.connect() as conn:
            view = await _owned_job(conn, pid, user_id)
        stream = sse.event_stream(
            svc.engine,
            pid,
            after,
            ProcessingStatus(view.job.status),
            svc.settings.sse_poll_interval_ms / 1000,
            svc.stopping,
        )
        return StreamingResponse(stream, headers=sse.HEADERS | {"Content-Type": "text/event-stream"})
    after, limit = events_page_query(request.query_params)
    async with svc.engine.connect() as conn:
        await _owned_job(conn, pid, user_id)
        page = await reads.events_after(conn, pid, after, limit + 1)
    shown = page[:limit]
    data = {
        "events": [event_view(e) for e in shown],
        "nextAfter": shown[-1].seq if shown else after,
        "hasMore": len(page) > limit,
    }
    return success(data)
