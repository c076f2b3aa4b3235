"""Structured API logs: every record of a request carries its requestId and, once known, userId.

Fields go in ``extra`` (the JSON formatter renders them); user text and tokens are never passed here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any
from uuid import UUID

log = logging.getLogger("api")

_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
_user_id: ContextVar[str | None] = ContextVar("user_id", default=None)


@contextmanager
def request_scope(request_id: str) -> Iterator[None]:
    rid = _request_id.set(request_id)
    uid = _user_id.set(None)
    try:
        yield
    finally:
        _user_id.reset(uid)
        _request_id.reset(rid)


def bind_user(user_id: UUID) -> None:
    _user_id.set(str(user_id))


def _extra(event: str, fields: dict[str, Any]) -> dict[str, Any]:
    context = {"requestId": _request_id.get(), "userId": _user_id.get()}
    return {k: v for k, v in context.items() if v is not None} | {"event": event, **fields}


def log_event(level: int, event: str, message: str, **fields: Any) -> None:
    if log.isEnabledFor(level):  # every request logs one INFO line: skip building it when it would be dropped
        log.log(level, message, extra=_extra(event, fields))


def log_exception(event: str, message: str, **fields: Any) -> None:
    """An ERROR with the stack trace (masked by the formatter); never sent to clients."""
    log.error(message, extra=_extra(event, fields), exc_info=True)
