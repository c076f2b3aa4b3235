"""Estimated completion time of a job (spec 6.6)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from domain.enums import Scope


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
    rounds = math.ceil(units / concurrency)
    return created_at + timedelta(seconds=min(estimate_seconds * rounds, deadline_seconds))
