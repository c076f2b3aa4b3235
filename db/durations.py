"""How long recent jobs took: the history the API's completion estimate learns from (domain.eta)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from db.models import ProcessingState
from domain.enums import ProcessingStatus, ProcessingType

PS = ProcessingState


async def recent_completed(
    conn: AsyncConnection, job_type: ProcessingType, *, since: datetime, limit: int
) -> list[tuple[float, int]]:
    """(seconds from creation to completion, total units) of the `limit` most recently COMPLETED jobs of
    `job_type` completed at or after `since`, newest first."""
    if limit <= 0:
        return []
    seconds = func.extract("epoch", PS.completed_at - PS.created_at)
    rows = await conn.execute(
        select(seconds, PS.total_units)
        .where(
            PS.type == job_type,
            PS.status == ProcessingStatus.COMPLETED,
            PS.completed_at >= since,
        )
        .order_by(PS.completed_at.desc())
        .limit(limit)
    )
    return [(float(elapsed), int(units)) for elapsed, units in rows]
