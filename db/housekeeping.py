"""Queries of the reconciler and the retention job (spec 6.10, 6.11)."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from db.models import ProcessingState, RateLimitWindow
from domain.enums import ACTIVE_STATUSES, CancelledBy, ProcessingStatus

PS = ProcessingState


@dataclass(frozen=True, slots=True)
class OpenJob:
    process_id: uuid.UUID
    workflow_id: str
    created_at: datetime


class Housekeeping:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def stale_open_jobs(self, quiet_for: timedelta, limit: int) -> list[OpenJob]:
        """PENDING/PROCESSING rows untouched for ``quiet_for``, oldest first."""
        stmt = (
            select(PS.id, PS.workflow_id, PS.created_at)
            .where(PS.status.in_(list(ACTIVE_STATUSES)), PS.updated_at < func.now() - quiet_for)
            .order_by(PS.updated_at)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            return [OpenJob(r.id, r.workflow_id, r.created_at) for r in (await conn.execute(stmt)).all()]

    async def open_jobs(self, process_ids: Collection[uuid.UUID]) -> list[OpenJob]:
        """The PENDING/PROCESSING rows among ``process_ids``."""
        if not process_ids:
            return []
        stmt = select(PS.id, PS.workflow_id, PS.created_at).where(
            PS.id.in_(list(process_ids)), PS.status.in_(list(ACTIVE_STATUSES))
        )
        async with self.engine.connect() as conn:
            return [OpenJob(r.id, r.workflow_id, r.created_at) for r in (await conn.execute(stmt)).all()]

    async def recently_cancelled_by_user(
        self, within: timedelta, after: timedelta, limit: int
    ) -> list[OpenJob]:
        """Rows the API cancelled in the last ``within`` and at least ``after`` ago (cancel re-send)."""
        stmt = (
            select(PS.id, PS.workflow_id, PS.created_at)
            .where(
                PS.status == ProcessingStatus.CANCELLED,
                PS.cancelled_by == CancelledBy.USER.value,
                PS.cancel_requested_at > func.now() - within,
                PS.cancel_requested_at < func.now() - after,
            )
            .order_by(PS.cancel_requested_at)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            return [OpenJob(r.id, r.workflow_id, r.created_at) for r in (await conn.execute(stmt)).all()]

    async def queue_depth(self) -> int:
        async with self.engine.connect() as conn:
            stmt = select(func.count()).where(PS.status == ProcessingStatus.PENDING)
            return int((await conn.execute(stmt)).scalar_one())

    async def purge_batch(self, older_than: timedelta, batch: int) -> int:
        """Delete up to ``batch`` terminal jobs completed before now − ``older_than`` (events and units
        cascade; generated rows keep their data with ``generated_by_process_id`` set to NULL)."""
        doomed = (
            select(PS.id)
            .where(PS.completed_at.is_not(None), PS.completed_at < func.now() - older_than)
            .order_by(PS.completed_at)
            .limit(batch)
            .scalar_subquery()
        )
        async with self.engine.begin() as conn:
            result = await conn.execute(delete(PS).where(PS.id.in_(doomed)))
            return int(result.rowcount or 0)

    async def purge_rate_limit_windows(self, older_than: timedelta) -> int:
        async with self.engine.begin() as conn:
            stmt = delete(RateLimitWindow).where(RateLimitWindow.window_started_at < func.now() - older_than)
            return int((await conn.execute(stmt)).rowcount or 0)
