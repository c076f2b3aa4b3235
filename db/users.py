"""User provisioning from the token's (iss, sub) (spec 2.2), with a short in-memory cache."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from db.models import User

CACHE_TTL_SECONDS = 300.0
CACHE_MAX_ENTRIES = 10_000
EMAIL_MAX = 255
NAME_MAX = 100


@dataclass(frozen=True, slots=True)
class Identity:
    """The verified claims the service uses; ``issuer`` is '' when the token has no ``iss``."""

    issuer: str
    subject: str
    email: str | None = None
    name: str | None = None


class UserDirectory:
    """Maps (iss, sub) to the internal user id, creating the row on first sight.

    ``INSERT … ON CONFLICT DO NOTHING`` then a read back, so concurrent first requests end with one row.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        ttl_seconds: float = CACHE_TTL_SECONDS,
        max_entries: int = CACHE_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._ttl = ttl_seconds
        self._max_entries = max_entries
        self._clock = clock
        self._cache: dict[tuple[str, str], tuple[uuid.UUID, float]] = {}

    async def user_id(self, identity: Identity) -> uuid.UUID:
        key = (identity.issuer, identity.subject)
        cached = self._cache.get(key)
        if cached is not None and cached[1] > self._clock():
            return cached[0]
        user_id = await self._provision(identity)
        if len(self._cache) >= self._max_entries:
            self._cache.clear()
        self._cache[key] = (user_id, self._clock() + self._ttl)
        return user_id

    async def _provision(self, identity: Identity) -> uuid.UUID:
        insert_new = (
            insert(User)
            .values(
                id=uuid.uuid4(),
                issuer=identity.issuer,
                subject=identity.subject,
                email=_fit(identity.email, EMAIL_MAX),
                name=_fit(identity.name, NAME_MAX),
            )
            .on_conflict_do_nothing(index_elements=[User.issuer, User.subject])
        )
        read_back = select(User.id).where(User.issuer == identity.issuer, User.subject == identity.subject)
        async with self._engine.begin() as conn:
            await conn.execute(insert_new)
            return (await conn.execute(read_back)).scalar_one()


def _fit(value: str | None, limit: int) -> str | None:
    """Optional profile claims are copied only when they fit their column."""
    return value if value is not None and len(value) <= limit else None
