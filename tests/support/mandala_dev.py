"""Drive a real `mandala dev` subprocess: start it on free ports, find its children, read its log, stop it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.support.processes import still_running
from tests.support.servers import REPO_ROOT, free_port_run, free_ports

START_TIMEOUT = 120.0
JOB_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
METRICS_PORTS = 8  # enough for --api-workers up to 7


@dataclass
class DevSystem:
    process: subprocess.Popen[bytes]
    log_path: Path
    api_url: str
    temporal_address: str
    ui_url: str
    pg_port: int
    metrics_port: int  # the first API process's; the others and the worker follow

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self) -> str:
        return "\n".join(self.log().splitlines()[-60:])

    def banner_line(self, label: str) -> str:
        """The text after `label` on its banner line, e.g. banner_line("Temporal:")."""
        match = re.search(rf"^  {re.escape(label)}\s+(.*)$", self.log(), re.MULTILINE)
        assert match, f"no {label!r} line in the banner:\n{self.log_tail()}"
        return match.group(1)

    def child(self, marker: str) -> psutil.Process:
        """The one direct child of `mandala dev` whose command line contains `marker`."""
        found = [c for c in self.children() if marker in " ".join(c.cmdline())]
        assert len(found) == 1, [c.cmdline() for c in self.children()]
        return found[0]

    def children(self) -> list[psutil.Process]:
        return still_running(psutil.Process(self.process.pid).children())

    def wait_for_log(self, text: str, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if self.process.poll() is not None:
                pytest.fail(f"mandala dev exited with {self.process.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"{text!r} not logged within {timeout:g} s:\n{self.log_tail()}")
            time.sleep(0.2)


def child_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k.upper() not in {"DATABASE_URL", "TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "AI_PROVIDER"}
    }
    return {**env, "PYTHONPATH": str(REPO_ROOT), **extra}


class DevLauncher:
    """Starts `python -m cli.main dev`; whatever is still running at teardown is killed."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[DevSystem] = []

    def start(self, data_dir: Path, *args: str, env: dict[str, str] | None = None) -> DevSystem:
        api_port, temporal_port, ui_port, pg_port = free_ports(4)
        metrics_port = free_port_run(METRICS_PORTS)
        log_path = self.tmp_path / f"mandala-dev-{len(self.started)}.log"
        ports = ["--api-port", str(api_port), "--temporal-port", str(temporal_port)]
        ports += ["--ui-port", str(ui_port), "--pg-port", str(pg_port), "--metrics-port", str(metrics_port)]
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "cli.main", "dev", "--data-dir", str(data_dir), *ports, *args],
                cwd=REPO_ROOT,
                env=child_env(**(env or {})),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        system = DevSystem(
            process,
            log_path,
            f"http://127.0.0.1:{api_port}",
            f"127.0.0.1:{temporal_port}",
            f"http://127.0.0.1:{ui_port}",
            pg_port,
            metrics_port,
        )
        self.started.append(system)
        self._wait_ready(system)
        return system

    def _wait_ready(self, system: DevSystem) -> None:
        system.wait_for_log("Press Ctrl+C to stop.")
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if system.process.poll() is not None:
                pytest.fail(f"mandala dev exited with {system.process.returncode}:\n{system.log_tail()}")
            if api_ready(system.api_url):
                return
            time.sleep(0.5)
        pytest.fail(f"/health/ready was not 200 within {START_TIMEOUT:g} s:\n{system.log_tail()}")

    def kill_leftovers(self) -> None:
        for system in self.started:
            if system.process.poll() is None:
                tree = psutil.Process(system.process.pid).children(recursive=True)
                system.process.kill()
                for child in tree:
                    try:
                        child.kill()
                    except psutil.NoSuchProcess:
                        pass
                system.process.wait()


def api_ready(api_url: str) -> bool:
    try:
        return httpx.get(f"{api_url}/health/ready", timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def stop_with_sigint(system: DevSystem) -> None:
    descendants = psutil.Process(system.process.pid).children(recursive=True)
    assert descendants, "mandala dev should have children"

    system.process.send_signal(signal.SIGINT)

    try:
        code = system.process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"mandala dev did not stop within {STOP_TIMEOUT:g} s:\n{system.log_tail()}")
    assert code == 0, system.log_tail()
    leftovers = still_running(descendants)
    assert leftovers == [], [p.cmdline() for p in leftovers]


def mandala_token(sub: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "token", "--sub", sub],
        cwd=REPO_ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return result.stdout.strip()


def api_data(response: httpx.Response, expected_status: int = 200) -> Any:
    assert response.status_code == expected_status, response.text
    body = response.json()
    assert body["success"] is True
    return body["data"]


def wait_for_status(
    http: httpx.Client, process_id: str, wanted: str, timeout: float = JOB_TIMEOUT
) -> dict[str, Any]:
    """Poll the status endpoint until the job is `wanted`; a status endpoint that answers 503 while a
    restarted dependency comes back is polled again."""
    deadline = time.monotonic() + timeout
    while True:
        response = http.get(f"/api/ai/async/status/{process_id}")
        if response.status_code != 503:
            job: dict[str, Any] = api_data(response)
            if job["status"] == wanted:
                return job
            assert job["status"] in {"PENDING", "PROCESSING"}, job
        assert time.monotonic() < deadline, f"job not {wanted} after {timeout:g} s: {response.text}"
        time.sleep(0.3)
