"""Real `python worker.py` and uvicorn API processes for multi-process and shutdown tests.

Each process gets exactly the environment a `Settings` object describes, writes its JSON log lines to a
file of its own, and is stopped (or killed) at teardown.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from api.dev_tokens import dev_token_for
from cli.processes import ManagedProcess
from settings import Settings
from tests.support.servers import REPO_ROOT, free_port

START_TIMEOUT = 120.0  # four processes importing at once on a loaded 2-core machine took over 60 s


def subgoal_request(title: str = "TypeScriptのエキスパートになる") -> dict[str, Any]:
    deadline = (datetime.now(UTC) + timedelta(days=120)).isoformat(timespec="seconds")
    params = {
        "title": title,
        "description": "型システムと設計を深く理解し、チームで指導できる水準になる",
        "deadline": deadline,
        "background": "フロントエンド開発を3年担当している",
        "constraints": "平日は1日1時間まで",
    }
    return {"type": "SUBGOAL_GENERATION", "params": params}


def auth(subject: str, settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {dev_token_for(settings, subject)}"}


async def start_job(http: httpx.AsyncClient, api_url: str, headers: dict[str, str]) -> str:
    """POST a SUBGOAL job to the API at ``api_url``; its processId."""
    response = await http.post(f"{api_url}/api/ai/async/generate", json=subgoal_request(), headers=headers)
    assert response.status_code == 202, response.text
    process_id: str = response.json()["data"]["processId"]
    return process_id


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment variables that make a fresh process build exactly ``settings``."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump(mode="json").items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, list):
            value = ",".join(value)
        env[name.upper()] = str(value)
    return env


def child_env(settings: Settings, measured: bool = True) -> dict[str, str]:
    """This environment with ``settings`` instead of any TEMPORAL_* variable; ``measured=False`` also drops
    the variable through which coverage traces child processes."""
    dropped = ("TEMPORAL_",) if measured else ("TEMPORAL_", "COVERAGE_PROCESS_")
    inherited = {k: v for k, v in os.environ.items() if not k.upper().startswith(dropped)}
    return {**inherited, **settings_env(settings), "PYTHONUNBUFFERED": "1"}


class Service:
    """One child process of ours; its stdout and stderr go to ``log_path``."""

    def __init__(
        self, name: str, args: list[str], settings: Settings, log_path: Path, measured: bool = True
    ) -> None:
        self.name = name
        self.log_path = log_path
        env = child_env(settings, measured)
        self.process = ManagedProcess(name, args, log_path=log_path, cwd=REPO_ROOT, env=env)

    @property
    def pid(self) -> int:
        return self.process.pid

    def lines(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far (anything else, e.g. a traceback, is skipped)."""
        out = []
        for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return out

    def events(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("event") == event]

    def tail(self, count: int = 40) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-count:])

    async def wait_for(
        self, event: str, within: float = START_TIMEOUT, where: Callable[[dict[str, Any]], bool] = bool
    ) -> dict[str, Any]:
        """The first log line with ``event`` (and matching ``where``); fails if the process exits first."""
        deadline = time.monotonic() + within
        while True:
            found = [line for line in self.events(event) if where(line)]
            if found:
                return found[0]
            code = self.process.poll()
            if code is not None:
                raise AssertionError(f"{self.name} exited with {code} before {event}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} logged no {event} within {within:g} s:\n{self.tail()}")
            await asyncio.sleep(0.1)

    def signal(self, sig: signal.Signals) -> None:
        os.kill(self.pid, sig)

    async def exit_code(self, within: float) -> int:
        deadline = time.monotonic() + within
        while (code := self.process.poll()) is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} still runs {within:g} s later:\n{self.tail()}")
            await asyncio.sleep(0.05)
        return code

    def stop(self) -> None:
        self.process.stop(timeout=10.0)


class Services:
    """Starts workers and APIs for one test (``with Services(tmp_path) as services``); whatever still
    runs at the end of the block is stopped. ``measured=False``: the processes run without coverage
    tracing, which multiplies their CPU cost (for tests about load)."""

    def __init__(self, log_dir: Path, measured: bool = True) -> None:
        self.log_dir = log_dir
        self.measured = measured
        self.started: list[Service] = []

    def _start(self, name: str, args: list[str], settings: Settings) -> Service:
        service = Service(name, args, settings, self.log_dir / f"{name}.log", self.measured)
        self.started.append(service)
        return service

    def start_worker(self, name: str, settings: Settings) -> Service:
        return self._start(name, [sys.executable, "worker.py"], settings)

    async def worker(self, name: str, settings: Settings) -> Service:
        """A worker process, once it has logged worker_started."""
        service = self.start_worker(name, settings)
        await service.wait_for("worker_started")
        return service

    async def api(self, name: str, settings: Settings, *extra: str) -> tuple[Service, str]:
        """An API process on a free port (``extra``: more uvicorn flags); returns it and its base URL."""
        port = free_port()
        args = [sys.executable, "-m", "uvicorn", "api.asgi:app", "--host", "127.0.0.1", "--port", str(port)]
        service = self._start(name, [*args, "--no-access-log", *extra], settings)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_TIMEOUT
        async with httpx.AsyncClient(timeout=2) as http:
            while True:
                try:
                    if (await http.get(f"{url}/health")).status_code == 200:
                        return service, url
                except httpx.HTTPError:
                    pass
                code = service.process.poll()
                if code is not None or time.monotonic() > deadline:
                    raise AssertionError(f"{name} did not serve /health (exit {code}):\n{service.tail()}")
                await asyncio.sleep(0.1)

    def __enter__(self) -> Services:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for service in reversed(self.started):
            service.stop()


class SseReader:
    """Reads an event stream in the background; ``task`` ends with the list of its frames."""

    def __init__(self, http: httpx.AsyncClient, url: str, headers: dict[str, str]) -> None:
        self.frames: list[dict[str, str]] = []
        self._seen = asyncio.Condition()
        self.task = asyncio.create_task(self._read(http, url, headers | {"Accept": "text/event-stream"}))

    async def _read(self, http: httpx.AsyncClient, url: str, headers: dict[str, str]) -> list[dict[str, str]]:
        buffer = ""
        async with http.stream("GET", url, headers=headers) as response:
            assert response.status_code == 200
            async for text in response.aiter_text():
                buffer += text
                *blocks, buffer = buffer.split("\n\n")
                async with self._seen:
                    self.frames += [parse_frame(block) for block in blocks if block]
                    self._seen.notify_all()
        return self.frames

    async def wait_for_event(self, event: str) -> None:
        async with self._seen:
            await asyncio.wait_for(
                self._seen.wait_for(lambda: any(f.get("event") == event for f in self.frames)), 15
            )


def parse_frame(block: str) -> dict[str, str]:
    return dict(line.split(": ", 1) if ": " in line else (line, "") for line in block.split("\n"))
