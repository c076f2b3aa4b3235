"""`mandala dev` end to end: start everything, build a full chart, stop on SIGINT, restart, find the data."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from cli.temporal_server import find_temporal_cli
from tests.support.servers import free_ports

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 120.0
JOB_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
SUBGOAL_REQUEST = {
    "type": "SUBGOAL_GENERATION",
    "params": {
        "title": "TypeScriptのエキスパートになる",
        "description": "型システムと設計を深く理解し、チームで指導できる水準になる",
        "deadline": (datetime.now(UTC) + timedelta(days=180)).isoformat(timespec="seconds"),
        "background": "フロントエンド開発を3年担当している",
        "constraints": "平日は1日1時間まで",
    },
}


@dataclass
class DevSystem:
    process: subprocess.Popen[bytes]
    log_path: Path
    api_url: str
    temporal_address: str
    ui_url: str

    def log_tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-60:])


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

    def start(self, data_dir: Path) -> DevSystem:
        api_port, temporal_port, ui_port, pg_port = free_ports(4)
        log_path = self.tmp_path / f"mandala-dev-{len(self.started)}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "cli.main",
                    "dev",
                    "--data-dir",
                    str(data_dir),
                    "--api-port",
                    str(api_port),
                    "--temporal-port",
                    str(temporal_port),
                    "--ui-port",
                    str(ui_port),
                    "--pg-port",
                    str(pg_port),
                ],
                cwd=REPO_ROOT,
                env=child_env(),
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
        )
        self.started.append(system)
        self._wait_ready(system)
        return system

    def _wait_ready(self, system: DevSystem) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if system.process.poll() is not None:
                pytest.fail(f"mandala dev exited with {system.process.returncode}:\n{system.log_tail()}")
            try:
                if httpx.get(f"{system.api_url}/health/ready", timeout=3).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
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


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[DevLauncher]:
    dev_launcher = DevLauncher(tmp_path)
    yield dev_launcher
    dev_launcher.kill_leftovers()


def still_running(processes: list[psutil.Process]) -> list[psutil.Process]:
    running = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                running.append(process)
        except psutil.NoSuchProcess:
            pass
    return running


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


def wait_for_completion(http: httpx.Client, process_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + JOB_TIMEOUT
    while True:
        job: dict[str, Any] = api_data(http.get(f"/api/ai/async/status/{process_id}"))
        if job["status"] == "COMPLETED":
            return job
        assert job["status"] in {"PENDING", "PROCESSING"}, job
        assert time.monotonic() < deadline, f"job still {job['status']} after {JOB_TIMEOUT:g} s"
        time.sleep(0.5)


def completed_workflow_ids(temporal_address: str) -> set[str]:
    result = subprocess.run(
        [
            str(find_temporal_cli()),
            "workflow",
            "list",
            "--address",
            temporal_address,
            "--query",
            'ProcessingStatus="COMPLETED"',
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return {item["execution"]["workflowId"] for item in json.loads(result.stdout)}


def wait_for_visibility(temporal_address: str, workflow_id: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while workflow_id not in completed_workflow_ids(temporal_address):
        assert time.monotonic() < deadline, f"{workflow_id} not listed as ProcessingStatus=COMPLETED"
        time.sleep(0.5)


def subgoal_titles(http: httpx.Client, goal_id: str) -> list[str]:
    goal = api_data(http.get(f"/api/goals/{goal_id}"))["goal"]
    return [subgoal["title"] for subgoal in goal["subGoals"]]


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """Outside pytest's basetemp, which every starting pytest session resets to mode 0700: as root,
    PostgreSQL runs as another user that must be able to reach its data directory."""
    path = Path(tempfile.mkdtemp(prefix="mandala-e2e-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_mandala_dev_runs_generates_stops_and_keeps_data_across_restarts(
    launcher: DevLauncher, data_dir: Path
) -> None:
    system = launcher.start(data_dir)
    headers = {"Authorization": f"Bearer {mandala_token('e2e-user')}"}

    with httpx.Client(base_url=system.api_url, headers=headers, timeout=10) as http:
        started = api_data(http.post("/api/ai/async/generate", json=SUBGOAL_REQUEST), expected_status=202)
        process_id, goal_id = started["processId"], started["targetId"]
        job = wait_for_completion(http, process_id)
        titles = subgoal_titles(http, goal_id)
        # the rest of the chart: actions for every subgoal, then tasks for every action
        for job_type in ("ACTION_GENERATION", "TASK_GENERATION"):
            body = {"type": job_type, "params": {"goalId": goal_id}}
            fan_out = api_data(http.post("/api/ai/async/generate", json=body), expected_status=202)
            wait_for_completion(http, fan_out["processId"])
        tree = api_data(http.get(f"/api/goals/{goal_id}"))["goal"]
    assert job["progress"] == 100
    assert len(titles) == 8
    assert [len(subgoal["actions"]) for subgoal in tree["subGoals"]] == [8] * 8
    assert all(action["tasks"] for subgoal in tree["subGoals"] for action in subgoal["actions"])
    wait_for_visibility(system.temporal_address, f"ai-gen-{process_id}")
    assert httpx.get(system.ui_url, timeout=10).status_code == 200

    stop_with_sigint(system)

    restarted = launcher.start(data_dir)
    with httpx.Client(base_url=restarted.api_url, headers=headers, timeout=10) as http:
        job_after = api_data(http.get(f"/api/ai/async/status/{process_id}"))
        assert job_after["status"] == "COMPLETED"
        assert job_after["completedAt"] == job["completedAt"]
        assert subgoal_titles(http, goal_id) == titles
    assert f"ai-gen-{process_id}" in completed_workflow_ids(restarted.temporal_address)

    stop_with_sigint(restarted)
