"""Validated generation output: what generate_unit hands to persist_unit through the workflow.

The items are already parsed, normalised and quality-checked; persist_unit only saves them.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from domain.enums import ActionType, TaskPriority


class _Item(BaseModel):
    model_config = ConfigDict(frozen=True)


class SubGoalItem(_Item):
    title: str
    description: str
    background: str = ""


class ActionItem(_Item):
    title: str
    description: str
    background: str = ""
    type: ActionType


class TaskItem(_Item):
    title: str
    description: str = ""
    estimated_minutes: int = 45
    priority: TaskPriority = TaskPriority.MEDIUM
    depends_on: list[int] = Field(default_factory=list)


class GenerationMetadata(_Item):
    provider: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    generation_attempts: int = 1
    duration_ms: int = 0
    estimated_cost_usd: float = 0.0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class GeneratedUnit(_Item):
    """Exactly one of the three item lists is filled, by the job type."""

    subgoals: list[SubGoalItem] = Field(default_factory=list)
    actions: list[ActionItem] = Field(default_factory=list)
    tasks: list[TaskItem] = Field(default_factory=list)
    metadata: GenerationMetadata
