"""Every `temporal` command that README.md and the operator docs show runs against the shipped CLI binary
and a real job, and the cancel and terminate commands have the Postgres effect the docs promise (6.4).

Commands are read out of the markdown: lines of fenced code blocks and inline code spans that start with
`temporal <group>` (or `.venv/bin/temporal …`). `<id>` / `<PID>` become a job's processId; each command
gets `--address` of the test server. Another document's new command is picked up without a change here.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import subprocess
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from temporalio.client import WorkflowExecutionStatus

from cli.temporal_server import find_temporal_cli
from domain.workflow_io import RECONCILER_SCHEDULE_ID, RETENTION_SCHEDULE_ID
from settings import Settings
from tests.integration.test_housekeeping import maintenance_worker
from tests.support.jobs import make_user, start_subgoal_job, subgoal_params, wait_status
from tests.support.servers import REPO_ROOT
from workflows.schedules import ensure_schedules

DOCS = (
    "README.md",
    "docs/operations.md",
    "docs/alert-runbook.md",
    "docs/troubleshooting.md",
    "docs/deploy.md",
)
COMMAND = re.compile(r"^(?:\.venv/bin/)?temporal (?:workflow|schedule|task-queue|operator|activity|batch) ")
PLACEHOLDER = re.compile(r"<(?:id|PID)>")
FENCE = re.compile(r"```[^\n]*\n(.*?)```", re.S)
STOPPING = ("workflow cancel", "workflow update execute", "workflow terminate")


def documented_commands() -> list[str]:
    found: list[str] = []
    for name in DOCS:
        text = (REPO_ROOT / name).read_text(encoding="utf-8")
        for block in FENCE.findall(text):
            found += [line.strip() for line in block.splitlines() if COMMAND.match(line.strip())]
        found += [span for span in re.findall(r"`([^`\n]+)`", FENCE.sub("", text)) if COMMAND.match(span)]
    return list(dict.fromkeys(found))


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_the_docs_show_every_operator_action() -> None:
    commands = " | ".join(documented_commands())
    for action in (*STOPPING, "workflow reset", "workflow list", "workflow query", "schedule toggle"):
        assert f"temporal {action}" in commands, action
    assert not re.search(r"workflow cancel -w \S+ --reason", commands)  # the CLI refuses it


async def run_cli(settings: Settings, command: str, process_id: uuid.UUID) -> list[str]:
    argv = shlex.split(PLACEHOLDER.sub(str(process_id), command))[1:]
    out = await asyncio.to_thread(
        subprocess.run,
        [str(find_temporal_cli()), *argv, "--address", settings.temporal_address],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, f"{command}\n{out.stderr}"
    return argv


@pytest.fixture
def ops_settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(temporal_maintenance_task_queue=f"maintenance-{uuid.uuid4()}")


async def test_every_documented_command_runs_and_does_what_the_docs_say(
    repo, client, ops_settings, worker_for
) -> None:
    from worker import closed_sweep

    settings = ops_settings
    user = await make_user(repo.engine)
    await ensure_schedules(client, settings.temporal_maintenance_task_queue, 60, "0 3 * * *", 90)
    stopped: list[tuple[list[str], uuid.UUID]] = []
    try:
        async with (
            worker_for(settings),
            maintenance_worker(client, settings, repo),
            closed_sweep(client, settings, repo),
        ):
            done, handle = await start_subgoal_job(repo, client, settings, user)
            await handle.result()
            failed, handle = await start_subgoal_job(
                repo, client, settings, user, subgoal_params("#fault:subgoal:rejected 学習計画")
            )
            await wait_status(repo, failed, "FAILED")
            for command in documented_commands():
                if any(f"temporal {s}" in command for s in STOPPING):
                    running, _ = await start_subgoal_job(
                        repo, client, settings, user, subgoal_params("#fault:subgoal:hang 学習計画")
                    )
                    await wait_status(repo, running, "PROCESSING")
                    stopped.append((await run_cli(settings, command, running), running))
                else:
                    await run_cli(settings, command, failed if "workflow reset" in command else done)
            for _, process_id in stopped:
                await wait_status(repo, process_id, "CANCELLED")
    finally:
        for schedule_id in (RECONCILER_SCHEDULE_ID, RETENTION_SCHEDULE_ID):
            await client.get_schedule_handle(schedule_id).delete()
    for argv, process_id in stopped:
        await assert_stopped_as_documented(repo, client, argv, process_id)


async def assert_stopped_as_documented(
    repo: Any, client: Any, argv: list[str], process_id: uuid.UUID
) -> None:
    job = await repo.get_job(process_id)
    status = (await client.get_workflow_handle(f"ai-gen-{process_id}").describe()).status
    assert (job.status, job.cancelled_by) == ("CANCELLED", "OPERATOR")
    if argv[:2] == ["workflow", "update"]:
        reason = json.loads(option(argv, "--input"))["reason"]
        assert (job.error_code, job.cancel_reason, status) == (
            "CANCELLED",
            reason,
            WorkflowExecutionStatus.FAILED,
        )
    elif argv[:2] == ["workflow", "terminate"]:
        reason = option(argv, "--reason")
        assert (job.error_code, job.cancel_reason, status) == (
            "TERMINATED",
            reason,
            WorkflowExecutionStatus.TERMINATED,
        )
    else:
        assert (job.error_code, job.cancel_reason, status) == (
            "CANCELLED",
            "オペレーターによるキャンセル",
            WorkflowExecutionStatus.CANCELED,
        )
