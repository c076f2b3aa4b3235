"""The retry policy and how a provider's Retry-After becomes Temporal's next retry delay."""

from __future__ import annotations

from datetime import timedelta

import pytest

from activities.boundary import application_error, to_app_error
from ai.provider import ProviderError, ProviderErrorKind
from domain.errors import AppError, ErrorCode
from domain.retry import backoff_seconds, next_retry_delay


def test_backoff_is_one_two_four_seconds_capped_at_ten() -> None:
    assert [backoff_seconds(a) for a in (1, 2, 3, 4, 5, 6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


@pytest.mark.parametrize(
    ("attempt", "retry_after", "expected"),
    [
        (1, None, None),
        (1, 1.0, 1.0),
        (2, 1.0, 2.0),
        (1, 3.0, 3.0),
        (3, 3.0, 4.0),
        (1, 600.0, 60.0),
        (1, -5.0, 1.0),
    ],
)
def test_retry_after_never_shortens_the_backoff_and_is_capped(
    attempt: int, retry_after: float | None, expected: float | None
) -> None:
    assert next_retry_delay(attempt, retry_after) == expected


def test_throttled_provider_error_becomes_a_retryable_ai_error_with_its_delay() -> None:
    err, retry_after = to_app_error(ProviderError(ProviderErrorKind.TRANSIENT, "status 429", retry_after=3.0))
    failure = application_error(err, retry_after, attempt=1)
    assert failure.type == "AI_ERROR" and not failure.non_retryable
    assert failure.next_retry_delay == timedelta(seconds=3)


def test_rejected_and_quality_failures_are_not_retried_by_temporal() -> None:
    err, retry_after = to_app_error(ProviderError(ProviderErrorKind.REJECTED, "status 401", retry_after=5.0))
    rejected = application_error(err, retry_after, attempt=1)
    assert (
        rejected.type == "AI_REQUEST_REJECTED"
        and rejected.non_retryable
        and rejected.next_retry_delay is None
    )
    quality = application_error(AppError(ErrorCode.QUALITY_ERROR, {"violations": []}), None, attempt=1)
    assert quality.non_retryable and quality.details == ({"violations": []},)


def test_unexpected_exceptions_are_unknown_errors_without_their_text() -> None:
    err, _ = to_app_error(RuntimeError("secret connection string postgresql://u:p@h"))
    assert err.code is ErrorCode.UNKNOWN_ERROR and "postgresql" not in (err.internal or "")
