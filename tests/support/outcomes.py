"""What a finished job must look like in PostgreSQL after a fault: its row, an event log with no gap that
holds exactly the expected events, its generated rows saved once, and no job it did not ask for."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Mapping
from typing import Any

from db.repository import JobRepository
from tests.support.jobs import events, rows

# The events of a target-scope job that completed at the first try.
COMPLETED_TARGET = {"CREATED": 1, "STARTED": 1, "PROGRESS": 1, "UNIT_SUCCEEDED": 1, "COMPLETED": 1}


async def assert_event_log(
    repo: JobRepository, process_id: uuid.UUID, expected: Mapping[str, int], note: object = None
) -> Any:
    """The job's events are numbered 1..event_seq with no gap, open with CREATED, close with the row's
    terminal event and hold exactly ``expected`` (type → count); returns the row. ``note`` goes into the
    failure message."""
    job = await repo.get_job(process_id)
    assert job is not None
    history = await events(repo, process_id)
    seen = (note, process_id, [(e.type, e.payload) for e in history])
    assert [e.seq for e in history] == list(range(1, job.event_seq + 1)), seen
    types = [e.type for e in history]
    assert types[0] == "CREATED" and types[-1] == job.status, seen
    assert Counter(types) == Counter({k: v for k, v in expected.items() if v}), seen
    return job


async def assert_subgoals_saved_once(repo: JobRepository, process_id: uuid.UUID) -> None:
    """A SUBGOAL job that completed: one goal row and its 8 subgoals, each position once, all its own."""
    job = await repo.get_job(process_id)
    assert job is not None
    goals = await rows(repo, "SELECT created_by_process_id FROM goals WHERE id=:g", g=job.target_id)
    assert [g.created_by_process_id for g in goals] == [process_id]
    saved = await rows(
        repo,
        "SELECT position, generated_by_process_id FROM sub_goals WHERE goal_id=:g ORDER BY position",
        g=job.target_id,
    )
    assert [(s.position, s.generated_by_process_id) for s in saved] == [(i, process_id) for i in range(8)]


async def assert_completed_once(repo: JobRepository, process_id: uuid.UUID) -> None:
    """A SUBGOAL job that completed exactly once, with no failed attempt on record."""
    job = await assert_event_log(repo, process_id, COMPLETED_TARGET)
    assert (job.status, job.progress, job.error_code) == ("COMPLETED", 100, None)
    await assert_subgoals_saved_once(repo, process_id)


async def jobs_of(repo: JobRepository, user_id: uuid.UUID) -> list[uuid.UUID]:
    """Every job row of ``user_id``: a duplicate start shows up here as a second row."""
    return [r.id for r in await rows(repo, "SELECT id FROM processing_states WHERE user_id=:u", u=user_id)]
