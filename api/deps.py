"""FastAPI dependencies. Their chaining fixes the order of checks of spec 5.1:
authentication (401) → rate limit (429) → body size (413); the routes then check the path id and the body.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Annotated
from uuid import UUID

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials

from api.auth import BEARER, bearer_token
from api.errors import request_language
from api.log_context import bind_user, log_event
from api.middleware import RATE_LIMIT_HEADERS_KEY
from api.rate_limit import Bucket
from api.services import Services
from db.users import Identity
from domain.enums import Language
from domain.errors import AppError, ErrorCode
from observability import metrics


# Dependencies are coroutines even when they do not await: FastAPI runs a plain function in a worker
# thread, and that hand-off cost more than the rest of a status read (bench/status_reads.py).
async def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


async def language(request: Request) -> Language:
    return request_language(request)


ServicesDep = Annotated[Services, Depends(services)]
Lang = Annotated[Language, Depends(language)]


async def current_identity(
    svc: ServicesDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)]
) -> Identity:
    """The verified token's identity (FastAPI runs it once per request, however many depend on it)."""
    return await svc.verifier.verify(bearer_token(credentials))


Owner = Annotated[Identity, Depends(current_identity)]


async def current_user(svc: ServicesDep, identity: Owner) -> UUID:
    user_id = await svc.users.user_id(identity)
    bind_user(user_id)
    return user_id


def _rate_limited(bucket: Bucket) -> Callable[..., Awaitable[UUID]]:
    async def dependency(
        request: Request, svc: ServicesDep, user_id: Annotated[UUID, Depends(current_user)]
    ) -> UUID:
        decision = await svc.limiter.hit(user_id, bucket)
        setattr(request.state, RATE_LIMIT_HEADERS_KEY, decision.headers())
        if not decision.allowed:
            log_event(logging.WARNING, "rate_limit_exceeded", "rate limit exceeded", bucket=bucket.value)
            metrics.rate_limit_rejected(bucket.value)
            raise AppError(
                ErrorCode.RATE_LIMIT_EXCEEDED,
                decision.rejection_details(),
                headers={"Retry-After": str(decision.seconds_left)},
            )
        return user_id

    return dependency


WriteUser = Annotated[UUID, Depends(_rate_limited(Bucket.WRITE))]
ReadUser = Annotated[UUID, Depends(_rate_limited(Bucket.READ))]


async def request_body(request: Request, svc: ServicesDep, _: WriteUser) -> bytes:
    """The raw body, refused with 413 as soon as it exceeds MAX_BODY_BYTES (declared or streamed)."""
    return await read_body(request, svc.settings.max_body_bytes)


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise AppError(ErrorCode.PAYLOAD_TOO_LARGE)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise AppError(ErrorCode.PAYLOAD_TOO_LARGE)
    return bytes(body)


Body = Annotated[bytes, Depends(request_body)]
