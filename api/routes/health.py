"""Probes (spec 5.10): no auth, no envelope, no rate limit."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import UTC, datetime

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.deps import ServicesDep
from api.response_shapes import Health, Readiness
from domain.timefmt import iso_ms

CHECK_TIMEOUT_SECONDS = 2.0

router = APIRouter(tags=["health"])


@router.get("/health", summary="Liveness", response_model=Health)
async def health() -> JSONResponse:
    return JSONResponse({"status": "ok", "timestamp": iso_ms(datetime.now(UTC))})


@router.get(
    "/health/ready",
    summary="Readiness: PostgreSQL and Temporal",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "A check failed"}},
)
async def ready(svc: ServicesDep) -> JSONResponse:
    async def database() -> None:
        async with svc.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    db_state, temporal_state = await asyncio.gather(
        _check(database()), _check(svc.temporal.check_ready(CHECK_TIMEOUT_SECONDS))
    )
    checks = {"database": db_state, "temporal": temporal_state}
    ok = all(v == "ok" for v in checks.values())
    body = {"status": "ok" if ok else "unavailable", "checks": checks, "timestamp": iso_ms(datetime.now(UTC))}
    return JSONResponse(body, status_code=200 if ok else 503)


async def _check(probe: Awaitable[None]) -> str:
    try:
        await asyncio.wait_for(probe, CHECK_TIMEOUT_SECONDS)
    except Exception:  # any failure or timeout means "not ready"
        return "error"
    return "ok"
