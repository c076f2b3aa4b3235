"""A state write repeated after its first attempt committed (its completion lost to a crash, an outage or a
start-to-close timeout) adds nothing: one event per fact (issue 7)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from db.repository import JobRepository
from db.transitions import RunStatus
from domain.enums import ProcessingStatus, ProcessingType, TargetType
from domain.errors import AppError, ErrorCode
from tests.support.api import ensure_user, seed_tree
from tests.support.jobs import Jobs, events

RESET_RUN = "run-after-reset"


async def reset_run() -> RunStatus:
    return RunStatus(current=True, reset=True)


async def current_run() -> RunStatus:
    return RunStatus(current=True)


async def test_a_repeated_unit_failure_writes_one_event_and_a_reset_run_records_its_own(
    repo: JobRepository, clean_db: AsyncEngine
) -> None:
    user = await ensure_user(clean_db, "repeated-unit-failure")
    tree = await seed_tree(clean_db, user, subgoals=2)
    jobs = Jobs(repo)
    process_id = await jobs.pending(
        user,
        ProcessingType.ACTION_GENERATION,
        TargetType.GOAL,
        tree.goal_id,
        units=[(s, TargetType.SUB_GOAL) for s in tree.subgoal_ids],
    )
    await jobs.processing(process_id)
    failed_unit = tree.subgoal_ids[0]
    await jobs.fail_unit(process_id, failed_unit, ErrorCode.AI_ERROR)
    await jobs.fail_unit(process_id, failed_unit, ErrorCode.AI_ERROR)  # the retry of the lost completion
    once = await repo.get_job(process_id)
    assert once is not None and (once.progress, once.event_seq) == (50, 3)
    assert [e.type for e in await events(repo, process_id)] == ["CREATED", "STARTED", "UNIT_FAILED"]

    # An operator reset reopens the job; the new run retries the unit, and its failure is a new fact.
    await jobs.finish(process_id, ProcessingStatus.FAILED, ErrorCode.PARTIAL_FAILURE.value)
    assert (await repo.mark_processing(process_id, RESET_RUN, 600, reset_run)).reopened
    err = AppError(ErrorCode.QUALITY_ERROR)
    await repo.record_unit_failure(process_id, failed_unit, err, RESET_RUN, current_run)
    await repo.record_unit_failure(process_id, failed_unit, err, RESET_RUN, current_run)
    history = await events(repo, process_id)
    assert [e.type for e in history] == [
        "CREATED",
        "STARTED",
        "UNIT_FAILED",
        "FAILED",
        "REOPENED",
        "UNIT_FAILED",
    ]
    assert history[-1].payload == {"unitId": str(failed_unit), "errorCode": "QUALITY_ERROR"}
