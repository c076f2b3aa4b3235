"""A client generated from the served /openapi.json by openapi-python-client runs a SUBGOAL job end to end
over real HTTP: the app under uvicorn, a real worker, PostgreSQL and Temporal."""

from __future__ import annotations

import asyncio
import importlib
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from api.dev_tokens import issue_dev_token
from settings import Settings
from tests.support.live_api import live_api

PACKAGE = "mandala_api_client"
GENERATOR = Path(sys.executable).with_name("openapi-python-client")
GENERATE_TIMEOUT = 180.0
JOB_TIMEOUT = 60.0


def generate_client(document: dict[str, Any], out: Path) -> None:
    spec, config = out / "openapi.json", out / "config.yml"
    spec.write_text(json.dumps(document), encoding="utf-8")
    config.write_text(f"package_name_override: {PACKAGE}\npost_hooks: []\n", encoding="utf-8")
    args = ["generate", "--path", str(spec), "--config", str(config), "--meta", "none"]
    done = subprocess.run(
        [str(GENERATOR), *args, "--output-path", str(out / PACKAGE)],
        capture_output=True,
        text=True,
        timeout=GENERATE_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Warning" not in done.stdout + done.stderr, done.stdout + done.stderr


@pytest.fixture
def generated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], ModuleType]]:
    """Imports modules of the generated package from tmp_path; forgets them afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    yield lambda name: importlib.import_module(f"{PACKAGE}.{name}")
    for name in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
        del sys.modules[name]


async def test_a_generated_client_starts_a_subgoal_job_polls_it_to_completed_and_reads_the_tree(
    tmp_path: Path,
    generated: Callable[[str], ModuleType],
    make_settings: Callable[..., Settings],
    worker_for: Callable[[Settings], Any],
) -> None:
    settings = make_settings(rate_limit_read_per_minute=100_000)
    with live_api(settings) as base_url:
        async with httpx.AsyncClient(base_url=base_url) as http:
            document = (await http.get("/openapi.json")).json()
        generate_client(document, tmp_path)
        models, client_module = generated("models"), generated("client")
        generate, status, goal = (
            generated("api.jobs.generate"),
            generated("api.jobs.status"),
            generated("api.goals.goal"),
        )

        token = issue_dev_token("generated-client-user", settings.jwt_secret)
        deadline = datetime.now(UTC) + timedelta(days=90)
        body = models.SubgoalGeneration(
            type_="SUBGOAL_GENERATION",
            params=models.SubgoalParams(
                title="TypeScriptのエキスパートになる",
                description="型システムと設計を深く理解し、チームで指導できる水準になる",
                deadline=deadline,
                background="フロントエンド開発を3年担当している",
            ),
        )
        async with (
            worker_for(settings),
            client_module.AuthenticatedClient(base_url=base_url, token=token) as api,
        ):
            started = await generate.asyncio_detailed(client=api, body=body, accept_language="en")
            assert started.status_code == 202, started.content
            accepted = started.parsed.data
            assert isinstance(accepted, models.Accepted)
            assert accepted.status == models.ProcessingStatus.PENDING
            assert accepted.scope == models.Scope.TARGET and accepted.total_units == 1
            assert started.headers["Location"] == f"/api/ai/async/status/{accepted.process_id}"

            job = None
            for _ in range(int(JOB_TIMEOUT / 0.2)):
                polled = await status.asyncio(accepted.process_id, client=api)
                assert isinstance(polled, models.StatusEnvelope), polled
                job = polled.data
                if job.status not in (models.ProcessingStatus.PENDING, models.ProcessingStatus.PROCESSING):
                    break
                await asyncio.sleep(0.2)
            assert job is not None and job.status == models.ProcessingStatus.COMPLETED, job
            assert job.progress == 100 and job.units.succeeded == 1
            assert isinstance(job.result, models.SubGoalResult)
            assert job.result.goal_id == accepted.target_id and len(job.result.sub_goals) == 8

            tree = await goal.asyncio(accepted.target_id, client=api)
            assert isinstance(tree, models.GoalEnvelope), tree
            assert tree.data.goal.title == "TypeScriptのエキスパートになる"
            assert abs(tree.data.goal.deadline - deadline) < timedelta(milliseconds=1)
            assert [s.title for s in tree.data.goal.sub_goals] == [s.title for s in job.result.sub_goals]
            assert [s.position for s in tree.data.goal.sub_goals] == list(range(8))

            missing = await status.asyncio_detailed(accepted.target_id, client=api, accept_language="en")
            assert missing.status_code == 404
            assert isinstance(missing.parsed, models.ErrorEnvelope)
            assert missing.parsed.error.code == models.ErrorCode.PROCESSING_NOT_FOUND
            assert missing.parsed.error.message == "The process was not found."
