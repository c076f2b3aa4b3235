"""Workflow code stays deterministic and free of I/O modules (spec 6.4, checklist J99)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from db.repository import JobRepository
from domain.enums import ProcessingType, TargetType
from settings import Settings
from tests.support.jobs import make_user, rows, start_job, start_subgoal_job
from workflows.generation import GenerationWorkflow

HISTORIES = Path(__file__).resolve().parents[1] / "histories"
# Recorded after the prompt-cancel patch (TRY_CANCEL, operator cancel update); the four above predate it.
PROMPT_CONTROL = ("cancel_deaf_call", "timeout_deaf_call", "operator_cancel")
# Recorded after the quiet-run patch: a run the row refused shows the row's status.
QUIET_STATUS = ("quiet_row_cancelled",)
# The same eight recorded after the begin-job patch (mark_processing and plan_units in one local activity).
BEGIN_JOB = tuple(
    f"{name}_begin_job"
    for name in ("success", "partial_failure", "cancel", "timeout", *PROMPT_CONTROL, *QUIET_STATUS)
)
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
        *BEGIN_JOB,
    }
    replayer = Replayer(workflows=[GenerationWorkflow], data_converter=pydantic_data_converter)
    for f in files:
        history = WorkflowHistory.from_json(f"ai-gen-{f.stem}", json.loads(f.read_text(encoding="utf-8")))
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        assert result.replay_failure is None, f.name


async def test_the_unsandboxed_worker_replays_every_task_and_its_histories_replay_in_the_sandbox(
    repo: JobRepository, client: Client, make_settings: Callable[..., Settings], worker_for: Any
) -> None:
    """The shipped worker runs GenerationWorkflow without the sandbox (docs/architecture.md). With an empty
    workflow cache it replays each run from its first event at every workflow task, so a non-deterministic
    branch would fail a task; the histories it leaves (a target-scope success, a goal-scope partial failure
    with concurrent units) then replay in the sandbox, whose restrictions catch clocks, randomness and
    I/O in workflow code."""
    settings = make_settings(worker_max_cached_workflows=0, goal_scope_concurrency=2)
    user = await make_user(repo.engine)
    goal = uuid.uuid4()
    async with worker_for(settings):
        _, target = await start_subgoal_job(repo, client, settings, user, target_id=goal)
        assert (await asyncio.wait_for(target.result(), 60)).outcome == "COMPLETED"
        subgoals = [r.id for r in await rows(repo, "SELECT id FROM sub_goals WHERE goal_id=:g", g=goal)]
        async with repo.engine.begin() as conn:
            await conn.execute(
                text("UPDATE sub_goals SET title = '#fault:action:bad_quality:3 ' || title WHERE id = :s"),
                {"s": subgoals[1]},
            )
        _, fan_out = await start_job(
            repo,
            client,
            settings,
            user,
            ProcessingType.ACTION_GENERATION,
            TargetType.GOAL,
            goal,
            {"goalId": str(goal)},
            units=subgoals[:4],
        )
        with pytest.raises(WorkflowFailureError):
            await asyncio.wait_for(fan_out.result(), 60)
    replayer = Replayer(workflows=[GenerationWorkflow], data_converter=pydantic_data_converter)
    for handle in (target, fan_out):
        history = await handle.fetch_history()
        assert EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED not in {e.event_type for e in history.events}
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        assert result.replay_failure is None
