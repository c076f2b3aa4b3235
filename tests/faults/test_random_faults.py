"""200 jobs with offline AI faults on 10 % of their AI calls, drawn at random (issue 7).

180 SUBGOAL jobs (one call each) and 20 goal-scope ACTION jobs over 8 subgoals (one call per subgoal):
a tenth of the SUBGOAL jobs and a tenth of the goal-scope units get one of the offline provider's
documented directives (ai/offline.py, docs/architecture.md), dealt so that every directive occurs, in an
order drawn with a fixed seed (``FAULT_SEED`` draws another). Every job must end in exactly the state its
faults imply (COMPLETED, FAILED with the right code, PARTIAL_FAILURE, TIMEOUT), its event log must hold
exactly the events they imply, and nothing may be saved twice."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest_asyncio
from sqlalchemy import text
from temporalio.client import Client, WorkflowFailureError

from db.engine import make_engine
from db.repository import JobRepository
from domain.enums import ProcessingType, TargetType
from settings import Settings
from tests.support.api import seed_tree
from tests.support.jobs import (
    Handle,
    make_user,
    rows,
    running_worker,
    start_job,
    start_subgoal_job,
    subgoal_params,
)
from tests.support.outcomes import assert_event_log, assert_subgoals_saved_once, jobs_of

SEED = int(os.environ.get("FAULT_SEED", "20261201"))
SUBGOAL_JOBS, GOAL_JOBS, UNITS = 180, 20, 8
# The job deadline, which ends a job whose AI call hangs: far beyond what a healthy job takes here even on
# a loaded 2-core machine (a short generate_unit timeout would time out healthy calls there too).
DEADLINE = 30
IN_FLIGHT = 12  # jobs running at once: every fault overlaps healthy jobs, and the worker keeps up
FINISH_WITHIN = 600.0


@dataclass(frozen=True)
class Effect:
    """What a directive does to the unit whose title holds it: failed attempts or outputs that are tried
    again (one ATTEMPT_FAILED each), then success, or failure for good with ``code`` (and ``details``, as a
    SUBGOAL job stores them), or no answer."""

    retries: int = 0
    code: str | None = None
    details: dict[str, Any] | None = None
    hangs: bool = False


SEVEN_SUBGOALS = {"violations": [{"item": None, "rule": "SG_COUNT", "limit": "8", "actual": 7}]}
# A transient fault once is retried; four times it uses up the 4 attempts. A bad output once is
# regenerated; three times it fails the unit. A call that hangs is cut by the job deadline.
EFFECTS = {
    "server_error": Effect(retries=1),
    "server_error:4": Effect(retries=3, code="AI_ERROR"),
    "throttle": Effect(retries=1),
    "throttle:4": Effect(retries=3, code="AI_ERROR"),
    "rejected": Effect(code="AI_REQUEST_REJECTED"),
    "invalid_json": Effect(retries=1),
    "invalid_json:3": Effect(retries=2, code="AI_RESPONSE_INVALID"),
    "bad_quality": Effect(retries=1),
    "bad_quality:3": Effect(retries=2, code="QUALITY_ERROR", details=SEVEN_SUBGOALS),
    "hang": Effect(hangs=True),
    "deaf": Effect(),
}
# A rejection in one goal-scope unit also stops the units that have not started yet, a number that
# depends on timing, so goal-scope units draw from the others.
UNIT_DIRECTIVES = sorted(set(EFFECTS) - {"rejected"})
HEALTHY = Effect()


@dataclass
class Job:
    scope: str  # "SUBGOAL" (target scope, 1 unit) or "GOAL" (goal-scope ACTION job, UNITS units)
    faults: list[str | None]  # the directive of each unit, by ordinal
    process_id: uuid.UUID = field(default_factory=uuid.uuid4)


@dataclass(frozen=True)
class Outcome:
    status: str
    code: str | None
    events: Counter[str]
    details: dict[str, Any] | None = None


def expected(job: Job) -> Outcome:
    """The end state, error details and events that the job's faults imply (spec 6.5)."""
    effects = [EFFECTS[f] if f else HEALTHY for f in job.faults]
    failed = [e for e in effects if e.code]
    hung = sum(e.hangs for e in effects)
    succeeded = len(effects) - len(failed) - hung
    events = Counter(
        CREATED=1,
        STARTED=1,
        ATTEMPT_FAILED=sum(e.retries for e in effects),
        UNIT_SUCCEEDED=succeeded,
        UNIT_FAILED=len(failed),
        PROGRESS=int(job.scope == "SUBGOAL" and succeeded > 0),  # the target-scope 50 % checkpoint
    )
    details: dict[str, Any] | None = None
    if hung:
        status, code, details = "TIMEOUT", "TIMEOUT_ERROR", {"timeoutKind": "JOB_DEADLINE"}
    elif not failed:
        status, code = "COMPLETED", None
    elif succeeded and job.scope == "GOAL":
        status, code = "FAILED", "PARTIAL_FAILURE"
        details = {"succeeded": succeeded, "failed": len(failed), "notAttempted": 0}
    else:  # the first failed unit's code (no directive here fails a unit with TIMEOUT_ERROR)
        status, code, details = "FAILED", failed[0].code, failed[0].details
    events[status] += 1
    return Outcome(status, code, events, details)


def deal(rng: random.Random, directives: Sequence[str], count: int) -> list[str]:
    """``count`` directives, each of ``directives`` as often as the others (±1), in random order."""
    dealt: list[str] = []
    while len(dealt) < count:
        dealt += rng.sample(directives, len(directives))
    return dealt[:count]


def draw(rng: random.Random) -> list[Job]:
    """The jobs, with a fault on a tenth of the SUBGOAL jobs and on a tenth of the goal-scope units."""
    subgoal_jobs = [Job("SUBGOAL", [None]) for _ in range(SUBGOAL_JOBS)]
    goal_jobs = [Job("GOAL", [None] * UNITS) for _ in range(GOAL_JOBS)]
    chosen = rng.sample(subgoal_jobs, SUBGOAL_JOBS // 10)
    for job, directive in zip(chosen, deal(rng, sorted(EFFECTS), len(chosen)), strict=True):
        job.faults = [directive]
    units = rng.sample([(job, u) for job in goal_jobs for u in range(UNITS)], GOAL_JOBS * UNITS // 10)
    for (job, unit), directive in zip(units, deal(rng, UNIT_DIRECTIVES, len(units)), strict=True):
        job.faults[unit] = directive
    jobs = subgoal_jobs + goal_jobs
    rng.shuffle(jobs)
    return jobs


@pytest_asyncio.fixture
async def worker_repo(database_url: str) -> AsyncIterator[JobRepository]:
    """The worker's own connection pool, as its process would have."""
    engine = make_engine(database_url, pool_size=20)
    yield JobRepository(engine)
    await engine.dispose()


async def start(repo: JobRepository, client: Client, settings: Settings, user: uuid.UUID, job: Job) -> Handle:
    """Start ``job`` with the API's own code, its directives in the titles its AI calls read."""
    if job.scope == "SUBGOAL":
        directive = f"#fault:subgoal:{job.faults[0]} " if job.faults[0] else ""
        job.process_id, handle = await start_subgoal_job(
            repo, client, settings, user, subgoal_params(f"{directive}TypeScriptのエキスパートになる")
        )
        return handle
    tree = await seed_tree(repo.engine, user, subgoals=UNITS)
    async with repo.engine.begin() as conn:
        for subgoal, directive in zip(tree.subgoal_ids, job.faults, strict=True):
            if directive:
                await conn.execute(
                    text("UPDATE sub_goals SET title = title || :d WHERE id = :id"),
                    {"d": f" #fault:action:{directive}", "id": subgoal},
                )
    job.process_id, handle = await start_job(
        repo,
        client,
        settings,
        user,
        ProcessingType.ACTION_GENERATION,
        TargetType.GOAL,
        tree.goal_id,
        {"goalId": str(tree.goal_id)},
        units=tree.subgoal_ids,
    )
    return handle


async def assert_outcome(repo: JobRepository, job: Job) -> None:
    want = expected(job)
    context = (job.scope, job.faults, job.process_id)
    row = await assert_event_log(repo, job.process_id, want.events, context)
    assert (row.status, row.error_code) == (want.status, want.code), context
    assert (row.error or {}).get("details") == want.details, context
    if job.scope == "SUBGOAL":
        if want.status == "COMPLETED":
            await assert_subgoals_saved_once(repo, job.process_id)
        else:
            assert not await rows(repo, "SELECT 1 FROM goals WHERE id=:g", g=row.target_id), context
        return
    units = await rows(
        repo,
        "SELECT unit_id, status FROM processing_units WHERE process_id=:p ORDER BY ordinal",
        p=job.process_id,
    )
    for unit, directive in zip(units, job.faults, strict=True):
        effect = EFFECTS[directive] if directive else HEALTHY
        status = "FAILED" if effect.code else "PENDING" if effect.hangs else "SUCCEEDED"
        assert unit.status == status, (context, unit)
        saved = await rows(
            repo, "SELECT position FROM actions WHERE sub_goal_id=:s ORDER BY position", s=unit.unit_id
        )
        assert [a.position for a in saved] == (list(range(8)) if status == "SUCCEEDED" else []), context


async def test_two_hundred_jobs_with_random_ai_faults_end_as_their_faults_imply(
    repo, client, make_settings, worker_repo
) -> None:
    jobs = draw(random.Random(SEED))
    settings = make_settings(
        ai_offline_latency_ms=50, job_deadline_seconds=DEADLINE, goal_scope_deadline_seconds=DEADLINE
    )
    user = await make_user(repo.engine)
    window = asyncio.Semaphore(IN_FLIGHT)

    async def run(job: Job) -> None:
        async with window:
            handle = await start(repo, client, settings, user, job)
            with contextlib.suppress(WorkflowFailureError):
                await handle.result()

    async with running_worker(client, settings, worker_repo):
        await asyncio.wait_for(asyncio.gather(*(run(job) for job in jobs)), FINISH_WITHIN)
    for job in jobs:
        await assert_outcome(repo, job)
    assert sorted(await jobs_of(repo, user)) == sorted(j.process_id for j in jobs)
