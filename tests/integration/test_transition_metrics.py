"""Spec 6.3 / M129 / J86: terminal metrics come from applied transitions only, once each, after commit."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from db.repository import JobRepository
from db.transitions import RunStatus
from domain.enums import CancelledBy, ProcessingStatus, ProcessingType, Scope, TargetType
from domain.errors import ErrorCode
from domain.workflow_io import FinalizeRequest
from tests.support.api import ensure_user, seed_tree
from tests.support.jobs import RUN_ID, Jobs
from tests.support.metrics_probe import MetricsProbe, installed, labels

TERMINAL = (
    "AsyncProcessingCompleted",
    "AsyncProcessingFailed",
    "AsyncProcessingTimeout",
    "AsyncProcessingCancelled",
)
ACTION = ProcessingType.ACTION_GENERATION.value


@pytest.fixture
def probe() -> Iterator[MetricsProbe]:
    with installed() as p:
        yield p


def terminal_counts(probe: MetricsProbe) -> dict[str, float]:
    return {name: probe.value(name) for name in TERMINAL}


def durations(probe: MetricsProbe) -> dict[str, tuple[int, float]]:
    return {dict(k)["Status"]: (p.count, p.sum) for k, p in probe.histograms("ProcessingDuration").items()}


async def current_run() -> RunStatus:
    return RunStatus(current=True)


async def reset_run() -> RunStatus:
    return RunStatus(current=True, reset=True)


async def processing_job(
    repo: JobRepository, engine: AsyncEngine, created_at: datetime | None = None
) -> uuid.UUID:
    user = await ensure_user(engine, f"user-{uuid.uuid4()}")
    tree = await seed_tree(engine, user, subgoals=1)
    jobs = Jobs(repo)
    process_id = await jobs.pending(user, target_id=tree.subgoal_ids[0], created_at=created_at)
    await jobs.processing(process_id)
    return process_id


async def test_completion_counts_once_with_its_duration_and_a_refused_write_adds_nothing(
    probe: MetricsProbe, repo: JobRepository, clean_db: AsyncEngine
) -> None:
    process_id = await processing_job(repo, clean_db, created_at=datetime.now(UTC) - timedelta(seconds=90))
    row = await repo.get_job(process_id)
    assert row is not None
    await Jobs(repo).save_unit(process_id, (row.target_id, TargetType.SUB_GOAL), 0, Scope.TARGET)
    done = await repo.get_job(process_id)
    assert done is not None and done.status == ProcessingStatus.COMPLETED and done.completed_at is not None
    expected_ms = (done.completed_at - done.created_at).total_seconds() * 1000
    assert terminal_counts(probe) == {**dict.fromkeys(TERMINAL, 0.0), "AsyncProcessingCompleted": 1.0}
    assert probe.series("AsyncProcessingCompleted") == {labels(ProcessingType=ACTION, Status="COMPLETED"): 1}
    assert durations(probe).keys() == {"COMPLETED"}
    count, total = durations(probe)["COMPLETED"]
    assert count == 1 and total == pytest.approx(expected_ms) and expected_ms >= 90_000

    # J86: finalize(FAILED) on a COMPLETED row is refused: no event, no metric.
    refused = await repo.finalize(
        FinalizeRequest(process_id=process_id, status=ProcessingStatus.FAILED, error_code="AI_ERROR"),
        RUN_ID,
        current_run,
    )
    assert refused.applied is False
    assert terminal_counts(probe)["AsyncProcessingFailed"] == 0
    assert durations(probe) == {"COMPLETED": (count, total)}


@pytest.mark.parametrize(
    ("status", "code", "counter", "extra"),
    [
        (
            ProcessingStatus.FAILED,
            ErrorCode.PARTIAL_FAILURE,
            "AsyncProcessingFailed",
            {"ErrorType": "PARTIAL_FAILURE"},
        ),
        (ProcessingStatus.TIMEOUT, ErrorCode.TIMEOUT_ERROR, "AsyncProcessingTimeout", {}),
    ],
)
async def test_failure_and_timeout_count_once_and_the_second_terminal_write_is_refused(
    probe: MetricsProbe,
    repo: JobRepository,
    clean_db: AsyncEngine,
    status: ProcessingStatus,
    code: ErrorCode,
    counter: str,
    extra: dict[str, str],
) -> None:
    process_id = await processing_job(repo, clean_db)
    await Jobs(repo).finish(process_id, status, code.value)
    second = FinalizeRequest(
        process_id=process_id, status=ProcessingStatus.TIMEOUT, error_code="TIMEOUT_ERROR"
    )
    assert (await repo.finalize(second, RUN_ID, current_run)).applied is False
    assert terminal_counts(probe) == {**dict.fromkeys(TERMINAL, 0.0), counter: 1.0}
    assert probe.series(counter) == {labels(ProcessingType=ACTION, Status=status.value, **extra): 1}
    assert [count for count, _ in durations(probe).values()] == [1]


async def test_user_cancel_counts_once_with_cancelled_by_user(
    probe: MetricsProbe, repo: JobRepository, clean_db: AsyncEngine
) -> None:
    process_id = await processing_job(repo, clean_db)
    assert await repo.cancel_by_user(process_id, "reason") is not None
    assert await repo.cancel_by_user(process_id, "again") is None
    assert probe.series("AsyncProcessingCancelled") == {
        labels(ProcessingType=ACTION, CancelledBy="USER", ErrorType="CANCELLED"): 1
    }
    assert durations(probe).keys() == {"CANCELLED"}


async def test_operator_cancel_then_reset_counts_each_applied_terminal_transition(
    probe: MetricsProbe, repo: JobRepository, clean_db: AsyncEngine
) -> None:
    process_id = await processing_job(repo, clean_db)
    cancel = FinalizeRequest(
        process_id=process_id, status=ProcessingStatus.CANCELLED, error_code="CANCELLED", source="workflow"
    )
    assert (await repo.finalize(cancel, RUN_ID, current_run)).applied
    assert probe.series("AsyncProcessingCancelled") == {
        labels(ProcessingType=ACTION, CancelledBy=CancelledBy.OPERATOR.value, ErrorType="CANCELLED"): 1
    }
    # T11 (reopen by the reset run) is not terminal: no metric; the new run's terminal write counts again.
    reopened = await repo.mark_processing(process_id, "run-after-reset", 600, reset_run)
    assert reopened.reopened and terminal_counts(probe)["AsyncProcessingCancelled"] == 1
    failed = FinalizeRequest(process_id=process_id, status=ProcessingStatus.FAILED, error_code="AI_ERROR")
    assert (await repo.finalize(failed, "run-after-reset", current_run)).applied
    assert terminal_counts(probe) == {
        **dict.fromkeys(TERMINAL, 0.0),
        "AsyncProcessingCancelled": 1.0,
        "AsyncProcessingFailed": 1.0,
    }
    assert {status: count for status, (count, _) in durations(probe).items()} == {"CANCELLED": 1, "FAILED": 1}


async def test_a_repeated_finalize_of_the_same_run_says_so_and_counts_nothing(
    probe: MetricsProbe, repo: JobRepository, clean_db: AsyncEngine
) -> None:
    """A finalize attempt that committed but whose completion was lost (an outage, a start-to-close
    timeout) is retried: the retry is refused yet marked ``repeated``, so the run ends as it meant to."""
    process_id = await processing_job(repo, clean_db)
    timeout = FinalizeRequest(
        process_id=process_id, status=ProcessingStatus.TIMEOUT, error_code="TIMEOUT_ERROR"
    )
    assert (await repo.finalize(timeout, RUN_ID, current_run)).applied
    again = await repo.finalize(timeout, RUN_ID, current_run)
    assert (again.applied, again.repeated) == (False, True)
    other = timeout.model_copy(update={"status": ProcessingStatus.FAILED, "error_code": "AI_ERROR"})
    assert (await repo.finalize(other, RUN_ID, current_run)).repeated is False
    assert terminal_counts(probe) == {**dict.fromkeys(TERMINAL, 0.0), "AsyncProcessingTimeout": 1.0}
