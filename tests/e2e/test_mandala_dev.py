"""`mandala dev` end to end: start everything, build a full chart, stop on SIGINT, restart, find the data."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import httpx

from cli.temporal_server import find_temporal_cli
from tests.support.jobs import subgoal_body
from tests.support.mandala_dev import (
    DevLauncher,
    api_data,
    mandala_token,
    stop_with_sigint,
    wait_for_status,
)


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


def test_mandala_dev_runs_generates_stops_and_keeps_data_across_restarts(
    launcher: DevLauncher, data_dir: Path
) -> None:
    system = launcher.start(data_dir)
    headers = {"Authorization": f"Bearer {mandala_token('e2e-user')}"}

    with httpx.Client(base_url=system.api_url, headers=headers, timeout=10) as http:
        started = api_data(http.post("/api/ai/async/generate", json=subgoal_body()), expected_status=202)
        process_id, goal_id = started["processId"], started["targetId"]
        job = wait_for_status(http, process_id, "COMPLETED")
        titles = subgoal_titles(http, goal_id)
        # the rest of the chart: actions for every subgoal, then tasks for every action
        for job_type in ("ACTION_GENERATION", "TASK_GENERATION"):
            body = {"type": job_type, "params": {"goalId": goal_id}}
            fan_out = api_data(http.post("/api/ai/async/generate", json=body), expected_status=202)
            wait_for_status(http, fan_out["processId"], "COMPLETED")
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
