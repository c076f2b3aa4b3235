"""Several processes against one Temporal and one PostgreSQL (temporal-notes section 8), as real OS processes:
two `python worker.py` and two uvicorn APIs. 100 jobs spread over both workers, one worker is SIGKILLed
mid-run and every job still completes exactly once; the rate limit is one counter across both APIs; an
event stream is served by either API."""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from db.repository import JobRepository
from settings import Settings
from tests.support.servers import free_ports
from tests.support.services import Service, Services, SseReader, auth, start_job

JOBS = 100
USERS = 10
READ_LIMIT = 20
FINISH_WITHIN = 180.0


def process_ids(service: Service, to_status: str) -> set[str]:
    return {
        line["processId"]
        for line in service.events("state_transition")
        if line.get("toStatus") == to_status and line.get("pid") == service.pid
    }


def in_hand(worker: Service) -> set[str]:
    """Jobs this worker moved to PROCESSING and has not completed (according to its own log)."""
    return process_ids(worker, "PROCESSING") - process_ids(worker, "COMPLETED")


async def wait_until(condition: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within:g} s: {what}")
        await asyncio.sleep(0.3)


async def statuses(repo: JobRepository) -> dict[str, str]:
    async with repo.engine.connect() as conn:
        rows = await conn.execute(text("SELECT id::text, status::text FROM processing_states"))
        return {row[0]: row[1] for row in rows}


async def test_two_workers_and_two_apis_share_jobs_limits_and_streams_and_survive_a_killed_worker(
    repo: JobRepository, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    base = make_settings(
        ai_offline_latency_ms=500,
        heartbeat_timeout_seconds=10,  # a killed worker's AI calls are retried elsewhere 10 s later
        rate_limit_write_per_minute=1000,
        rate_limit_read_per_minute=READ_LIMIT,
        db_pool_size=4,  # the APIs' pools; the workers get more (see below)
        sse_poll_interval_ms=200,
    )
    # Connection budget: 2 workers x (10 + 10 overflow) + 2 APIs x (4 + 4) + the tests' own pool (20)
    # stay under the server's 100. A starved worker pool stalls generate_unit before its first heartbeat.
    metrics_ports = free_ports(2)
    worker_settings = [
        base.model_copy(update={"metrics_enabled": True, "metrics_port": port, "db_pool_size": 10})
        for port in metrics_ports
    ]
    # Untraced: with coverage measuring them, the loaded 2-core machine starved the workers' heartbeats.
    with Services(tmp_path, measured=False) as services:
        started: list[Any] = await asyncio.gather(
            *(services.worker(f"worker-{i}", settings) for i, settings in enumerate(worker_settings)),
            services.api("api-0", base),
            services.api("api-1", base),
        )
        workers: list[Service] = started[:2]
        api_processes = [process for process, _ in started[2:]]
        apis = [url for _, url in started[2:]]
        async with httpx.AsyncClient(timeout=30) as http:
            # Each worker serves its own /metrics: one METRICS_PORT per process on a shared host.
            for port in metrics_ports:
                assert (await http.get(f"http://127.0.0.1:{port}/metrics")).status_code == 200

            headers = [auth(f"scale-user-{i}", base) for i in range(USERS)]
            first = await start_job(http, apis[0], headers[0])
            streams = [SseReader(http, f"{api}/api/ai/async/events/{first}", headers[0]) for api in apis]
            gate = asyncio.Semaphore(8)

            async def submit(api: str, auth_headers: dict[str, str]) -> str:
                async with gate:
                    return await start_job(http, api, auth_headers)

            pairs = zip(itertools.cycle(apis), itertools.cycle(headers), strict=False)
            submitting = asyncio.gather(*(submit(api, h) for api, h in itertools.islice(pairs, JOBS - 1)))

            def holding() -> list[Service]:
                """Workers that have completed a job and hold others: either may be the one to kill."""
                return [w for w in workers if process_ids(w, "COMPLETED") and len(in_hand(w)) >= 2]

            await wait_until(lambda: bool(holding()), 90, "a worker completes a job while holding others")
            doomed = holding()[0]
            survivor = next(w for w in workers if w is not doomed)
            doomed.signal(signal.SIGKILL)
            assert await doomed.exit_code(within=10) == -signal.SIGKILL
            at_kill = await statuses(repo)  # a commit may precede its log line when the kill lands
            orphans = {job for job in in_hand(doomed) if at_kill[job] != "COMPLETED"}

            jobs = {first, *await submitting}
            assert len(jobs) == JOBS

            async def all_done() -> bool:
                current = await statuses(repo)
                return all(current.get(job) not in (None, "PENDING", "PROCESSING") for job in jobs)

            deadline = time.monotonic() + FINISH_WITHIN
            while not await all_done():
                assert time.monotonic() < deadline, "jobs still running after the worker was killed"
                await asyncio.sleep(0.5)
            frames = await asyncio.gather(*(asyncio.wait_for(s.task, 30) for s in streams))

            rate_limited = await read_until_limited(http, apis, auth("scale-reader", base))

    final = await statuses(repo)
    assert {final[job] for job in jobs} == {"COMPLETED"}
    await assert_completed_exactly_once(repo, jobs)

    # Both workers ran jobs; those the killed one held were finished by the other.
    assert process_ids(doomed, "COMPLETED") and process_ids(survivor, "COMPLETED")
    assert orphans and orphans <= process_ids(survivor, "COMPLETED")
    # Both APIs took jobs, and either one streams the same events to the end.
    assert all(process.events("job_accepted") for process in api_processes)
    ids = [[(f.get("id"), f.get("event")) for f in stream if "id" in f] for stream in frames]
    assert ids[0] == ids[1] and ids[0][-1][1] == "COMPLETED"
    assert rate_limited == READ_LIMIT


async def read_until_limited(http: httpx.AsyncClient, apis: list[str], headers: dict[str, str]) -> int:
    """Alternate reads between the APIs until one answers 429; how many were allowed (one shared window)."""
    for allowed in range(2 * READ_LIMIT):
        response = await http.get(f"{apis[allowed % 2]}/api/ai/async/history", headers=headers)
        if response.status_code == 429:
            other = await http.get(f"{apis[(allowed + 1) % 2]}/api/ai/async/history", headers=headers)
            assert other.status_code == 429, "the other API must refuse too"
            return allowed
        assert response.status_code == 200, response.text
        assert int(response.headers["X-RateLimit-Remaining"]) == READ_LIMIT - allowed - 1
    raise AssertionError("never rate limited")


async def assert_completed_exactly_once(repo: JobRepository, jobs: set[str]) -> None:
    async with repo.engine.connect() as conn:
        events = await conn.execute(
            text(
                "SELECT process_id::text, count(*) FILTER (WHERE type = 'COMPLETED'), "
                "count(*) FILTER (WHERE type = 'UNIT_SUCCEEDED') FROM processing_events "
                "WHERE process_id::text = ANY(:ids) GROUP BY process_id"
            ),
            {"ids": list(jobs)},
        )
        assert {(row[1], row[2]) for row in events} == {(1, 1)}
        subgoals = await conn.execute(
            text(
                "SELECT count(s.id) FROM processing_states p JOIN sub_goals s ON s.goal_id = p.target_id "
                "WHERE p.id::text = ANY(:ids) GROUP BY p.id"
            ),
            {"ids": list(jobs)},
        )
        counts = [row[0] for row in subgoals]
    assert len(counts) == JOBS and set(counts) == {8}
