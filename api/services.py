"""Everything a request needs, built once per app in the lifespan and closed with it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from api.auth import TokenVerifier, make_verifier
from api.rate_limit import Bucket, RateLimiter
from api.temporal_gateway import TemporalConnection
from db.engine import make_engine
from db.idempotency import IdempotencyStore
from db.repository import JobRepository
from db.users import UserDirectory
from settings import Settings


@dataclass(frozen=True)
class Services:
    settings: Settings
    engine: AsyncEngine
    autocommit: AsyncEngine  # the same pool, for single-statement reads: no BEGIN/ROLLBACK round trips
    jobs: JobRepository
    idempotency: IdempotencyStore
    users: UserDirectory
    limiter: RateLimiter
    verifier: TokenVerifier
    temporal: TemporalConnection
    # Set when the process begins to stop (api/stopping.py): event streams then end with RECONNECT.
    stopping: asyncio.Event = field(default_factory=asyncio.Event)


@asynccontextmanager
async def open_services(settings: Settings) -> AsyncIterator[Services]:
    engine = make_engine(settings.database_url, settings.db_pool_size)
    temporal = TemporalConnection(settings)
    await temporal.try_connect()
    limits = {
        Bucket.WRITE: settings.rate_limit_write_per_minute,
        Bucket.READ: settings.rate_limit_read_per_minute,
    }
    try:
        async with httpx.AsyncClient() as http:
            yield Services(
                settings=settings,
                engine=engine,
                autocommit=engine.execution_options(isolation_level="AUTOCOMMIT"),
                jobs=JobRepository(engine),
                idempotency=IdempotencyStore(engine),
                users=UserDirectory(engine),
                limiter=RateLimiter(engine, limits),
                verifier=make_verifier(settings, http),
                temporal=temporal,
            )
    finally:
        await engine.dispose()
