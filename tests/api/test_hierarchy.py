"""Hierarchy conflicts (issue 7): a job is refused while another runs on its target, an ancestor of it or
a descendant of it, whatever the two types; jobs on different branches of one goal run side by side."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from db.models import ProcessingState
from domain.enums import ACTIVE_STATUSES
from tests.support.api import Tree, assert_error, bearer, ensure_user, seed_tree

GENERATE = "/api/ai/async/generate"
ALICE = bearer("alice")


@dataclass(frozen=True)
class Kind:
    """A job to submit, and its target's path from the goal (the hierarchy the conflict rule reads)."""

    name: str
    body: dict[str, Any]
    path: tuple[uuid.UUID, ...]

    def conflicts_with(self, other: Kind) -> bool:
        shorter, longer = sorted((self.path, other.path), key=len)
        return longer[: len(shorter)] == shorter


def kinds(tree: Tree) -> list[Kind]:
    goal, (s0, s1), (a00, _, a10, _) = tree.goal_id, tree.subgoal_ids, tree.action_ids
    deadline = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    subgoal_params = {"title": "目標", "description": "説明", "deadline": deadline, "background": "背景"}

    def job(job_type: str, **params: Any) -> dict[str, Any]:
        return {"type": job_type, "params": {**params, "regenerate": True}}

    return [
        Kind("SUBGOAL(goal)", job("SUBGOAL_GENERATION", goalId=str(goal), **subgoal_params), (goal,)),
        Kind("ACTION(goal)", job("ACTION_GENERATION", goalId=str(goal)), (goal,)),
        Kind("TASK(goal)", job("TASK_GENERATION", goalId=str(goal)), (goal,)),
        Kind("ACTION(s0)", job("ACTION_GENERATION", subGoalId=str(s0)), (goal, s0)),
        Kind("ACTION(s1)", job("ACTION_GENERATION", subGoalId=str(s1)), (goal, s1)),
        Kind("TASK(a00)", job("TASK_GENERATION", actionId=str(a00)), (goal, s0, a00)),
        Kind("TASK(a10)", job("TASK_GENERATION", actionId=str(a10)), (goal, s1, a10)),
    ]


async def start(api: httpx.AsyncClient, kind: Kind) -> httpx.Response:
    return await api.post(GENERATE, json=kind.body, headers=ALICE)


async def cancel(api: httpx.AsyncClient, process_id: str) -> None:
    assert (await api.post(f"/api/ai/async/cancel/{process_id}", headers=ALICE)).status_code == 200


async def active_jobs(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        stmt = select(ProcessingState.id).where(ProcessingState.status.in_(list(ACTIVE_STATUSES)))
        return [str(i) for i in (await conn.execute(stmt)).scalars()]


async def test_every_pair_of_jobs_on_one_goal(api: httpx.AsyncClient, clean_db: AsyncEngine) -> None:
    tree = await seed_tree(clean_db, await ensure_user(clean_db, "alice"), subgoals=2, actions=2, tasks=1)
    for running, new in itertools.product(kinds(tree), repeat=2):
        first = await start(api, running)
        assert first.status_code == 202, (running.name, first.text)
        running_id = first.json()["data"]["processId"]
        second = await start(api, new)
        pair = f"{new.name} while {running.name} runs"
        if new.conflicts_with(running):
            error = assert_error(second, 409, "JOB_ALREADY_RUNNING")
            assert error["details"] == {"processId": running_id}, pair
            assert await active_jobs(clean_db) == [running_id], pair
        else:
            assert second.status_code == 202, (pair, second.text)
            await cancel(api, second.json()["data"]["processId"])
        await cancel(api, running_id)
    # Only active jobs block: once they ended, the whole goal is free again.
    assert (await start(api, kinds(tree)[0])).status_code == 202


async def test_concurrent_submissions_on_one_goal_never_overlap(
    api: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    tree = await seed_tree(clean_db, await ensure_user(clean_db, "alice"), subgoals=2, actions=2, tasks=1)
    every = kinds(tree)
    for _ in range(3):
        submitted = every * 2
        responses = await asyncio.gather(*(start(api, kind) for kind in submitted))
        accepted = {
            r.json()["data"]["processId"]: k
            for r, k in zip(responses, submitted, strict=True)
            if r.status_code == 202
        }
        assert accepted
        for a, b in itertools.combinations(accepted.values(), 2):
            assert not a.conflicts_with(b), (a.name, b.name)
        for response, kind in zip(responses, submitted, strict=True):
            if response.status_code != 202:
                holder = assert_error(response, 409, "JOB_ALREADY_RUNNING")["details"]["processId"]
                assert kind.conflicts_with(accepted[holder]), (kind.name, accepted[holder].name)
        assert sorted(await active_jobs(clean_db)) == sorted(accepted)
        for process_id in accepted:
            await cancel(api, process_id)
