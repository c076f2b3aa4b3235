"""The ``offline`` provider (spec 3.2): deterministic, goal-specific Japanese output with no network.

How it knows what to write: ``request.context.type`` says which list to produce, and the titles come
back out of the user message's labelled data sections with ``ai.prompts.read_section`` (goal title for
subgoals; subgoal title for actions; action title and ``アクション種別`` for tasks). A message without
those sections still gets valid output, with generic excerpts.

Seed: SHA-256 of the processing type, the unit (target) id and the user message, which is built from
normalised text; choices are drawn from further SHA-256 digests, so the output does not depend on the
``random`` module's algorithm. The system message is not part of the seed: it holds only our
instructions and regeneration feedback.

Faults (``faults_enabled``): ``#fault:<stage>:<kind>[:<n>|:job<n>]`` in the goal title, or in the title
of the subgoal (ACTION) or action (TASK) being processed. ``n`` (default 1) counts Temporal attempts for
the failing kinds and outputs within an attempt for ``invalid_json`` / ``bad_quality``; ``job<n>`` counts
jobs of a retry chain instead (the original is job 1), so ``job1`` fails the first job every time and
lets its manual retry succeed. The first directive whose stage matches and that is still active
applies. Directives are removed before any title is excerpted, so output never holds one.
``deaf`` models a provider call that ignores cancellation: the ``AI_OFFLINE_LATENCY_MS`` wait runs to its
end whatever happens, then valid output is returned.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

from ai.offline_phrases import EXECUTION_ACTIONS, EXECUTION_TASKS, HABIT_ACTIONS, HABIT_TASKS, THEMES
from ai.prompts import DataTag, read_section
from ai.provider import AIRequest, AIResponse, ProviderError, ProviderErrorKind
from domain.enums import ActionType, ProcessingType

PROVIDER_NAME = "offline"
MODEL_NAME = "offline-v1"
EXCERPT_LENGTH = 10

_STAGES = {
    ProcessingType.SUBGOAL_GENERATION: "subgoal",
    ProcessingType.ACTION_GENERATION: "action",
    ProcessingType.TASK_GENERATION: "task",
}
_ATTEMPT_FAULTS = frozenset({"throttle", "server_error", "rejected", "hang", "deaf"})
_RAISING_FAULTS = frozenset({"throttle", "server_error", "rejected", "hang"})
_DIRECTIVE = re.compile(
    r"#fault:(subgoal|action|task|any):(throttle|server_error|rejected|hang|deaf|invalid_json|bad_quality)"
    r"(?::(job)?(\d+))?"
)
_DIRECTIVE_TEXT = re.compile(r"#fault:[A-Za-z0-9_:]*")
_EXCERPT_END = re.compile(r"[（(【「\[]")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Fault:
    stage: str
    kind: str
    limit: int
    per_job: bool  # `job<n>`: counts jobs of the retry chain, not attempts or outputs

    def active(self, request: AIRequest) -> bool:
        context = request.context
        if self.stage not in ("any", _STAGES[context.type]):
            return False
        if self.per_job:
            counter = context.retry_count + 1
        else:
            counter = context.attempt if self.kind in _ATTEMPT_FAULTS else context.generation
        return counter <= self.limit


class _Dice:
    """Deterministic draws: the n-th draw is SHA-256(seed || n)."""

    def __init__(self, seed: bytes) -> None:
        self._seed = seed
        self._draws = 0

    def below(self, bound: int) -> int:
        self._draws += 1
        digest = hashlib.sha256(self._seed + self._draws.to_bytes(8, "big")).digest()
        return int.from_bytes(digest[:8], "big") % bound

    def pick(self, options: Sequence[T]) -> T:
        return options[self.below(len(options))]

    def shuffled(self, options: Sequence[T]) -> list[T]:
        out = list(options)
        for i in range(len(out) - 1, 0, -1):
            j = self.below(i + 1)
            out[i], out[j] = out[j], out[i]
        return out

    def ordered_sample(self, options: Sequence[T], count: int) -> list[T]:
        chosen = sorted(self.shuffled(range(len(options)))[:count])
        return [options[i] for i in chosen]


def excerpt(title: str | None, fallback: str) -> str:
    """At most 10 code points from the head of a title, stopping at an opening bracket; no directive."""
    text = " ".join(_DIRECTIVE_TEXT.sub(" ", title or "").split())
    head = _EXCERPT_END.split(text, maxsplit=1)[0].strip() or text
    return head[:EXCERPT_LENGTH].strip() or fallback


_ESTIMATES = (30, 45, 60)
_TASK_COUNTS = {ActionType.EXECUTION: (3, 4, 5), ActionType.HABIT: (1, 2, 3)}
_INVALID_JSON_TEXT = "申し訳ありませんが、ご依頼の内容を処理できませんでした。"
_OVERLONG_SUFFIX = "（この作業の目的と手順と注意点を詳しく書いたとても長いタイトルです）" * 2


class OfflineProvider:
    def __init__(self, *, latency_ms: int = 0, faults_enabled: bool = False) -> None:
        self._latency_ms = latency_ms
        self._faults_enabled = faults_enabled

    @property
    def name(self) -> str:
        return PROVIDER_NAME

    async def aclose(self) -> None:
        """Nothing to release: the offline provider holds no connections."""

    async def generate(self, request: AIRequest) -> AIResponse:
        started = time.monotonic()
        fault = self._active_fault(request)
        kind = fault.kind if fault is not None else ""
        if self._latency_ms > 0:
            wait = _sleep_ignoring_cancel if kind == "deaf" else asyncio.sleep
            await wait(self._latency_ms / 1000)
        if kind in _RAISING_FAULTS:
            await _raise_fault(kind)
        text = (
            _INVALID_JSON_TEXT
            if kind == "invalid_json"
            else _render(request, bad_quality=kind == "bad_quality")
        )
        return AIResponse(
            text=text,
            input_tokens=_tokens(request.system + request.user),
            output_tokens=_tokens(text),
            provider=PROVIDER_NAME,
            model=MODEL_NAME,
            finish_reason="stop",
            latency_ms=int((time.monotonic() - started) * 1000),
        )

    def _active_fault(self, request: AIRequest) -> _Fault | None:
        if not self._faults_enabled:
            return None
        for title in _processed_titles(request):
            for stage, kind, per_job, limit in _DIRECTIVE.findall(title):
                fault = _Fault(stage, kind, int(limit) if limit else 1, per_job=bool(per_job))
                if fault.active(request):
                    return fault
        return None


def _processed_titles(request: AIRequest) -> list[str]:
    tags = [DataTag.GOAL_TITLE]
    if request.context.type is ProcessingType.ACTION_GENERATION:
        tags.append(DataTag.SUBGOAL_TITLE)
    elif request.context.type is ProcessingType.TASK_GENERATION:
        tags.append(DataTag.ACTION_TITLE)
    return [title for tag in tags if (title := read_section(request.user, tag)) is not None]


async def _sleep_ignoring_cancel(seconds: float) -> None:
    """Sleep ``seconds`` however often the caller is cancelled (a provider that never hears a cancel)."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(left)


async def _raise_fault(kind: str) -> NoReturn:
    if kind == "hang":
        await asyncio.Event().wait()
    if kind == "rejected":
        raise ProviderError(ProviderErrorKind.REJECTED, "offline fault: rejected")
    retry_after = 1.0 if kind == "throttle" else None
    raise ProviderError(ProviderErrorKind.TRANSIENT, f"offline fault: {kind}", retry_after=retry_after)


def _tokens(text: str) -> int:
    return math.ceil(len(text) / 2)


def _render(request: AIRequest, *, bad_quality: bool) -> str:
    seed = "\x1f".join((request.context.type.value, str(request.context.unit_id), request.user))
    dice = _Dice(hashlib.sha256(seed.encode()).digest())
    goal = excerpt(read_section(request.user, DataTag.GOAL_TITLE), "目標")
    document: dict[str, Any]
    if request.context.type is ProcessingType.SUBGOAL_GENERATION:
        subgoals = _subgoals(dice, goal)
        document = {"subGoals": subgoals[:-1] if bad_quality else subgoals}
    elif request.context.type is ProcessingType.ACTION_GENERATION:
        subgoal = excerpt(read_section(request.user, DataTag.SUBGOAL_TITLE), "サブ目標")
        actions = _actions(dice, goal, subgoal)
        document = {"actions": actions[:-1] if bad_quality else actions}
    else:
        action = excerpt(read_section(request.user, DataTag.ACTION_TITLE), "アクション")
        habit = read_section(request.user, DataTag.ACTION_TYPE) == ActionType.HABIT.value
        tasks = _tasks(dice, action, ActionType.HABIT if habit else ActionType.EXECUTION)
        if bad_quality:
            tasks = [{**task, "title": task["title"] + _OVERLONG_SUFFIX} for task in tasks]
        document = {"tasks": tasks}
    return json.dumps(document, ensure_ascii=False)


def _subgoals(dice: _Dice, goal: str) -> list[dict[str, Any]]:
    out = []
    for titles, descriptions, background in dice.shuffled(THEMES):
        out.append(
            {
                "title": f"{dice.pick(titles)}（{goal}）",
                "description": dice.pick(descriptions).format(g=goal),
                "background": background,
            }
        )
    return out


def _actions(dice: _Dice, goal: str, subgoal: str) -> list[dict[str, Any]]:
    chosen = [(entry, "execution") for entry in dice.shuffled(EXECUTION_ACTIONS)[:5]]
    chosen += [(entry, "habit") for entry in dice.shuffled(HABIT_ACTIONS)[:3]]
    return [
        {
            "title": f"{title}（{subgoal}）",
            "description": description.format(s=subgoal, g=goal),
            "background": background,
            "type": action_type,
        }
        for (title, description, background), action_type in chosen
    ]


def _tasks(dice: _Dice, action: str, action_type: ActionType) -> list[dict[str, Any]]:
    pool = HABIT_TASKS if action_type is ActionType.HABIT else EXECUTION_TASKS
    steps = dice.ordered_sample(pool, dice.pick(_TASK_COUNTS[action_type]))
    return [
        {
            "title": f"{title}（{action}）",
            "description": description.format(a=action),
            "estimatedMinutes": dice.pick(_ESTIMATES),
            "priority": priority,
            "dependencies": [index - 1] if index > 0 and action_type is ActionType.EXECUTION else [],
        }
        for index, (title, description, priority) in enumerate(steps)
    ]
