"""What jobs cost the machine: PostgreSQL commits, Temporal RPCs and CPU time, read before and after a run.

- commits: ``xact_commit`` of the database in ``pg_stat_database`` (every process's transactions, read-only
  ones included). An idle backend publishes its counters up to 10 s late, so a reading first waits
  BENCH_PG_STATS_WAIT seconds (11; the smoke runs set 0); the reading's own query is one commit, taken off.
- writes: transaction ids consumed (``pg_current_snapshot``), i.e. the transactions that wrote — exact
  at once, and the ones that cost a WAL flush.
- RPCs: the dev server's ``service_requests`` counter for its frontend in the ``default`` namespace, by
  operation: every call of every client (API, worker, this process), long polls included.
- CPU: user + system seconds of named process groups (this process, a worker process, the Temporal server,
  PostgreSQL with its backends, exited ones included).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpx
import psutil
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

STATS_WAIT_ENV = "BENCH_PG_STATS_WAIT"
_REQUESTS = re.compile(r"^service_requests\{(?P<labels>[^}]*)\} (?P<value>\S+)$", re.MULTILINE)
_LABEL = re.compile(r'(\w+)="([^"]*)"')

ProcessGroup = Callable[[], float]


def process_cpu(pid: int | None = None) -> ProcessGroup:
    """CPU seconds of one process (``None``: this one)."""
    process = psutil.Process(pid)

    def read() -> float:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            return 0.0
        return float(times.user + times.system)

    return read


def tree_cpu(pid: int) -> ProcessGroup:
    """CPU seconds of a process and its children, those it has reaped included (PostgreSQL's backends)."""
    parent = psutil.Process(pid)

    def read() -> float:
        total = 0.0
        try:
            times = parent.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
            children = parent.children()
        except psutil.NoSuchProcess:
            return total
        for child in children:
            try:
                times = child.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return float(total)

    return read


@dataclass(frozen=True)
class Reading:
    commits: int
    xid: int
    rpcs: Counter[str]
    cpu: dict[str, float]


@dataclass(frozen=True)
class PerJob:
    """Costs divided by the number of jobs of the run."""

    commits: float
    writes: float
    rpcs: float
    rpcs_by_operation: dict[str, float]
    cpu_ms: dict[str, float]

    def lines(self) -> list[str]:
        ops = ", ".join(f"{op} {n:.1f}" for op, n in self.rpcs_by_operation.items())
        cpu = ", ".join(f"{name} {ms:.1f}" for name, ms in self.cpu_ms.items())
        return [
            f"  PostgreSQL commits/job {self.commits:.2f} ({self.writes:.2f} of them writing)",
            f"  Temporal RPCs/job {self.rpcs:.2f} ({ops})",
            f"  CPU ms/job: {cpu}",
        ]


class Meter:
    def __init__(self, engine: AsyncEngine, metrics_url: str, groups: Mapping[str, ProcessGroup]) -> None:
        self._engine = engine
        self._metrics_url = metrics_url
        self._groups = dict(groups)

    async def read(self) -> Reading:
        await asyncio.sleep(float(os.environ.get(STATS_WAIT_ENV, "11")))
        query = text(
            "SELECT xact_commit, pg_snapshot_xmax(pg_current_snapshot())::text::bigint "
            "FROM pg_stat_database WHERE datname = current_database()"
        )
        async with self._engine.connect() as conn:
            commits, xid = (await conn.execute(query)).one()
            await conn.commit()
        async with httpx.AsyncClient(timeout=10) as http:
            page = (await http.get(self._metrics_url)).text
        rpcs: Counter[str] = Counter()
        for match in _REQUESTS.finditer(page):
            labels = dict(_LABEL.findall(match["labels"]))
            if labels.get("service_name") == "frontend" and labels.get("namespace") == "default":
                rpcs[labels["operation"]] += int(float(match["value"]))
        return Reading(int(commits), int(xid), rpcs, {name: read() for name, read in self._groups.items()})


def per_job(before: Reading, after: Reading, jobs: int) -> PerJob:
    # The later reading's own query committed once (and was not yet counted by the earlier one).
    commits = after.commits - before.commits - 1
    calls = after.rpcs - before.rpcs
    return PerJob(
        commits=commits / jobs,
        writes=(after.xid - before.xid) / jobs,
        rpcs=sum(calls.values()) / jobs,
        rpcs_by_operation={op: n / jobs for op, n in calls.most_common()},
        cpu_ms={name: (after.cpu[name] - before.cpu[name]) * 1000 / jobs for name in after.cpu},
    )
