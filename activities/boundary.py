"""The activity boundary: every exception leaves as an ApplicationError typed by a catalogue code.

Non-retryable unless the catalogue's "Auto" column says yes and attempts are left: the boundary owns the
4-attempt budget, so the state writes can run under a policy without an attempt limit (their
infrastructure errors never reach here: see activities/infrastructure.py). A provider's Retry-After
becomes the next retry delay (capped at 60 s). An auto-retryable failure with attempts left logs
``activity_attempt_failed`` and writes an ATTEMPT_FAILED event before it is raised (spec 6.7).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, ParamSpec, Protocol, TypeVar, runtime_checkable

from sqlalchemy import exc as sa_exc
from temporalio import activity
from temporalio.exceptions import ApplicationError

from ai.provider import ProviderError
from db.engine import db_error
from domain.errors import AppError, ErrorCode, InternalSignalError
from domain.retry import MAXIMUM_ATTEMPTS, next_retry_delay

log = logging.getLogger("activities")
P = ParamSpec("P")
R = TypeVar("R")


@runtime_checkable
class RecordsAttempts(Protocol):
    async def record_attempt_failed(self, request: Any, attempt: int, code: ErrorCode) -> None: ...


def to_app_error(exc: BaseException) -> tuple[AppError, float | None]:
    """Classify any exception as (catalogue error, provider retry-after)."""
    if isinstance(exc, AppError):
        return exc, None
    if isinstance(exc, ProviderError):
        return AppError(exc.kind.error_code, internal=str(exc)[:300]), exc.retry_after
    if isinstance(exc, (sa_exc.SQLAlchemyError, OSError)):
        return db_error(exc), None
    return AppError(ErrorCode.UNKNOWN_ERROR, internal=type(exc).__name__), None


def will_retry(err: AppError, attempt: int) -> bool:
    return err.entry.auto_retry and attempt < MAXIMUM_ATTEMPTS


def application_error(err: AppError, retry_after: float | None, attempt: int) -> ApplicationError:
    retry = will_retry(err, attempt)
    seconds = next_retry_delay(attempt, retry_after) if retry else None
    delay = None if seconds is None else timedelta(seconds=seconds)
    details = [err.details] if err.details else []
    return ApplicationError(
        err.code.value,
        *details,
        type=err.code.value,
        non_retryable=not retry,
        next_retry_delay=delay,
    )


def boundary(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Decorate an activity method so that its failures follow the catalogue.

    When the owner implements ``record_attempt_failed`` it is told about each failure that will be
    retried, with the activity's request (its last positional argument).
    """

    @functools.wraps(fn)
    async def run(*args: P.args, **kwargs: P.kwargs) -> R:
        info = activity.info()
        if info.attempt > 1:
            log.info(
                "activity attempt retried",
                extra={
                    "event": "activity_attempt_retried",
                    "activity": info.activity_type,
                    "attempt": info.attempt,
                },
            )
        try:
            return await fn(*args, **kwargs)
        except asyncio.CancelledError:
            raise
        except InternalSignalError as sig:
            details = [{"rowStatus": sig.row_status}] if sig.row_status else []
            raise ApplicationError(
                sig.signal.value, *details, type=sig.signal.value, non_retryable=True
            ) from None
        except Exception as exc:
            err, retry_after = to_app_error(exc)
            retry = will_retry(err, info.attempt)
            log.log(
                logging.WARNING if retry else logging.INFO,
                "activity attempt failed",
                extra={
                    "event": "activity_attempt_failed",
                    "activity": info.activity_type,
                    "attempt": info.attempt,
                    "errorCode": err.code.value,
                    "retryAfter": retry_after,
                    "willRetry": retry,
                    "cause": err.internal,
                },
            )
            owner = args[0] if args else None
            if retry and isinstance(owner, RecordsAttempts):
                await owner.record_attempt_failed(args[-1], info.attempt, err.code)
            raise application_error(err, retry_after, info.attempt) from None

    return run
