"""Load generators for the API benchmarks.

- ``closed_loop``: a fixed number of requests in flight for a fixed time. It uses ``wrk`` (C, one thread)
  when it is on PATH, so that the load generator does not eat the cores it measures; otherwise a plain
  asyncio client in this process (slower: say so when comparing).
- ``open_loop`` / ``burst``: requests sent at fixed instants whatever the answers (so a slow server cannot
  slow the sender down and hide its own latency), each latency measured from its planned send time.
- ``timed``: the same closed loop for any coroutine, the floors' load.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.services import percentiles

WRK_REPORT = Path(__file__).with_name("wrk_report.lua")


@dataclass(frozen=True, slots=True)
class Throughput:
    requests: int
    seconds: float
    p95_ms: float
    failed: int  # answers other than the expected status, or socket errors
    generator: str

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds


def p95(latencies_ms: list[float]) -> float:
    return percentiles(latencies_ms)[1]


async def timed(one: Callable[[], Awaitable[None]], seconds: float, concurrency: int) -> Throughput:
    """``concurrency`` lanes each calling ``one`` back to back for ``seconds``."""
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def lane() -> None:
        while time.perf_counter() < stop:
            started = time.perf_counter()
            await one()
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return Throughput(len(latencies), time.perf_counter() - started, p95(latencies), 0, "asyncio")


async def closed_loop(
    base_url: str, path: str, headers: Mapping[str, str], seconds: float, concurrency: int
) -> Throughput:
    """GET ``path`` with ``concurrency`` connections for ``seconds``; anything but a 2xx counts as failed."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return await _closed_loop_httpx(base_url, path, headers, seconds, concurrency)
    args = [wrk, "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--timeout", "30s"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    run = [*args, "-s", str(WRK_REPORT), base_url + path]
    out = await asyncio.to_thread(subprocess.run, run, capture_output=True, text=True, check=True)
    line = next(row for row in out.stdout.splitlines() if row.startswith("RESULT "))
    requests, duration_us, p95_us, bad_status, socket_errors = (int(v) for v in line.split()[1:])
    return Throughput(requests, duration_us / 1e6, p95_us / 1000, bad_status + socket_errors, "wrk")


async def _closed_loop_httpx(
    base_url: str, path: str, headers: Mapping[str, str], seconds: float, concurrency: int
) -> Throughput:
    failed = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, headers=dict(headers), limits=limits, timeout=30) as http:

        async def one() -> None:
            nonlocal failed
            if not (await http.get(path)).is_success:
                failed += 1

        result = await timed(one, seconds, concurrency)
    return Throughput(result.requests, result.seconds, result.p95_ms, failed, "httpx")


@dataclass(frozen=True, slots=True)
class Sent:
    """One request of an open-loop or burst run: its status and latency from its planned send time."""

    status: int
    latency_ms: float


Send = Callable[[], Awaitable[int]]  # sends one request, returns its HTTP status (0: no answer)


async def open_loop(send: Send, rate: float, seconds: float) -> list[Sent]:
    """Send ``rate`` requests a second for ``seconds``, at fixed instants, and wait for every answer."""
    count = max(1, round(rate * seconds))
    return await _scheduled(send, [i / rate for i in range(count)])


async def burst(send: Send, count: int) -> list[Sent]:
    """``count`` requests planned for the same instant."""
    return await _scheduled(send, [0.0] * count)


async def _scheduled(send: Send, offsets: list[float]) -> list[Sent]:
    start = time.perf_counter() + 0.05

    async def one(offset: float) -> Sent:
        planned = start + offset
        await asyncio.sleep(max(0.0, planned - time.perf_counter()))
        try:
            status = await send()
        except httpx.HTTPError:
            status = 0
        return Sent(status, (time.perf_counter() - planned) * 1000)

    return list(await asyncio.gather(*(one(o) for o in offsets)))


@dataclass(frozen=True, slots=True)
class Latencies:
    """An open-loop or burst run: how many were sent and answered as expected, latency percentiles (ms)."""

    sent: int
    accepted: int
    p50_ms: float
    p95_ms: float
    max_ms: float

    @classmethod
    def of(cls, sent: list[Sent], expected: int) -> Latencies:
        p50, p95_ms, worst = percentiles([s.latency_ms for s in sent])
        return cls(len(sent), sum(1 for s in sent if s.status == expected), p50, p95_ms, worst)
