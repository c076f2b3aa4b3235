"""The API and the worker as real processes (what `mandala dev` runs), on the test PostgreSQL and Temporal.

Client tests drive them over HTTP on a real port: the `mandala` client commands as subprocesses, and the
web page in headless Chromium. The offline provider answers after ``AI_LATENCY_MS``, so jobs are seen
PROCESSING with moving progress; its fault directives are on.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from api.dev_tokens import issue_dev_token
from settings import DEV_JWT_SECRET
from tests.support.servers import REPO_ROOT, free_port

AI_LATENCY_MS = 300
START_TIMEOUT = 90.0


@dataclass(frozen=True)
class LiveStack:
    api_url: str
    env: dict[str, str]  # the environment of the API and the worker
    log_dir: Path

    def token(self, subject: str | None = None) -> str:
        return issue_dev_token(subject or f"user-{uuid.uuid4()}", DEV_JWT_SECRET)

    def client_env(self, token: str, **extra: str) -> dict[str, str]:
        """The environment of a `mandala` client command talking to this stack."""
        base = {k: v for k, v in os.environ.items() if not k.startswith(("MANDALA_", "LC_", "LANG"))}
        return (
            base
            | {
                "PYTHONPATH": str(REPO_ROOT),
                "MANDALA_API_URL": self.api_url,
                "MANDALA_TOKEN": token,
                "LANG": "C.UTF-8",
                "COLUMNS": "160",
            }
            | extra
        )

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-4000:] for p in sorted(self.log_dir.glob("*.log")))


@contextmanager
def live_stack(database_url: str, temporal_address: str, log_dir: Path) -> Iterator[LiveStack]:
    port = free_port()
    queue = f"live-{uuid.uuid4()}"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AI_", "JWT_", "AUTH_", "TEMPORAL_", "DATABASE_"))
    } | {
        "PYTHONPATH": str(REPO_ROOT),
        "PYTHONUNBUFFERED": "1",
        "APP_ENV": "development",
        "DATABASE_URL": database_url,
        "TEMPORAL_ADDRESS": temporal_address,
        "TEMPORAL_TASK_QUEUE": queue,
        "TEMPORAL_MAINTENANCE_TASK_QUEUE": f"{queue}-maintenance",
        "SCHEDULES_ENABLED": "false",
        "METRICS_ENABLED": "false",
        "AI_OFFLINE_LATENCY_MS": str(AI_LATENCY_MS),
        "AI_OFFLINE_FAULTS": "true",
        "RATE_LIMIT_READ_PER_MINUTE": "100000",
        "RATE_LIMIT_WRITE_PER_MINUTE": "100000",
        "SSE_POLL_INTERVAL_MS": "100",
        "LOG_LEVEL": "WARNING",
    }
    log_dir.mkdir(parents=True, exist_ok=True)
    commands = {
        "worker": [sys.executable, "worker.py"],
        "api": [
            *(sys.executable, "-m", "uvicorn", "api.asgi:app", "--port", str(port)),
            *("--no-access-log", "--timeout-graceful-shutdown", "2"),
        ],
    }
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for name, command in commands.items():
            with (log_dir / f"{name}.log").open("wb") as log:
                processes.append(
                    subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
                )
        stack = LiveStack(f"http://127.0.0.1:{port}", env, log_dir)
        _wait_ready(stack, processes)
        yield stack
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_ready(stack: LiveStack, processes: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in processes):
            raise RuntimeError(f"the API or the worker exited:\n{stack.logs()}")
        try:
            if httpx.get(f"{stack.api_url}/health/ready", timeout=3).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"the API was not ready within {START_TIMEOUT:g} s:\n{stack.logs()}")
