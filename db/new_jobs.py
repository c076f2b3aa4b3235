"""A new job's row in one statement, and the catalogue error of one that hit a unique index."""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, bindparam, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.ext.asyncio import AsyncEngine

from db import reads
from db.engine import db_error
from domain.enums import EventType
from domain.errors import AppError, ErrorCode
from domain.jobs import UNIT_TYPE_BY_JOB, NewJob
from domain.workflow_io import workflow_id_for

# A new job's row, its units and its CREATED event (seq 1) as one statement: the units and the event are
# inserted from the row the first part returns (their foreign keys are checked at the statement's end).
INSERT_JOB = text(
    """
WITH job AS (
    INSERT INTO processing_states (id, user_id, type, status, target_type, target_id, params, progress,
        retry_count, parent_process_id, root_process_id, workflow_id, event_seq, total_units,
        estimated_completion_at, request_id, created_at, updated_at)
    VALUES (:id, :user_id, :type, 'PENDING', :target_type, :target_id, :params, 0,
        :retry_count, :parent_process_id, :root_process_id, :workflow_id, 1, :total_units,
        :estimated_completion_at, :request_id, :created_at, :created_at)
    RETURNING *
), units AS (
    INSERT INTO processing_units (process_id, unit_id, unit_type, ordinal)
    SELECT job.id, u.unit_id, CAST(u.unit_type AS target_type), u.ordinal - 1
    FROM job, unnest(:unit_ids, :unit_types) WITH ORDINALITY AS u(unit_id, unit_type, ordinal)
), created AS (
    INSERT INTO processing_events (process_id, seq, type, status, progress, payload)
    SELECT job.id, 1, :event_type, 'PENDING', 0, :payload FROM job
)
SELECT * FROM job
"""
).bindparams(
    bindparam("params", type_=JSONB),
    bindparam("payload", type_=JSONB),
    bindparam("unit_ids", type_=ARRAY(PG_UUID(as_uuid=True))),
    bindparam("unit_types", type_=ARRAY(String)),
)


def insert_job_params(job: NewJob) -> dict[str, Any]:
    units = job.units or [(job.target_id, UNIT_TYPE_BY_JOB[job.type])]
    payload: dict[str, Any] = {
        "type": job.type.value,
        "targetType": job.target_type.value,
        "targetId": str(job.target_id),
    }
    if job.parent_process_id:
        payload["parentProcessId"] = str(job.parent_process_id)
    return {
        "id": job.process_id,
        "user_id": job.user_id,
        "type": job.type.value,
        "target_type": job.target_type.value,
        "target_id": job.target_id,
        "params": job.params,
        "retry_count": job.retry_count,
        "parent_process_id": job.parent_process_id,
        "root_process_id": job.root_process_id or job.process_id,
        "workflow_id": workflow_id_for(job.process_id),
        "total_units": job.total_units,
        "estimated_completion_at": job.estimated_completion_at,
        "request_id": job.request_id,
        "created_at": job.created_at,
        "unit_ids": [unit_id for unit_id, _ in units],
        "unit_types": [unit_type.value for _, unit_type in units],
        "event_type": EventType.CREATED.value,
        "payload": payload,
    }


async def creation_conflict(engine: AsyncEngine, job: NewJob, exc: sa_exc.IntegrityError) -> AppError:
    """The catalogue error of a new row that hit a unique index."""
    diag = getattr(exc.orig, "diag", None)
    name = getattr(diag, "constraint_name", None)
    async with engine.connect() as conn:
        if name in ("uq_ps_active_target", "uq_ps_parent") and job.parent_process_id:
            # Two concurrent retries aim at the same target; PostgreSQL may report either index.
            child = await reads.child_of(conn, job.parent_process_id)
            if child is not None:
                return AppError(ErrorCode.ALREADY_RETRIED, {"childProcessId": str(child)})
        if name == "uq_ps_active_target":
            active = await reads.active_job_for(conn, job)
            return AppError(ErrorCode.JOB_ALREADY_RUNNING, {"processId": str(active) if active else None})
    return db_error(exc)
