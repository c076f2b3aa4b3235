"""Estimated completion time of a job (spec 6.6, learned from history as spec 12 suggests)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from datetime import datetime, timedelta

from domain.enums import Scope

# Completed jobs older than this say little about today's provider, model and load.
HISTORY_WINDOW = timedelta(days=7)


def estimated_completion_at(
    created_at: datetime,
    *,
    scope: Scope,
    estimate_seconds: int,
    units: int,
    concurrency: int,
    deadline_seconds: int,
) -> datetime:
    """Target scope: ``created_at + E``. Goal scope: ``created_at + min(E × ceil(units ÷ concurrency),
    job deadline)``. Computed once at insert and never changed."""
    if scope is Scope.TARGET:
        return created_at + timedelta(seconds=estimate_seconds)
    return created_at + timedelta(
        seconds=min(estimate_seconds * _rounds(units, concurrency), deadline_seconds)
    )


def learned_estimate_seconds(
    observed: Sequence[tuple[float, int]], *, concurrency: int, configured: int
) -> int:
    """``E`` for a job type: the median time per round of recent COMPLETED jobs of that type, rounded up to
    whole seconds; the configured estimate while there are none.

    ``observed`` holds (``completed_at − created_at`` in seconds, total units) per job. A job of ``u``
    units ran ``ceil(u ÷ concurrency)`` rounds (one for a target-scope job), so target- and goal-scope
    jobs of a type teach the same per-round time.
    """
    if not observed:
        return configured
    per_round = [seconds / _rounds(units, concurrency) for seconds, units in observed]
    return max(1, math.ceil(statistics.median(per_round)))


def _rounds(units: int, concurrency: int) -> int:
    return max(1, math.ceil(units / concurrency))
