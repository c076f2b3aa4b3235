"""A database outage never fails a job or discards generated output (spec 6.7, issue 7.1).

The worker reaches PostgreSQL through a loopback proxy whose link the test cuts: its connections break
and new ones are refused, as when the server is down. Each outage lasts 12 s, longer than the
4-attempt budget of the AI calls (1 + 2 + 4 s of backoff) that the state writes used to share.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.engine import make_url
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError

from db.engine import make_engine
from db.repository import JobRepository
from tests.support.jobs import (
    events,
    make_user,
    rows,
    running_worker,
    start_subgoal_job,
    subgoal_params,
    wait_status,
)
from tests.support.tcp_proxy import CuttableProxy

OUTAGE_SECONDS = 12


@pytest_asyncio.fixture
async def proxy(database_url: str) -> AsyncIterator[CuttableProxy]:
    url = make_url(database_url)
    link = CuttableProxy(url.host or "127.0.0.1", url.port or 5432)
    await link.start()
    yield link
    await link.stop()


@pytest_asyncio.fixture
async def worker_repo(database_url: str, proxy: CuttableProxy) -> AsyncIterator[JobRepository]:
    """The worker's repository, connected through the proxy."""
    engine = make_engine(
        make_url(database_url).set(host="127.0.0.1", port=proxy.port).render_as_string(False)
    )
    yield JobRepository(engine)
    await engine.dispose()


async def outage(proxy: CuttableProxy) -> None:
    proxy.sever()
    await asyncio.sleep(OUTAGE_SECONDS)
    proxy.restore()


def calls_made(caplog: pytest.LogCaptureFixture, process_id: Any) -> int:
    return sum(
        1
        for r in caplog.records
        if getattr(r, "event", None) == "ai_generation_completed"
        and getattr(r, "processId", None) == str(process_id)
    )


async def test_outage_while_the_ai_call_runs_keeps_its_output(
    repo, client, make_settings, worker_repo, proxy, caplog
) -> None:
    caplog.set_level(logging.INFO)
    settings = make_settings(ai_offline_latency_ms=2_000)
    user = await make_user(repo.engine)
    async with running_worker(client, settings, worker_repo):
        process_id, handle = await start_subgoal_job(repo, client, settings, user)
        await wait_status(repo, process_id, "PROCESSING")
        await outage(proxy)  # the call's output comes back into the outage; its progress write waits
        await handle.result()
    job = await repo.get_job(process_id)
    assert job is not None and job.status == "COMPLETED"
    assert job.result["metadata"]["generationAttempts"] == 1 and calls_made(caplog, process_id) == 1
    assert "ATTEMPT_FAILED" not in [e.type for e in await events(repo, process_id)]
    assert len(await rows(repo, "SELECT 1 FROM sub_goals WHERE goal_id=:g", g=job.target_id)) == 8


async def test_outage_before_the_job_starts_is_waited_out(
    repo, client, make_settings, worker_repo, proxy
) -> None:
    settings = make_settings()
    user = await make_user(repo.engine)
    async with running_worker(client, settings, worker_repo):
        proxy.sever()  # mark_processing (a local activity) outlives its 10 s start-to-close and is retried
        process_id, handle = await start_subgoal_job(repo, client, settings, user)
        await asyncio.sleep(OUTAGE_SECONDS)
        assert (await repo.get_job(process_id)).status == "PENDING"
        proxy.restore()
        await handle.result()
    job = await repo.get_job(process_id)
    assert job is not None and job.status == "COMPLETED"


async def test_deadline_during_an_outage_writes_timeout_once_the_database_is_back(
    repo, client, make_settings, worker_repo, proxy
) -> None:
    settings = make_settings(job_deadline_seconds=3)
    user = await make_user(repo.engine)
    async with running_worker(client, settings, worker_repo):
        process_id, handle = await start_subgoal_job(
            repo, client, settings, user, subgoal_params("#fault:subgoal:hang 学習計画")
        )
        await wait_status(repo, process_id, "PROCESSING")
        await outage(proxy)
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
    assert isinstance(failure.value.cause, ApplicationError) and failure.value.cause.type == "TIMEOUT_ERROR"
    job = await repo.get_job(process_id)
    assert job is not None and job.status == "TIMEOUT"
    assert job.error["details"] == {"timeoutKind": "JOB_DEADLINE"}


async def test_a_lasting_database_error_keeps_the_four_attempt_budget_and_fails_the_unit(
    repo, client, make_settings, worker_for
) -> None:
    """Not an outage: a statement the database refuses every time (here a trigger) is DATABASE_ERROR,
    retried 4 times under the state writes' unlimited policy, then the unit and the job fail (7.1, 7.7)."""
    settings = make_settings(job_deadline_seconds=60)
    user = await make_user(repo.engine)
    goal = uuid.uuid4()
    async with repo.engine.begin() as conn:
        await conn.execute(
            text(
                "CREATE FUNCTION refuse_subgoals() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF NEW.goal_id = '{goal}'::uuid THEN RAISE EXCEPTION 'refused' USING ERRCODE = '23514'; "
                "END IF; RETURN NEW; END $$"
            )
        )
        trigger = "FOR EACH ROW EXECUTE FUNCTION refuse_subgoals()"
        await conn.execute(text(f"CREATE TRIGGER refuse BEFORE INSERT ON sub_goals {trigger}"))
    try:
        async with worker_for(settings):
            process_id, handle = await start_subgoal_job(repo, client, settings, user, target_id=goal)
            with pytest.raises(WorkflowFailureError):
                await handle.result()
    finally:
        async with repo.engine.begin() as conn:
            await conn.execute(text("DROP TRIGGER refuse ON sub_goals"))
            await conn.execute(text("DROP FUNCTION refuse_subgoals()"))
    job = await repo.get_job(process_id)
    assert job is not None and (job.status, job.error_code) == ("FAILED", "DATABASE_ERROR")
    retried = [e.payload for e in await events(repo, process_id) if e.type == "ATTEMPT_FAILED"]
    assert [(p["activity"], p["attempt"], p["errorCode"]) for p in retried] == [
        ("persist_unit", n, "DATABASE_ERROR") for n in (1, 2, 3)
    ]
    units = await rows(repo, "SELECT status, error FROM processing_units WHERE process_id=:p", p=process_id)
    assert [(u.status, u.error["code"]) for u in units] == [("FAILED", "DATABASE_ERROR")]
