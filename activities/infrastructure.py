"""Infrastructure errors — the database or Temporal unreachable — and their own retry budget (spec 6.7).

A database or Temporal outage must never fail a job or discard generated output, and must never use
up the AI provider's 4-attempt budget. So every database or Temporal step of an activity runs through
``until_available``: an infrastructure error is retried inside the activity with capped exponential
backoff and no attempt limit; anything else is raised at once to the activity boundary. The job
deadline (the workflow timer, which cancels the activity) and each attempt's start-to-close bound it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy import exc as sa_exc
from temporalio.service import RPCError, RPCStatusCode

from db.engine import is_connection_error
from domain.errors import AppError, ErrorCode
from domain.retry import infrastructure_backoff_seconds

log = logging.getLogger("activities.infrastructure")
T = TypeVar("T")

# Statuses of a Temporal call that say "the server is not reachable right now", not "your request is wrong".
TRANSIENT_RPC = frozenset(
    {
        RPCStatusCode.UNAVAILABLE,
        RPCStatusCode.DEADLINE_EXCEEDED,
        RPCStatusCode.RESOURCE_EXHAUSTED,
        RPCStatusCode.ABORTED,
        RPCStatusCode.CANCELLED,
    }
)


def is_infrastructure_error(exc: BaseException) -> bool:
    """A database connection failure or an unreachable Temporal frontend."""
    if isinstance(exc, AppError):
        return exc.code is ErrorCode.DATABASE_CONNECTION_ERROR
    if isinstance(exc, RPCError):
        return exc.status in TRANSIENT_RPC
    if isinstance(exc, (sa_exc.SQLAlchemyError, OSError)):
        return is_connection_error(exc)
    return False


async def until_available(step: Callable[[], Awaitable[T]], what: str) -> T:
    """Run ``step`` until it no longer fails on infrastructure; other errors propagate unchanged."""
    failures = 0
    while True:
        try:
            return await step()
        except Exception as exc:
            if not is_infrastructure_error(exc):
                raise
            failures += 1
            delay = infrastructure_backoff_seconds(failures)
            log.warning(
                "infrastructure unavailable; retrying",
                extra={
                    "event": "infrastructure_retry",
                    "step": what,
                    "failures": failures,
                    "nextDelaySeconds": delay,
                    "cause": type(exc).__name__,
                },
            )
            await asyncio.sleep(delay)
