"""The standard retry policy of every activity (spec 6.4), as numbers both sides can use."""

from __future__ import annotations

INITIAL_INTERVAL_SECONDS = 1.0
BACKOFF_COEFFICIENT = 2.0
MAXIMUM_INTERVAL_SECONDS = 10.0
MAXIMUM_ATTEMPTS = 4
RETRY_AFTER_CAP_SECONDS = 60.0


def backoff_seconds(attempt: int) -> float:
    """The policy's wait after failed attempt ``attempt`` (1-based): 1 s, 2 s, 4 s, … capped at 10 s."""
    return min(INITIAL_INTERVAL_SECONDS * BACKOFF_COEFFICIENT ** (attempt - 1), MAXIMUM_INTERVAL_SECONDS)


def next_retry_delay(attempt: int, retry_after: float | None) -> float | None:
    """The delay to ask Temporal for when a provider sent Retry-After, else None (the policy decides).

    Retry-After is the least a provider asks us to wait, so it never shortens the policy's backoff:
    throttled twice with Retry-After 1 s the waits are still 1 s and 2 s (checklist J87), and
    Retry-After 3 s waits at least 3 s (M130). It is capped at 60 s.
    """
    if retry_after is None:
        return None
    return max(min(max(retry_after, 0.0), RETRY_AFTER_CAP_SECONDS), backoff_seconds(attempt))


# Infrastructure errors (database or Temporal connection) have a budget of their own (spec 6.7): retried
# inside the activity with capped exponential backoff and no attempt limit; the job deadline bounds them.
INFRA_INITIAL_INTERVAL_SECONDS = 0.5
INFRA_MAXIMUM_INTERVAL_SECONDS = 5.0


def infrastructure_backoff_seconds(failures: int) -> float:
    """The wait after the ``failures``-th consecutive infrastructure failure: 0.5, 1, 2, 4, 5, 5, … s."""
    return min(
        INFRA_INITIAL_INTERVAL_SECONDS * BACKOFF_COEFFICIENT ** (failures - 1), INFRA_MAXIMUM_INTERVAL_SECONDS
    )
