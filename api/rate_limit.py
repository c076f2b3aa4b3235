"""Per-user rate limiting with the shared window of db.rate_limits (spec 5.2).

Counting every request with its own upsert and commit made the rate-limit row the bottleneck of the
read path: concurrent requests of one user queue on that row's lock, each behind the previous commit
(docs/benchmarks.md). So each API process **leases** requests from the shared window instead: one upsert
adds ``n`` to the window's count and this process hands those ``n`` requests out itself, until they are
used or the window ends. The lease size adapts per (user, bucket): 1 for a user who is not busy in this
process (each request goes to PostgreSQL, exactly as before), doubling while leases run out within
``RENEW_FAST_SECONDS``, halving when one lasted longer than ``RENEW_SLOW_SECONDS``, and never more than
``max(1, limit // LEASE_SHARE)`` nor than what the window had left at the last look.

What stays exact: no window ever allows more than ``limit`` requests, however many processes share it
(a lease hands out only what fitted under the limit when it was counted); one process alone gives the
same decisions and headers as counting each request. The documented tolerance, with P processes: a user
may be refused up to ``(P − 1) × (max(1, limit // LEASE_SHARE) − 1)`` requests early (leased by another
process and not used there), and ``remaining`` in one process does not see the others' requests since
its last lease. Refused requests still go to PostgreSQL, one each, as before.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncEngine

from db.rate_limits import WINDOW, count_request

LEASE_SHARE = 20  # a lease is at most 1/20 of the limit
RENEW_FAST_SECONDS = 0.25
RENEW_SLOW_SECONDS = 1.0
MAX_TRACKED = 10_000  # (user, bucket) pairs remembered per process


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


@dataclass(slots=True)
class _Lease:
    """What this process knows of one (user, bucket) window since its last upsert."""

    counted_before: int  # the window's count (all processes) before our lease was added
    size: int  # requests the lease counted
    granted: int  # of those, how many fitted under the limit
    handed: int  # of those, how many this process has handed out
    taken_at: float  # monotonic time of the upsert
    ends_at: float  # monotonic time at which the window ends
    reset: int  # window end, Unix seconds (database clock)
    db_offset: float  # database Unix time minus our monotonic time, at the upsert

    def usable(self, now: float) -> bool:
        return self.handed < self.granted and now < self.ends_at

    def hand_out(self, bucket: Bucket, limit: int, now: float) -> RateDecision:
        self.handed += 1
        return self.decision(bucket, limit, self.counted_before + self.handed, now)

    def decision(self, bucket: Bucket, limit: int, used: int, now: float) -> RateDecision:
        seconds_left = max(1, math.ceil(self.reset - (now + self.db_offset)))
        return RateDecision(bucket, limit, used, self.reset, seconds_left)


@dataclass(slots=True)
class _Slot:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    lease: _Lease | None = None


class RateLimiter:
    def __init__(
        self, engine: AsyncEngine, limits: dict[Bucket, int], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._engine = engine
        self._limits = limits
        self._clock = clock
        self._slots: dict[tuple[UUID, Bucket], _Slot] = {}

    async def hit(self, user_id: UUID, bucket: Bucket) -> RateDecision:
        """Count this request (allowed or not) and decide."""
        limit = self._limits[bucket]
        slot = self._slot(user_id, bucket)
        lease = slot.lease
        if lease is not None and lease.usable(self._clock()):
            return lease.hand_out(bucket, limit, self._clock())
        async with slot.lock:  # one upsert at a time per (user, bucket); the others wait for its lease
            lease = slot.lease
            if lease is not None and lease.usable(self._clock()):
                return lease.hand_out(bucket, limit, self._clock())
            size = self._next_size(lease, limit, self._clock())
            window = await count_request(self._engine, user_id, bucket.value, size)
            now = self._clock()
            db_now = window.now.timestamp()
            ends = window.window_ends_at.timestamp()
            counted_before = window.request_count - size
            lease = _Lease(
                counted_before=counted_before,
                size=size,
                granted=min(size, max(0, limit - counted_before)),
                handed=0,
                taken_at=now,
                ends_at=now + (ends - db_now),
                reset=math.ceil(ends),
                db_offset=db_now - now,
            )
            slot.lease = lease
            if lease.granted == 0:
                return lease.decision(bucket, limit, window.request_count, now)
            return lease.hand_out(bucket, limit, now)

    def _slot(self, user_id: UUID, bucket: Bucket) -> _Slot:
        key = (user_id, bucket)
        slot = self._slots.get(key)
        if slot is None:
            if len(self._slots) >= MAX_TRACKED:
                self._slots.clear()  # only lease sizes are lost: the counts live in PostgreSQL
            slot = self._slots[key] = _Slot()
        return slot

    @staticmethod
    def _next_size(previous: _Lease | None, limit: int, now: float) -> int:
        if previous is None or now >= previous.ends_at:
            return 1
        lasted = now - previous.taken_at
        if lasted < RENEW_FAST_SECONDS:
            size = previous.size * 2
        elif lasted > RENEW_SLOW_SECONDS:
            size = previous.size // 2
        else:
            size = previous.size
        left = limit - previous.counted_before - previous.size
        return max(1, min(size, limit // LEASE_SHARE, left))
