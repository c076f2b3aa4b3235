"""Workflow code stays deterministic and free of I/O modules (spec 6.4, checklist J99)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workflows.generation import GenerationWorkflow

HISTORIES = Path(__file__).resolve().parents[1] / "histories"
# Recorded after the prompt-cancel patch (TRY_CANCEL, operator cancel update); the four above predate it.
PROMPT_CONTROL = ("cancel_deaf_call", "timeout_deaf_call", "operator_cancel")
# Recorded after the quiet-run patch: a run the row refused shows the row's status.
QUIET_STATUS = ("quiet_row_cancelled",)
FORBIDDEN = ("sqlalchemy", "psycopg", "httpx", "jwt", "fastapi", "starlette", "boto3", "opentelemetry.sdk")


def test_workflow_modules_import_no_io_libraries() -> None:
    code = (
        "import sys, workflows.generation; "
        "print('\\n'.join(m for m in sys.modules if m.split('.')[0] in "
        f"{sorted({f.split('.')[0] for f in FORBIDDEN})!r}))"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


async def test_committed_histories_replay_without_nondeterminism() -> None:
    files = sorted(HISTORIES.glob("*.json"))
    assert {f.stem for f in files} >= {
        "success",
        "partial_failure",
        "cancel",
        "timeout",
        *PROMPT_CONTROL,
        *QUIET_STATUS,
    }
    replayer = Replayer(workflows=[GenerationWorkflow], data_converter=pydantic_data_converter)
    for f in files:
        history = WorkflowHistory.from_json(f"ai-gen-{f.stem}", json.loads(f.read_text(encoding="utf-8")))
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        assert result.replay_failure is None, f.name
