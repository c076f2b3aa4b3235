"""The ``Idempotency-Key`` header on POST generate and retry (issue 7; spec 12).

The first response to a key (status, body, ``Location``) is replayed for 24 h to the same request; the
same key with another request is 422 IDEMPOTENCY_KEY_REUSED, and a duplicate while the first is in
flight 409 IDEMPOTENCY_KEY_IN_PROGRESS. Only responses that created a job are kept (202, and 503
WORKFLOW_START_ERROR, whose row exists as FAILED); any other answer changed nothing and frees the key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable

from fastapi import Request
from fastapi.responses import Response

from api.errors import render_app_error
from api.fields import FieldError, FieldMessage, InvalidFields
from api.log_context import log_event
from api.services import Services
from db.idempotency import StoredResponse
from domain.enums import Language
from domain.errors import AppError, ErrorCode

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
KEY_PATTERN = re.compile(r"[\x21-\x7e]{1,255}")  # visible ASCII, as Stripe-style keys and UUIDs are
_KEPT_HEADERS = ("Location", "Content-Language")
_CREATED_A_JOB = frozenset({ErrorCode.WORKFLOW_START_ERROR})


def idempotency_key(request: Request) -> str | None:
    """The header's value; None when absent. Sent twice, empty, too long or not visible ASCII: 400."""
    values = request.headers.getlist(HEADER)
    if not values:
        return None
    if len(values) > 1 or not KEY_PATTERN.fullmatch(values[0]):
        raise InvalidFields([FieldError(HEADER, FieldMessage.IDEMPOTENCY_KEY_INVALID)])
    return values[0]


def fingerprint(method: str, path: str, body: bytes) -> str:
    """What makes two requests "the same": method, path and the body as JSON (key order and spacing
    aside; an absent body counts as ``{}``), or the raw bytes when the body is not JSON."""
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except (ValueError, RecursionError):
        canonical = body if body.strip() else b"{}"
    digest = hashlib.sha256(f"{method} {path}\n".encode())
    digest.update(canonical)
    return digest.hexdigest()


def replay(stored: StoredResponse) -> Response:
    headers = {**stored.headers, REPLAYED_HEADER: "true"}
    return Response(stored.body, stored.status, headers=headers, media_type="application/json")


async def idempotent(
    svc: Services,
    request: Request,
    user_id: uuid.UUID,
    body: bytes,
    lang: Language,
    handle: Callable[[], Awaitable[Response]],
) -> Response:
    """Run ``handle`` at most once per (user, Idempotency-Key); without the header, just run it."""
    key = idempotency_key(request)
    if key is None:
        return await handle()
    claimed = await svc.idempotency.claim(user_id, key, fingerprint(request.method, request.url.path, body))
    if isinstance(claimed, StoredResponse):
        log_event(logging.INFO, "idempotent_replay", "idempotent replay", status=claimed.status)
        return replay(claimed)
    try:
        response = await handle()
    except AppError as exc:
        if exc.code not in _CREATED_A_JOB:
            await _release(svc, user_id, key, claimed)
            raise
        response = render_app_error(exc, lang)
    except Exception:
        await _release(svc, user_id, key, claimed)
        raise
    headers = {name: response.headers[name] for name in _KEPT_HEADERS if name in response.headers}
    stored = StoredResponse(
        response.status_code, bytes(response.body), headers | {"Content-Language": lang.value}
    )
    try:
        await svc.idempotency.complete(user_id, key, claimed, stored)
    except Exception as exc:  # the job exists; the claim lapses after its lease
        log_event(
            logging.WARNING, "idempotency_store_failed", "idempotency store failed", cause=type(exc).__name__
        )
    return response


async def _release(svc: Services, user_id: uuid.UUID, key: str, claim_id: uuid.UUID) -> None:
    try:
        await svc.idempotency.release(user_id, key, claim_id)
    except Exception as exc:  # the claim lapses after its lease
        log_event(
            logging.WARNING,
            "idempotency_release_failed",
            "idempotency release failed",
            cause=type(exc).__name__,
        )
