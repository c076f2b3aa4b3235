"""The `mandala` client commands as subprocesses against the API and worker processes (tests/e2e/conftest)."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from db.repository import JobRepository
from domain.enums import ProcessingStatus, ProcessingType, TargetType
from tests.support.api import ensure_user
from tests.support.chart_reader import chart_widths, expected_cells, matches, read_chart
from tests.support.cli_runs import Running, mandala, shown_goal, start_mandala, started_id
from tests.support.cutting_proxy import cutting_proxy
from tests.support.jobs import Jobs
from tests.support.live_stack import LiveStack


def goal_flags(title: str = "TypeScriptのエキスパートになる") -> list[str]:
    return [
        "--title",
        title,
        "--description",
        "型システムと設計を深く理解し、チームで指導できる水準になる",
        "--deadline",
        "2031-12-31",
        "--background",
        "フロントエンド開発を3年担当している",
        "--constraints",
        "平日は1日1時間まで",
    ]


def goal_tree(stack: LiveStack, token: str, goal_id: str) -> dict[str, object]:
    response = httpx.get(
        f"{stack.api_url}/api/goals/{goal_id}", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert response.status_code == 200, response.text
    data: dict[str, object] = response.json()["data"]
    return data


def test_generate_watches_each_layer_to_completed_and_show_draws_the_saved_titles(stack: LiveStack) -> None:
    token = stack.token()
    env = stack.client_env(token)

    subgoals = mandala("generate", "subgoals", *goal_flags(), env=env)
    assert subgoals.returncode == 0, subgoals.stdout + subgoals.stderr
    assert "subgoals  PROCESSING  0/1  0%" in subgoals.stdout
    assert "subgoals  COMPLETED  1/1  100%" in subgoals.stdout
    assert subgoals.stdout.splitlines()[-1] == "COMPLETED — Completed."
    goal_id = shown_goal(subgoals.stdout)

    actions = mandala("generate", "actions", goal_id, env=env)
    assert actions.returncode == 0, actions.stdout + actions.stderr
    unit_counts = [line.split()[2] for line in actions.stdout.splitlines() if line.startswith("actions ")]
    assert unit_counts[0] == "0/8" and unit_counts[-1] == "8/8"
    assert len(set(unit_counts)) >= 3, actions.stdout  # units were seen finishing one after another

    tree = goal_tree(stack, token, goal_id)
    goal = tree["goal"]
    assert isinstance(goal, dict)
    first_action = goal["subGoals"][2]["actions"][5]
    tasks = mandala("generate", "tasks", "--action", first_action["id"], env=env)
    assert tasks.returncode == 0, tasks.stdout + tasks.stderr
    assert "tasks  COMPLETED  1/1  100%" in tasks.stdout

    shown = mandala("show", goal_id, env=env)
    assert shown.returncode == 0, shown.stderr
    assert len(chart_widths(shown.stdout)) == 1, shown.stdout  # wide characters keep the borders aligned
    drawn = read_chart(shown.stdout)
    expected = expected_cells(goal)
    assert len(drawn) == 9
    for row in range(9):
        for col in range(9):
            assert matches(drawn[row][col], expected[row][col]), (row, col, drawn[row][col], shown.stdout)
    assert drawn[4][4] == "TypeScriptのエキスパートになる"

    raw = mandala("show", goal_id, "--json", env=env)
    assert json.loads(raw.stdout) == goal_tree(stack, token, goal_id)

    with_tasks = mandala("show", goal_id, "--tasks", env=env)
    saved = goal_tree(stack, token, goal_id)["goal"]
    assert isinstance(saved, dict)
    task_titles = [task["title"] for task in saved["subGoals"][2]["actions"][5]["tasks"]]
    assert task_titles and all(title in with_tasks.stdout for title in task_titles)

    listed = mandala("jobs", "list", "--type", "action_generation", env=env)
    assert listed.returncode == 0
    assert started_id(actions.stdout) in listed.stdout and started_id(subgoals.stdout) not in listed.stdout


def test_narrow_terminal_elides_long_titles_and_keeps_the_borders_aligned(stack: LiveStack) -> None:
    token = stack.token()
    long_title = "毎日の学習を続けて三年以内に型システムと設計を深く理解したエキスパートになる"
    done = mandala("generate", "subgoals", *goal_flags(long_title), env=stack.client_env(token))
    assert done.returncode == 0, done.stdout + done.stderr

    shown = mandala("show", shown_goal(done.stdout), env=stack.client_env(token, COLUMNS="64"))
    assert len(chart_widths(shown.stdout)) == 1, shown.stdout
    centre = read_chart(shown.stdout)[4][4]
    assert centre.endswith("…") and long_title.startswith(centre[:-1]), shown.stdout


def test_a_failed_job_exits_3_with_the_catalogue_message_in_japanese_and_a_retry_is_watched(
    stack: LiveStack,
) -> None:
    env = stack.client_env(stack.token(), LANG="ja_JP.UTF-8")
    failed = mandala("generate", "subgoals", *goal_flags("#fault:subgoal:bad_quality:3 品質"), env=env)
    assert failed.returncode == 3, failed.stdout + failed.stderr
    final = failed.stdout.splitlines()[-1]
    assert (
        final
        == "FAILED — AI生成結果の品質が基準を満たしませんでした。もう一度お試しください。 (QUALITY_ERROR)"
    )
    pid = started_id(failed.stdout.replace("ジョブ ", "Started job ").replace(" を開始しました", ""))
    assert f"mandala jobs retry {pid}" in failed.stdout

    retried = mandala("jobs", "retry", pid, env=env)
    assert retried.returncode == 3, retried.stdout + retried.stderr
    assert "サブ目標  COMPLETED" not in retried.stdout

    again = mandala("jobs", "retry", pid, env=env)
    assert again.returncode == 1
    assert "この処理は既にリトライされています (ALREADY_RETRIED)" in again.stderr


@contextmanager
def asked_to_cancel(title: str, env: dict[str, str]) -> Iterator[Running]:
    """A watched job that hangs, interrupted with Ctrl-C: the client is asking whether to cancel it."""
    with start_mandala(
        "generate", "subgoals", *goal_flags(f"#fault:subgoal:hang {title}"), env=env
    ) as running:
        running.wait_for(r"PROCESSING")
        running.process.send_signal(signal.SIGINT)
        running.wait_for(r"Cancel job .*\?")
        yield running


def test_ctrl_c_offers_to_cancel_yes_cancels_and_exits_5(stack: LiveStack) -> None:
    with asked_to_cancel("止まる", stack.client_env(stack.token())) as running:
        running.answer("y")
        assert running.process.wait(60) == 5, running.output()
    assert running.output().splitlines()[-1] == "CANCELLED — The process was cancelled. (CANCELLED)"


def test_ctrl_c_then_no_leaves_the_job_running_then_jobs_cancel_and_show(stack: LiveStack) -> None:
    env = stack.client_env(stack.token())
    with asked_to_cancel("続ける", env) as running:
        running.answer("n")
        assert running.process.wait(60) == 130, running.output()
    pid = started_id(running.output())
    assert f"mandala jobs show {pid} --watch" in running.output()

    shown = mandala("jobs", "show", pid, env=env)
    assert shown.returncode == 0 and "PROCESSING" in shown.stdout

    cancelled = mandala("jobs", "cancel", pid, "--reason", "もう不要", env=env)
    assert cancelled.returncode == 0, cancelled.stderr
    assert "CANCELLED Processing has been cancelled." in cancelled.stdout
    watched = mandala("jobs", "show", pid, "--watch", env=env)
    assert watched.returncode == 5
    details = mandala("jobs", "show", pid, env=env)
    assert "もう不要" in details.stdout and "CANCELLED" in details.stdout


def test_a_second_ctrl_c_at_the_question_answers_no(stack: LiveStack) -> None:
    env = stack.client_env(stack.token())
    with asked_to_cancel("二度", env) as running:
        running.process.send_signal(signal.SIGINT)
        assert running.process.wait(60) == 130, running.output()
    pid = started_id(running.output())
    assert f"mandala jobs show {pid} --watch" in running.output()
    assert mandala("jobs", "cancel", pid, env=env).returncode == 0


def test_a_watch_started_with_ctrl_c_ignored_keeps_ignoring_it(stack: LiveStack) -> None:
    env = stack.client_env(stack.token())
    hang = goal_flags("#fault:subgoal:hang 背景で")
    with start_mandala("generate", "subgoals", *hang, env=env, sigint_ignored=True) as running:
        running.wait_for(r"PROCESSING")
        running.process.send_signal(signal.SIGINT)
        cancelled = mandala("jobs", "cancel", started_id(running.output()), env=env)
        assert cancelled.returncode == 0, cancelled.stderr
        assert running.process.wait(60) == 5, running.output()
    assert "Cancel job" not in running.output()


async def test_a_timed_out_job_exits_4(stack: LiveStack, engine: AsyncEngine) -> None:
    subject = f"user-{uuid.uuid4()}"
    user_id = await ensure_user(engine, subject)
    jobs = Jobs(JobRepository(engine))
    pid = await jobs.pending(user_id, ProcessingType.TASK_GENERATION, TargetType.ACTION)
    await jobs.processing(pid)
    await jobs.finish(pid, ProcessingStatus.TIMEOUT, "TIMEOUT_ERROR")

    watched = await asyncio.to_thread(
        mandala, "jobs", "show", str(pid), "--watch", env=stack.client_env(stack.token(subject))
    )
    assert watched.returncode == 4, watched.stdout + watched.stderr
    assert watched.stdout.splitlines()[-1] == (
        "TIMEOUT — Processing exceeded the time limit. Please try again. (TIMEOUT_ERROR)"
    )


def test_the_watch_resumes_with_last_event_id_after_the_stream_is_cut(stack: LiveStack) -> None:
    port = urlsplit(stack.api_url).port
    assert port is not None
    with cutting_proxy(port, cut_after=2) as proxy:
        env = stack.client_env(stack.token(), MANDALA_API_URL=proxy.url)
        done = mandala("generate", "subgoals", *goal_flags(), env=env)
        streams = proxy.stream_requests()
    assert done.returncode == 0, done.stdout + done.stderr
    assert proxy.cuts == 1
    assert len(streams) >= 2, streams
    assert "last-event-id: 0" in streams[0].lower()
    assert "last-event-id: 2" in streams[1].lower()
    assert done.stdout.count("subgoals  COMPLETED  1/1  100%") == 1


def test_without_a_token_the_client_says_how_to_get_one(stack: LiveStack) -> None:
    env = stack.client_env("")
    result = mandala("jobs", "list", env=env)
    assert result.returncode == 1
    assert "export MANDALA_TOKEN=$(mandala token --sub demo-user)" in result.stderr


def test_no_watch_prints_the_accepted_job_and_returns_at_once(stack: LiveStack) -> None:
    result = mandala("generate", "subgoals", *goal_flags(), "--no-watch", env=stack.client_env(stack.token()))
    assert result.returncode == 0, result.stderr
    accepted = json.loads(result.stdout.split("\n", 1)[1])
    assert accepted["status"] == "PENDING" and accepted["processId"] == started_id(result.stdout)
