"""The shared rate-limit window (spec 5.2): one atomic upsert counts requests, so all API processes agree.

An API process may count several requests at once (``tokens``): it leases them ahead and hands them out
itself (api.rate_limit)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from sqlalchemy import case, func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from db.models import RateLimitWindow

WINDOW = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class WindowCount:
    """The window after counting this request, with the database clock at that moment."""

    request_count: int
    window_started_at: datetime
    now: datetime

    @property
    def window_ends_at(self) -> datetime:
        return self.window_started_at + WINDOW


async def count_request(engine: AsyncEngine, user_id: UUID, bucket: str, tokens: int = 1) -> WindowCount:
    """Restart the window at now with count ``tokens`` if it has ended, else add ``tokens`` to its count."""
    w = RateLimitWindow
    now = func.now()
    ended = now >= w.window_started_at + WINDOW
    stmt = (
        insert(w)
        .values(user_id=user_id, bucket=bucket, window_started_at=now, request_count=tokens)
        .on_conflict_do_update(
            index_elements=[w.user_id, w.bucket],
            set_={
                "window_started_at": case((ended, now), else_=w.window_started_at),
                "request_count": case((ended, tokens), else_=w.request_count + tokens),
                "updated_at": now,
            },
        )
        .returning(w.request_count, w.window_started_at, now)
    )
    async with engine.begin() as conn:
        row = (await conn.execute(stmt)).one()
    return WindowCount(request_count=row[0], window_started_at=row[1], now=row[2])
