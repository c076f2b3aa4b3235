"""The camelCase ``result`` document a finished job stores (spec 3.8): target scope and goal scope."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from db.models import ProcessingUnit as PU
from db.persist import Saved
from domain.enums import UnitStatus
from domain.errors import ErrorCode, entry
from domain.generation import GenerationMetadata
from domain.timefmt import iso_ms

_ITEMS_KEY = {"SUBGOAL_GENERATION": "subGoals", "ACTION_GENERATION": "actions", "TASK_GENERATION": "tasks"}
# Context a saver returns that the spec files under ``metadata`` rather than at the top level.
_METADATA_KEYS = ("goalContext", "actionContext", "taskCount", "totalEstimatedMinutes")


def target_scope_result(job_type: str, saved: Saved, meta: GenerationMetadata) -> dict[str, Any]:
    """The result of a job with one unit: the saved items, the saver's context, the generation metadata."""
    metadata: dict[str, Any] = {
        "provider": meta.provider,
        "model": meta.model,
        "generatedAt": iso_ms(datetime.now(UTC)),
        "generationAttempts": meta.generation_attempts,
        "tokensUsed": {"input": meta.input_tokens, "output": meta.output_tokens, "total": meta.total_tokens},
        "estimatedCostUsd": meta.estimated_cost_usd,
        "durationMs": meta.duration_ms,
        "replacedCount": saved.deleted,
    }
    context = dict(saved.context)
    for k in _METADATA_KEYS:
        if k in context:
            metadata[k] = context.pop(k)
    return {**context, _ITEMS_KEY[job_type]: saved.items, "metadata": metadata}


async def goal_scope_result(conn: AsyncConnection, job: Any) -> dict[str, Any]:
    """The result of a goal-scope job, rebuilt from its processing_units rows."""
    units: Sequence[Any] = (
        await conn.execute(select(PU).where(PU.process_id == job.id).order_by(PU.ordinal))
    ).all()
    succeeded = [u for u in units if u.status == UnitStatus.SUCCEEDED]
    failed = [u for u in units if u.status == UnitStatus.FAILED]
    pending = [u for u in units if u.status == UnitStatus.PENDING]
    tokens_in = sum(u.input_tokens for u in units)
    tokens_out = sum(u.output_tokens for u in units)
    unknown = ErrorCode.UNKNOWN_ERROR.value
    return {
        "goalId": str(job.target_id),
        "scope": "GOAL",
        "totalUnits": len(units),
        "succeededUnits": [
            {"unitId": str(u.unit_id), "unitType": str(u.unit_type), "createdCount": u.created_count}
            for u in succeeded
        ],
        "failedUnits": [
            {
                "unitId": str(u.unit_id),
                "unitType": str(u.unit_type),
                "error": u.error or {"code": unknown, "retryable": entry(unknown).retryable},
            }
            for u in failed
        ],
        "notAttemptedUnits": [str(u.unit_id) for u in pending],
        "metadata": {
            "generationAttempts": sum(u.generation_attempts for u in units),
            "tokensUsed": {"input": tokens_in, "output": tokens_out, "total": tokens_in + tokens_out},
            "createdCount": sum(u.created_count for u in units),
            "replacedCount": sum(u.deleted_count for u in units),
        },
    }
