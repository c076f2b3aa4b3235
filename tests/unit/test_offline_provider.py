"""The offline provider (spec 3.2); checklist L123 and the fault directives used by other tests."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from ai.offline import OfflineProvider
from ai.parser import ResponseInvalid, parse_actions, parse_subgoals, parse_tasks
from ai.prompts import Prompt, build_action_prompt, build_subgoal_prompt, build_task_prompt
from ai.provider import AIProvider, AIRequest, AIResponse, CallContext, ProviderError, ProviderErrorKind
from domain.enums import ActionType, ProcessingType
from domain.generation import ActionItem, SubGoalItem
from domain.prompt_context import (
    ActionContext,
    ActionPromptContext,
    GoalContext,
    SubGoalContext,
    SubGoalPromptContext,
    TaskPromptContext,
)
from domain.quality import classify_action_type, validate_actions, validate_subgoals, validate_tasks

SG, AC, TK = (
    ProcessingType.SUBGOAL_GENERATION,
    ProcessingType.ACTION_GENERATION,
    ProcessingType.TASK_GENERATION,
)
ABSTRACT_WORDS = ("検討する", "考える", "理解する", "把握する", "確認する")
UNIT = uuid.UUID("00000000-0000-4000-8000-000000000001")

GOAL_TITLES = [
    "TypeScriptのエキスパートになる",
    "フルマラソンを4時間以内で完走する",
    "英語でプレゼンテーションができるようになる",
    "簿記2級に合格する（2026年6月の試験）",
    "体重を5kg減らす",
    "Become a senior backend engineer",
    "a",
    "目",
    "新規事業の企画を社内コンテストで通す",
    "ピアノでショパンのノクターンを弾けるようになる",
    "家計の貯蓄率を20%に上げる",
    "チームの離職率を半分にする",
    "🚀🚀 ロケットのように成長する",
    "Kubernetes 認定資格 CKA を取る",
    "毎朝5時に起きる生活を定着させる",
    "「統計学入門」を読み切る",
    "AWSでサービスを公開する",
    "中国語で日常会話ができるようになる",
    "地域のボランティア活動を立ち上げる",
    "x" * 200,
]


def request(prompt: Prompt, kind: ProcessingType, unit: uuid.UUID = UNIT, **context: int) -> AIRequest:
    return AIRequest(
        system=prompt.system,
        user=prompt.user,
        temperature=0.7,
        max_tokens=2000,
        top_p=0.9,
        context=CallContext(process_id=uuid.uuid4(), unit_id=unit, type=kind, **context),
    )


def goal(title: str) -> GoalContext:
    return GoalContext(
        title=title,
        description=f"{title}ための計画を立てて実行する",
        deadline=datetime(2026, 12, 31, 14, 59, tzinfo=UTC),
        background="仕事と両立しながら取り組みたい",
        constraints=None,
    )


def subgoal_prompt(title: str) -> Prompt:
    return build_subgoal_prompt(SubGoalPromptContext(goal=goal(title)))


def action_prompt(goal_title: str, subgoal_title: str) -> Prompt:
    target = SubGoalContext(title=subgoal_title, description="説明" * 30, background="", position=0)
    return build_action_prompt(ActionPromptContext(goal=goal(goal_title), subgoal=target))


def task_prompt(goal_title: str, action_title: str, action_type: ActionType) -> Prompt:
    action = ActionContext(title=action_title, description="説明" * 60, background="", type=action_type)
    target = SubGoalContext(title="サブ目標", description="説明" * 30)
    return build_task_prompt(TaskPromptContext(goal=goal(goal_title), subgoal=target, action=action))


async def generate(
    prompt: Prompt, kind: ProcessingType, provider: AIProvider | None = None, **ctx: Any
) -> str:
    response = await (provider or OfflineProvider()).generate(request(prompt, kind, **ctx))
    return response.text


@pytest.fixture
def no_sockets(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the offline provider must not open sockets")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    yield


# --- Determinism and labels ----------------------------------------------------------------------


async def test_same_input_gives_byte_identical_output() -> None:
    prompt = subgoal_prompt(GOAL_TITLES[0])
    first = await OfflineProvider().generate(request(prompt, SG))
    second = await OfflineProvider().generate(request(prompt, SG))
    assert first.text.encode() == second.text.encode()


async def test_output_depends_on_goal_unit_and_type() -> None:
    base = await generate(subgoal_prompt(GOAL_TITLES[0]), SG)
    assert await generate(subgoal_prompt(GOAL_TITLES[1]), SG) != base
    assert await generate(subgoal_prompt(GOAL_TITLES[0]), SG, unit=uuid.uuid4()) != base


async def test_response_labels_and_token_counts() -> None:
    prompt = subgoal_prompt("体重を5kg減らす")
    response = await OfflineProvider().generate(request(prompt, SG))
    assert response.provider == "offline"
    assert response.model == "offline-v1"
    assert response.finish_reason == "stop"
    prompt_points = len(prompt.system) + len(prompt.user)
    assert response.input_tokens == (prompt_points + 1) // 2
    assert response.output_tokens == (len(response.text) + 1) // 2
    assert response.latency_ms >= 0
    assert OfflineProvider().name == "offline"


async def test_the_provider_satisfies_the_interface() -> None:
    provider: AIProvider = OfflineProvider()
    assert isinstance(await provider.generate(request(subgoal_prompt("目標"), SG)), AIResponse)


# --- L123: 20 goals pass every quality rule, through actions and tasks ---------------------------


async def test_twenty_goals_pass_every_quality_rule(no_sockets: None) -> None:
    provider = OfflineProvider()
    assert len(set(GOAL_TITLES)) == 20
    for goal_title in GOAL_TITLES:
        text = await generate(subgoal_prompt(goal_title), SG, provider)
        subgoals = validate_subgoals(parse_subgoals(text))
        assert subgoals.ok, (goal_title, subgoals.errors)
        assert subgoals.warnings == (), (goal_title, subgoals.warnings)
        await _check_actions(provider, goal_title, subgoals.items)


async def _check_actions(
    provider: OfflineProvider, goal_title: str, subgoals: tuple[SubGoalItem, ...]
) -> None:
    contexts = [
        SubGoalContext(title=s.title, description=s.description, background=s.background, position=i)
        for i, s in enumerate(subgoals)
    ]
    for target in contexts:
        prompt = build_action_prompt(
            ActionPromptContext(goal=goal(goal_title), subgoal=target, siblings=contexts)
        )
        text = await generate(prompt, AC, provider, unit=uuid.uuid4())
        actions = validate_actions(parse_actions(text))
        assert actions.ok, (goal_title, target.title, actions.errors)
        assert actions.warnings == (), (goal_title, target.title, actions.warnings)
        for action in actions.items:
            await _check_tasks(provider, goal_title, target, action)


async def _check_tasks(
    provider: OfflineProvider, goal_title: str, target: SubGoalContext, action: ActionItem
) -> None:
    context = ActionContext(
        title=action.title, description=action.description, background=action.background, type=action.type
    )
    prompt = build_task_prompt(TaskPromptContext(goal=goal(goal_title), subgoal=target, action=context))
    text = await generate(prompt, TK, provider, unit=uuid.uuid4())
    tasks = validate_tasks(parse_tasks(text), action.type)
    assert tasks.ok, (action.title, tasks.errors)
    assert tasks.warnings == (), (action.title, tasks.warnings)


# --- Content rules of spec 3.2 -------------------------------------------------------------------


@pytest.mark.parametrize("title", GOAL_TITLES)
async def test_subgoals_include_a_goal_excerpt_and_description_lengths(title: str) -> None:
    items = json.loads(await generate(subgoal_prompt(title), SG))["subGoals"]
    assert len(items) == 8
    head = title[:3].strip()
    for item in items:
        assert head in item["title"] + item["description"]
        assert 60 <= len(item["description"]) <= 180


async def test_excerpts_are_at_most_ten_code_points() -> None:
    text = await generate(subgoal_prompt("ABCDEFGHIJKLMNOPQRST"), SG)
    assert "ABCDEFGHIJ" in text
    assert "ABCDEFGHIJK" not in text


@pytest.mark.parametrize("goal_title", GOAL_TITLES[:6])
async def test_action_wording_and_types(goal_title: str) -> None:
    text = await generate(action_prompt(goal_title, "基礎知識の体系的な習得"), AC)
    items = json.loads(text)["actions"]
    assert [item["type"] for item in items] == ["execution"] * 5 + ["habit"] * 3
    for item in items:
        assert "基礎知識の体系的な" in item["title"] + item["description"]
        assert 100 <= len(item["description"]) <= 180
        wording = classify_action_type(item["title"] + " " + item["description"])
        assert wording.value.lower() == item["type"]


@pytest.mark.parametrize(
    ("action_type", "counts"), [(ActionType.EXECUTION, {3, 4, 5}), (ActionType.HABIT, {1, 2, 3})]
)
async def test_task_counts_estimates_and_titles(action_type: ActionType, counts: set[int]) -> None:
    seen_counts = set()
    for goal_title in GOAL_TITLES:
        text = await generate(task_prompt(goal_title, "学習計画書を作成する", action_type), TK)
        items = json.loads(text)["tasks"]
        seen_counts.add(len(items))
        for item in items:
            assert item["estimatedMinutes"] in (30, 45, 60)
            assert not any(word in item["title"] for word in ABSTRACT_WORDS)
            assert "学習計画書を作成する" in item["title"] + item["description"]
            assert 60 <= len(item["description"]) <= 180
    assert seen_counts <= counts
    assert len(seen_counts) > 1


# --- Latency -------------------------------------------------------------------------------------


async def test_latency_is_a_sleep() -> None:
    started = time.monotonic()
    response = await OfflineProvider(latency_ms=60).generate(request(subgoal_prompt("目標"), SG))
    assert time.monotonic() - started >= 0.06
    assert response.latency_ms >= 60


async def test_latency_is_cancellable() -> None:
    task = asyncio.ensure_future(
        OfflineProvider(latency_ms=60_000).generate(request(subgoal_prompt("目標"), SG))
    )
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=1)


# --- Fault injection -----------------------------------------------------------------------------

FAULTY = OfflineProvider(faults_enabled=True)


@pytest.mark.parametrize(
    ("kind", "error_kind", "retry_after"),
    [
        ("throttle", ProviderErrorKind.TRANSIENT, 1.0),
        ("server_error", ProviderErrorKind.TRANSIENT, None),
        ("rejected", ProviderErrorKind.REJECTED, None),
    ],
)
async def test_attempt_faults(kind: str, error_kind: ProviderErrorKind, retry_after: float | None) -> None:
    prompt = subgoal_prompt(f"英語を話す #fault:subgoal:{kind}")
    with pytest.raises(ProviderError) as caught:
        await generate(prompt, SG, FAULTY, attempt=1)
    assert caught.value.kind is error_kind
    assert caught.value.retry_after == retry_after
    text = await generate(prompt, SG, FAULTY, attempt=2)
    assert validate_subgoals(parse_subgoals(text)).ok


async def test_attempt_fault_count() -> None:
    prompt = subgoal_prompt("#fault:any:server_error:3 英語を話す")
    for attempt in (1, 2, 3):
        with pytest.raises(ProviderError):
            await generate(prompt, SG, FAULTY, attempt=attempt, generation=3)
    assert await generate(prompt, SG, FAULTY, attempt=4)


@pytest.mark.parametrize("kind", ["rejected", "server_error"])
async def test_a_job_fault_fails_every_attempt_of_the_first_jobs_of_a_retry_chain(kind: str) -> None:
    prompt = subgoal_prompt(f"英語を話す #fault:subgoal:{kind}:job1")
    for attempt in (1, 2, 4):
        with pytest.raises(ProviderError):
            await generate(prompt, SG, FAULTY, attempt=attempt, retry_count=0)
    text = await generate(prompt, SG, FAULTY, attempt=1, retry_count=1)
    assert validate_subgoals(parse_subgoals(text)).ok
    assert "job1" not in text


async def test_a_job_fault_counts_jobs_for_output_faults_too() -> None:
    prompt = subgoal_prompt("英語を話す #fault:subgoal:bad_quality:job2")
    for retry_count in (0, 1):
        for generation in (1, 2, 3):
            text = await generate(prompt, SG, FAULTY, generation=generation, retry_count=retry_count)
            assert not validate_subgoals(parse_subgoals(text)).ok
    assert validate_subgoals(parse_subgoals(await generate(prompt, SG, FAULTY, retry_count=2))).ok


async def test_hang_waits_until_cancelled() -> None:
    prompt = subgoal_prompt("英語を話す #fault:subgoal:hang")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(generate(prompt, SG, FAULTY, attempt=1), timeout=0.2)
    assert await generate(prompt, SG, FAULTY, attempt=2)


async def test_deaf_ignores_cancel_and_still_returns_valid_output() -> None:
    deaf = OfflineProvider(latency_ms=300, faults_enabled=True)
    task = asyncio.ensure_future(deaf.generate(request(subgoal_prompt("英語を話す #fault:subgoal:deaf"), SG)))
    await asyncio.sleep(0.05)
    task.cancel()
    response = await task
    assert validate_subgoals(parse_subgoals(response.text)).ok
    assert response.latency_ms >= 300


@pytest.mark.parametrize("limit", [1, 2])
async def test_invalid_json_applies_per_generation(limit: int) -> None:
    suffix = "" if limit == 1 else f":{limit}"
    prompt = subgoal_prompt(f"英語を話す #fault:subgoal:invalid_json{suffix}")
    for generation in range(1, limit + 1):
        with pytest.raises(ResponseInvalid):
            parse_subgoals(await generate(prompt, SG, FAULTY, generation=generation, attempt=5))
    assert validate_subgoals(parse_subgoals(await generate(prompt, SG, FAULTY, generation=limit + 1))).ok


async def test_bad_quality_subgoals_and_actions() -> None:
    prompt = subgoal_prompt("英語を話す #fault:any:bad_quality")
    result = validate_subgoals(parse_subgoals(await generate(prompt, SG, FAULTY, generation=1)))
    assert [v.rule.value for v in result.errors] == ["SG_COUNT"]
    assert validate_subgoals(parse_subgoals(await generate(prompt, SG, FAULTY, generation=2))).ok

    prompt = action_prompt("英語を話す", "語彙を増やす #fault:action:bad_quality")
    result_a = validate_actions(parse_actions(await generate(prompt, AC, FAULTY, generation=1)))
    assert [v.rule.value for v in result_a.errors] == ["AC_COUNT"]
    assert validate_actions(parse_actions(await generate(prompt, AC, FAULTY, generation=2))).ok


async def test_bad_quality_tasks() -> None:
    prompt = task_prompt("英語を話す", "単語帳を作成する #fault:task:bad_quality:2", ActionType.EXECUTION)
    for generation in (1, 2):
        result = validate_tasks(
            parse_tasks(await generate(prompt, TK, FAULTY, generation=generation)), ActionType.EXECUTION
        )
        assert result.errors
        assert {v.rule.value for v in result.errors} == {"TK_TITLE_LENGTH"}
    assert validate_tasks(
        parse_tasks(await generate(prompt, TK, FAULTY, generation=3)), ActionType.EXECUTION
    ).ok


async def test_stage_must_match_the_request_type() -> None:
    goal_title = "英語を話す #fault:action:rejected"
    assert await generate(subgoal_prompt(goal_title), SG, FAULTY)
    with pytest.raises(ProviderError):
        await generate(action_prompt(goal_title, "語彙を増やす"), AC, FAULTY)
    assert await generate(task_prompt(goal_title, "単語帳を作成する", ActionType.HABIT), TK, FAULTY)


async def test_any_stage_matches_every_type() -> None:
    goal_title = "英語を話す #fault:any:rejected"
    for prompt, kind in (
        (subgoal_prompt(goal_title), SG),
        (action_prompt(goal_title, "語彙を増やす"), AC),
        (task_prompt(goal_title, "単語帳を作成する", ActionType.EXECUTION), TK),
    ):
        with pytest.raises(ProviderError):
            await generate(prompt, kind, FAULTY)


async def test_a_unit_title_directive_fails_only_that_unit() -> None:
    with pytest.raises(ProviderError):
        await generate(action_prompt("英語を話す", "語彙を増やす #fault:action:server_error"), AC, FAULTY)
    assert await generate(action_prompt("英語を話す", "発音を磨く"), AC, FAULTY)
    with pytest.raises(ProviderError):
        await generate(task_prompt("英語", "単語帳を作る #fault:task:throttle", ActionType.HABIT), TK, FAULTY)
    assert await generate(task_prompt("英語", "単語帳を作る", ActionType.HABIT), TK, FAULTY)


async def test_faults_are_ignored_unless_enabled() -> None:
    prompt = subgoal_prompt("英語を話す #fault:subgoal:rejected")
    text = await generate(prompt, SG, OfflineProvider())
    assert validate_subgoals(parse_subgoals(text)).ok


@pytest.mark.parametrize("provider", [FAULTY, OfflineProvider()])
async def test_output_never_contains_a_directive(provider: OfflineProvider) -> None:
    outputs = [
        await generate(subgoal_prompt("#fault:task:throttle:2 英語を話す"), SG, provider),
        await generate(action_prompt("#fault:task:hang", "#fault:subgoal:rejected"), AC, provider),
        await generate(
            task_prompt("英語", "#fault:action:invalid_json:3", ActionType.EXECUTION), TK, provider
        ),
    ]
    for text in outputs:
        assert "#fault" not in text
        assert "fault:" not in text
