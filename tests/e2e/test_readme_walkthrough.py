"""README's first-job walk-through, command by command, against the API and worker processes.

`mandala all` runs on a pseudo-terminal, as in a reader's terminal: the live display must show the job
PROCESSING with units moving before it completes. `mandala show` is pictured (into docs/images/ with
UPDATE_DOC_IMAGES=1, see tests/support/pictures.py).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.support.cli_runs import UUID
from tests.support.live_stack import REPO_ROOT, LiveStack
from tests.support.pictures import picture_path
from tests.support.readme import commands, section
from tests.support.terminal import run_on_terminal, screenshot_of_output

COLUMNS = 120
ANSI_CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def test_the_readme_first_job_walkthrough_runs_and_shows_moving_progress(
    stack: LiveStack, tmp_path: Path
) -> None:
    steps = commands(section(REPO_ROOT / "README.md", "## A first job"))
    dev, token, build, *rest = steps
    assert dev == "AI_OFFLINE_LATENCY_MS=1000 .venv/bin/mandala dev"  # the stack runs this, with less latency
    assert token.startswith("export MANDALA_TOKEN=") and build.startswith(".venv/bin/mandala all ")
    env = {k: v for k, v in stack.client_env("").items() if k != "MANDALA_TOKEN"}

    code, raw = run_on_terminal(["bash", "-c", f"{token} && {build}"], env, REPO_ROOT, COLUMNS)
    screen = ANSI_CONTROL.sub("", raw)
    assert code == 0, screen
    assert "PROCESSING" in screen
    task_units = set(re.findall(r"\b(\d+)/(?:6[0-4]|[1-5]\d)\b", screen))
    assert len(task_units) >= 3, screen  # the task stage was seen at several unit counts
    assert screen.rstrip().splitlines()[-1].endswith("COMPLETED — Completed.")
    goal_id = re.findall(rf"mandala show ({UUID})", screen)[-1]

    outputs = {}
    for step in rest:
        command = step.replace("<GOAL>", goal_id)
        result = subprocess.run(
            ["bash", "-c", f"{token} && {command}"],
            cwd=REPO_ROOT,
            env=env | {"COLUMNS": str(COLUMNS), "FORCE_COLOR": "1"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, (command, result.stdout, result.stderr)
        outputs[step] = result.stdout
    chart = outputs[".venv/bin/mandala show <GOAL>"]
    assert "TypeScriptのエキスパートになる" in chart and "┏" in chart
    screenshot_of_output(chart, picture_path("cli-show.png", tmp_path))
