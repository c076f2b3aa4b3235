"""Per-user rate limiting with the shared window of db.rate_limits (spec 5.2)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncEngine

from db.rate_limits import WINDOW, count_request


class Bucket(StrEnum):
    WRITE = "write"  # POST generate, retry, cancel
    READ = "read"  # GET status, history, events, goals


@dataclass(frozen=True, slots=True)
class RateDecision:
    bucket: Bucket
    limit: int
    used: int
    reset: int  # window end, Unix seconds
    seconds_left: int  # ceil(reset - now), at least 1

    @property
    def allowed(self) -> bool:
        return self.used <= self.limit

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)

    def headers(self) -> dict[str, str]:
        window = int(WINDOW.total_seconds())
        return {
            "RateLimit-Policy": f'"{self.bucket}";q={self.limit};w={window}',
            "RateLimit": f'"{self.bucket}";r={self.remaining};t={self.seconds_left}',
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset),
        }

    def rejection_details(self) -> dict[str, int]:
        return {"retryAfter": self.seconds_left, "limit": self.limit, "remaining": 0, "reset": self.reset}


class RateLimiter:
    def __init__(self, engine: AsyncEngine, limits: dict[Bucket, int]) -> None:
        self._engine = engine
        self._limits = limits

    async def hit(self, user_id: UUID, bucket: Bucket) -> RateDecision:
        """Count this request (allowed or not) and decide."""
        window = await count_request(self._engine, user_id, bucket.value)
        reset = math.ceil(window.window_ends_at.timestamp())
        seconds_left = max(1, math.ceil(reset - window.now.timestamp()))
        return RateDecision(bucket, self._limits[bucket], window.request_count, reset, seconds_left)
