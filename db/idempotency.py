"""Idempotency keys (issue 7; spec 12): the first response to a POST, kept per (user, key) for 24 h.

A request claims its key with one atomic upsert that succeeds only for a new key, an expired one or an
abandoned claim; every concurrent duplicate finds the claim and is told the first is in flight. The
claim ends either with the response stored (``complete``) or with the row deleted (``release``: the
request changed nothing, so the key may be used again).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from db.models import IdempotencyKey
from domain.errors import AppError, ErrorCode

IK = IdempotencyKey
KEY_TTL = timedelta(hours=24)
# A claim older than this without a response belongs to a request that died (an API process killed
# mid-request); every live request ends far sooner (its database and Temporal calls are bounded).
CLAIM_LEASE = timedelta(seconds=60)
CLAIM_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


class IdempotencyStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def claim(self, user_id: uuid.UUID, key: str, fingerprint: str) -> uuid.UUID | StoredResponse:
        """Our claim id, or the stored first response of the same request.

        Raises IDEMPOTENCY_KEY_REUSED for another request under the key, IDEMPOTENCY_KEY_IN_PROGRESS
        while the first request is in flight."""
        claim_id = uuid.uuid4()
        fresh = {"fingerprint": fingerprint, "claim_id": claim_id}
        takeover = (IK.created_at < func.now() - KEY_TTL) | (
            IK.response_status.is_(None) & (IK.updated_at < func.now() - CLAIM_LEASE)
        )
        upsert = (
            insert(IK)
            .values(user_id=user_id, key=key, **fresh)
            .on_conflict_do_update(
                index_elements=[IK.user_id, IK.key],
                set_={
                    **fresh,
                    "response_status": None,
                    "response_body": None,
                    "response_headers": {},
                    "created_at": func.now(),
                    "updated_at": func.now(),
                },
                where=takeover,
            )
            .returning(IK.claim_id)
        )
        read = select(IK.fingerprint, IK.response_status, IK.response_body, IK.response_headers).where(
            IK.user_id == user_id, IK.key == key
        )
        for _ in range(CLAIM_ATTEMPTS):
            async with self.engine.begin() as conn:
                if (await conn.execute(upsert)).scalar_one_or_none() == claim_id:
                    return claim_id
                held = (await conn.execute(read)).one_or_none()
            if held is None:
                continue  # released between the two statements: claim again
            if held.fingerprint != fingerprint:
                raise AppError(ErrorCode.IDEMPOTENCY_KEY_REUSED)
            if held.response_status is None:
                raise AppError(ErrorCode.IDEMPOTENCY_KEY_IN_PROGRESS, headers={"Retry-After": "1"})
            return StoredResponse(
                held.response_status, held.response_body or b"", dict(held.response_headers)
            )
        raise AppError(ErrorCode.IDEMPOTENCY_KEY_IN_PROGRESS, headers={"Retry-After": "1"})

    async def complete(
        self, user_id: uuid.UUID, key: str, claim_id: uuid.UUID, response: StoredResponse
    ) -> None:
        """Keep the first response for the rest of the key's 24 h."""
        async with self.engine.begin() as conn:
            await conn.execute(
                update(IK)
                .where(IK.user_id == user_id, IK.key == key, IK.claim_id == claim_id)
                .values(
                    response_status=response.status,
                    response_body=response.body,
                    response_headers=response.headers,
                    updated_at=func.now(),
                )
            )

    async def release(self, user_id: uuid.UUID, key: str, claim_id: uuid.UUID) -> None:
        """Give the key up: the request it guarded changed nothing."""
        async with self.engine.begin() as conn:
            await conn.execute(
                delete(IK).where(IK.user_id == user_id, IK.key == key, IK.claim_id == claim_id)
            )


async def purge_expired_keys(engine: AsyncEngine) -> int:
    """Delete the keys older than 24 h (the retention schedule's purge_batch calls this)."""
    async with engine.begin() as conn:
        result = await conn.execute(delete(IK).where(IK.created_at < func.now() - KEY_TTL))
        return int(result.rowcount or 0)
