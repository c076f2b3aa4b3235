"""docs/api.md's curl walk-through, command by command, against the API and worker processes."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

from tests.support.live_stack import REPO_ROOT, LiveStack
from tests.support.readme import commands, section

DOC = REPO_ROOT / "docs" / "api.md"
JOB_TIMEOUT = 60.0


def curl(script: str, stack: LiveStack) -> dict[str, Any]:
    result = subprocess.run(
        ["bash", "-c", script],
        cwd=REPO_ROOT,
        env=stack.client_env(""),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, (script, result.stderr)
    body: dict[str, Any] = json.loads(result.stdout)
    assert body["success"] is True, body
    return body["data"]


def wait_completed(prelude: str, status_command: str, stack: LiveStack) -> None:
    deadline = time.monotonic() + JOB_TIMEOUT
    while (status := curl(f"{prelude}\n{status_command}", stack)["status"]) != "COMPLETED":
        assert status in ("PENDING", "PROCESSING") and time.monotonic() < deadline, status
        time.sleep(0.3)


def test_the_curl_walkthrough_of_api_md_builds_a_whole_chart(stack: LiveStack) -> None:
    token, api, start, status, events, goal, actions, tasks = commands(
        section(DOC, "## A first job with curl")
    )
    assert api == "API=http://127.0.0.1:8000"
    prelude = f"{token}\nAPI={stack.api_url}"

    started = curl(f"{prelude}\n{start}", stack)
    pid, goal_id = started["processId"], started["targetId"]
    fill = {"<PID>": pid, "<GOAL>": goal_id}

    def concrete(command: str) -> str:
        for placeholder, value in fill.items():
            command = command.replace(placeholder, value)
        return command

    wait_completed(prelude, concrete(status), stack)
    assert [e["type"] for e in curl(f"{prelude}\n{concrete(events)}", stack)["events"]][-1] == "COMPLETED"
    assert len(curl(f"{prelude}\n{concrete(goal)}", stack)["goal"]["subGoals"]) == 8
    for step in (actions, tasks):
        job = curl(f"{prelude}\n{concrete(step)}", stack)
        fill["<PID>"] = job["processId"]
        wait_completed(prelude, concrete(status), stack)
    tree = curl(f"{prelude}\n{concrete(goal)}", stack)["goal"]
    assert all(action["tasks"] for sub in tree["subGoals"] for action in sub["actions"])
