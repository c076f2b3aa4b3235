"""What a prompt is built from (spec 3.1 step 2): the stored context of one unit.

``db.context`` loads these from PostgreSQL; ``ai.prompts`` turns them into messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from domain.enums import ActionType

DEFAULT_PROMPT_TIMEZONE = "Asia/Tokyo"


@dataclass(frozen=True, slots=True, kw_only=True)
class UserContext:
    industry: str | None = None
    job_type: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GoalContext:
    title: str
    description: str | None = None
    deadline: datetime | None = None  # naive values are taken as UTC
    background: str | None = None
    constraints: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SubGoalContext:
    title: str
    description: str
    background: str = ""
    position: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionContext:
    title: str
    description: str
    background: str = ""
    type: ActionType


@dataclass(frozen=True, slots=True, kw_only=True)
class SubGoalPromptContext:
    goal: GoalContext
    user: UserContext = field(default_factory=UserContext)
    timezone: str = DEFAULT_PROMPT_TIMEZONE


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionPromptContext:
    """``siblings`` may hold all subgoals of the goal or only the others; the one sharing the
    target's position is never shown as a sibling."""

    goal: GoalContext
    subgoal: SubGoalContext
    siblings: Sequence[SubGoalContext] = ()
    user: UserContext = field(default_factory=UserContext)
    timezone: str = DEFAULT_PROMPT_TIMEZONE


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskPromptContext:
    goal: GoalContext
    subgoal: SubGoalContext
    action: ActionContext
    user: UserContext = field(default_factory=UserContext)
    timezone: str = DEFAULT_PROMPT_TIMEZONE


PromptContext = SubGoalPromptContext | ActionPromptContext | TaskPromptContext
