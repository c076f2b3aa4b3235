"""Benchmark: POST /api/ai/async/generate, open loop and in a burst, while the started jobs really run.

An embedded PostgreSQL and a file-backed Temporal dev server (as `mandala dev` runs them), one worker
process (`python worker.py`, shipped defaults, offline AI taking ``--ai-latency-ms``) and the API as its
own uvicorn process (``--api-workers`` processes), with authentication and the shared rate limit on (a
write limit the benchmark never reaches). On the same cores, the worker runs the jobs the starts create:
starts compete with them for CPU, as they would under `mandala dev`.

- **open loop**: ``--rate`` SUBGOAL starts a second for ``--seconds``, each sent at its planned instant
  whatever the earlier answers; latency from that instant to the answer (target p95 ≤ 50 ms at 50/s).
- **floor**: the same starts without HTTP, authentication, validation or rate limiting: the repository's
  insert of the row, its unit and its CREATED event, then the StartWorkflowExecution call, at the same
  rate from this process.
- **burst**: ``--burst`` starts planned for the same instant, with an idle worker (target: all 202,
  p95 ≤ 1 s); then the time until every job of the burst has finished.

Each run does the burst, then the floor's open loop, then the API's, each after every earlier job has
finished; at 50/s an open loop starts more jobs than one worker finishes on this machine, so it soon
runs beside a saturated worker, as the StartWorkflowExecution calls compete with the worker's own
calls on the same Temporal server.

    .venv/bin/python -m bench.start_latency [--rate 50] [--seconds 30] [--burst 200] [--runs 1]
    .venv/bin/python -m bench.start_latency --smoke     # a short check that it works (CI)
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from api.launch import new_job
from api.temporal_gateway import start_generation
from bench.http_load import Latencies, burst, open_loop
from bench.report import Figure, parse_args, publish, record
from bench.services import GENERATE, Workers, api, quiet_worker_env, services, subgoal_job
from db.engine import make_engine
from db.models import ProcessingState, User
from db.repository import JobRepository
from db.users import Identity
from domain.enums import ACTIVE_STATUSES, ProcessingType, TargetType
from settings import Settings
from temporal_client import connect_temporal

NAME = "start_latency"
ACCEPTED = 202


@dataclass(frozen=True, slots=True)
class Scenario:
    """The command line's values: the load (``rate``/s for ``seconds``, ``burst`` at once, ``runs`` times),
    the API's processes and the worker's offline AI latency."""

    rate: float
    seconds: float
    burst: int
    runs: int
    api_workers: int
    ai_latency_ms: int


@dataclass(frozen=True, slots=True)
class StartReport:
    scenario: Scenario
    floor: Latencies  # medians over the runs (counts: the sum)
    open_loop: Latencies
    burst: Latencies
    burst_done_seconds: float  # from the burst's send instant until its last job had finished

    def lines(self) -> list[str]:
        s = self.scenario
        rows = [
            (f"floor, {s.rate:g}/s", self.floor),
            (f"API, {s.rate:g}/s open loop", self.open_loop),
            (f"API, {self.burst.sent} at once", self.burst),
        ]
        out = [
            f"rate={s.rate:g}/s for {s.seconds:g} s, runs={s.runs}, api_workers={s.api_workers}, "
            f"worker AI latency {s.ai_latency_ms} ms (medians)",
            f"{'':24} {'sent':>6} {'202':>6} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}",
        ]
        for name, r in rows:
            out.append(f"{name:24} {r.sent:6} {r.accepted:6} {r.p50_ms:8.1f} {r.p95_ms:8.1f} {r.max_ms:8.1f}")
        out.append(f"burst: every job finished {self.burst_done_seconds:.1f} s after it was sent")
        return out

    def record_figures(self) -> None:
        """The summary figures, against issue 8's goals, for the runner (`python -m bench`)."""
        o, b, rate = self.open_loop, self.burst, self.scenario.rate
        for figure in (
            Figure(NAME, f"POST /generate p95, {rate:g}/s open loop", o.p95_ms, "ms", self.floor.p95_ms,
                   "≤ 50 ms", o.p95_ms <= 50 and o.accepted == o.sent),
            Figure(NAME, f"POST /generate p95, {b.sent} at once", b.p95_ms, "ms", None,
                   "all 202, ≤ 1 s", b.p95_ms <= 1000 and b.accepted == b.sent),
            Figure(NAME, f"{b.sent} at once: accepted", b.accepted, ""),
            Figure(NAME, f"{b.sent} at once: all finished after", self.burst_done_seconds, "s"),
        ):  # fmt: skip
            record(figure)


def _median(runs: list[Latencies]) -> Latencies:
    return Latencies(
        sent=sum(r.sent for r in runs),
        accepted=sum(r.accepted for r in runs),
        p50_ms=statistics.median(r.p50_ms for r in runs),
        p95_ms=statistics.median(r.p95_ms for r in runs),
        max_ms=statistics.median(r.max_ms for r in runs),
    )


class FloorStarts:
    """What a start costs without the HTTP API: the same insert and the same start RPC, from this process."""

    def __init__(self, settings: Settings, client: Client, repo: JobRepository, user_id: uuid.UUID) -> None:
        self._settings = settings
        self._client = client
        self._repo = repo
        self._user_id = user_id
        self._owner = Identity("", "bench")

    async def send(self) -> int:
        target = uuid.uuid4()
        job = new_job(
            self._settings,
            user_id=self._user_id,
            job_type=ProcessingType.SUBGOAL_GENERATION,
            params=subgoal_job()["params"],
            target_type=TargetType.GOAL,
            target_id=target,
            units=[(target, TargetType.GOAL)],
            request_id=None,
            target_is_new=True,
        )
        try:
            await self._repo.create_job(job)
            await start_generation(self._client, job.workflow_input(), self._settings, self._owner)
        except Exception:  # what the API would answer 503: counted, not fatal
            return 503
        return ACCEPTED


async def run(scenario: Scenario) -> StartReport:
    """Start the services, a worker and the API; measure floor, open loop and burst ``runs`` times each."""
    rate, seconds, burst_size = scenario.rate, scenario.seconds, scenario.burst
    async with services() as svc:
        settings = svc.settings()
        workers = Workers(svc, settings, quiet_worker_env(scenario.ai_latency_ms))
        workers.start()
        limits = httpx.Limits(max_connections=burst_size + 10, max_keepalive_connections=burst_size + 10)
        engine = make_engine(settings.database_url)  # the floor's pool: an API process's default
        try:
            await workers.polling(1)
            client = await connect_temporal(settings)
            async with api(settings, scenario.api_workers, limits) as http:

                async def start() -> int:
                    return (await http.post(GENERATE, json=subgoal_job())).status_code

                await burst(start, 10)  # warm up: connections, the user row, caches
                user = await _user_id(engine)
                floor = FloorStarts(settings, client, JobRepository(engine), user)
                floors, opens, bursts, done = [], [], [], []
                for _ in range(scenario.runs):
                    await _drained(engine)  # the burst meets an idle worker
                    sent_at = time.monotonic()
                    bursts.append(Latencies.of(await burst(start, burst_size), ACCEPTED))
                    done.append(await _drained(engine) - sent_at)
                    # Each open loop starts with an idle worker, which its own jobs soon saturate.
                    floors.append(Latencies.of(await open_loop(floor.send, rate, seconds), ACCEPTED))
                    await _drained(engine)
                    opens.append(Latencies.of(await open_loop(start, rate, seconds), ACCEPTED))
        finally:
            await engine.dispose()
            await asyncio.to_thread(workers.stop)
    return StartReport(
        scenario=scenario,
        floor=_median(floors),
        open_loop=_median(opens),
        burst=_median(bursts),
        burst_done_seconds=statistics.median(done),
    )


async def _user_id(engine: AsyncEngine) -> uuid.UUID:
    async with engine.connect() as conn:
        return (await conn.execute(select(User.id).where(User.subject == "bench"))).scalar_one()


async def _drained(engine: AsyncEngine, limit: float = 900.0) -> float:
    """Wait until no job is PENDING or PROCESSING (polled every 50 ms); the monotonic time it was seen."""
    active = select(func.count()).where(ProcessingState.status.in_(list(ACTIVE_STATUSES)))
    give_up = time.monotonic() + limit
    while time.monotonic() < give_up:
        async with engine.connect() as conn:
            if (await conn.execute(active)).scalar_one() == 0:
                return time.monotonic()
        await asyncio.sleep(0.05)
    raise RuntimeError(f"jobs still active after {limit:g} s")


def main(argv: Sequence[str] | None = None) -> StartReport:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rate", type=float, default=50.0, help="open-loop starts per second")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the open-loop run")
    parser.add_argument("--burst", type=int, default=200, help="starts sent at once")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--api-workers", type=int, default=2)
    parser.add_argument("--ai-latency-ms", type=int, default=2000)
    smoke = {"rate": 10.0, "seconds": 1.0, "burst": 10, "runs": 1, "ai_latency_ms": 0}
    args = parse_args(parser, argv, "a few starts: checks that it works", smoke)
    scenario = Scenario(args.rate, args.seconds, args.burst, args.runs, args.api_workers, args.ai_latency_ms)
    return publish(asyncio.run(run(scenario)))


if __name__ == "__main__":
    main()
