"""How GenerationWorkflow calls its activities: retry policies, cancellation types, the short local state
writes, and the catalogue code of an activity that failed for good."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError, TimeoutError, TimeoutType

with workflow.unsafe.imports_passed_through():
    from domain import retry
    from domain.errors import NON_RETRYABLE_CODES, ErrorCode, InternalSignal

STANDARD_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=retry.INITIAL_INTERVAL_SECONDS),
    backoff_coefficient=retry.BACKOFF_COEFFICIENT,
    maximum_interval=timedelta(seconds=retry.MAXIMUM_INTERVAL_SECONDS),
    maximum_attempts=retry.MAXIMUM_ATTEMPTS,
    non_retryable_error_types=list(NON_RETRYABLE_CODES),
)
# The local state writes: no attempt limit. Their infrastructure errors are waited out inside the activity
# (an attempt that outlives its start-to-close is retried here), and the activity boundary makes every
# other auto-retryable code non-retryable after MAXIMUM_ATTEMPTS, so the 4-attempt budget still holds
# for everything that is not an outage. The job deadline bounds it all (spec 6.7).
STATE_WRITE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=retry.INITIAL_INTERVAL_SECONDS),
    backoff_coefficient=retry.BACKOFF_COEFFICIENT,
    maximum_interval=timedelta(seconds=retry.MAXIMUM_INTERVAL_SECONDS),
    maximum_attempts=0,
    non_retryable_error_types=list(NON_RETRYABLE_CODES),
)
SHORT = timedelta(seconds=10)
INTERNAL = {s.value for s in InternalSignal}
WAIT = workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED
TRY = workflow.ActivityCancellationType.TRY_CANCEL

# A remote activity's failure arrives as ActivityError(cause=…); a local activity's as the cause itself.
ACTIVITY_FAILURE = (ActivityError, ApplicationError, TimeoutError)


def failure_of(err: FailureError) -> tuple[str, dict[str, str] | None]:
    """The catalogue code (and details) of an activity that failed for good."""
    cause = err.cause if isinstance(err, ActivityError) else err
    if isinstance(cause, TimeoutError):
        kind = "HEARTBEAT" if cause.type == TimeoutType.HEARTBEAT else "START_TO_CLOSE"
        return ErrorCode.TIMEOUT_ERROR.value, {"timeoutKind": kind}
    if isinstance(cause, ApplicationError) and cause.type:
        details = cause.details[0] if cause.details and isinstance(cause.details[0], dict) else None
        return cause.type, details
    return ErrorCode.UNKNOWN_ERROR.value, None


async def short_write(activity: str, arg: Any, result_type: type[Any] | None = None) -> Any:
    """A short state write: a local activity with the 10 s start-to-close and no attempt limit."""
    return await workflow.execute_local_activity(
        activity, arg, result_type=result_type, start_to_close_timeout=SHORT, retry_policy=STATE_WRITE_RETRY
    )
