"""What a generation job is before it has a row: the new-job record, its scope and its units' type."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from domain.enums import ProcessingType, Scope, TargetType
from domain.workflow_io import GenerationInput

USER_CANCEL_REASON = "ユーザーによるキャンセル"
OPERATOR_CANCEL_REASON = "オペレーターによるキャンセル"

UNIT_TYPE_BY_JOB: dict[ProcessingType, TargetType] = {
    ProcessingType.SUBGOAL_GENERATION: TargetType.GOAL,
    ProcessingType.ACTION_GENERATION: TargetType.SUB_GOAL,
    ProcessingType.TASK_GENERATION: TargetType.ACTION,
}


def job_scope(job_type: str, target_type: str) -> Scope:
    """An ACTION or TASK job aimed at a goal is goal-scope: one unit per subgoal or action of the goal.
    Every other job, a SUBGOAL job included, has one unit: its target."""
    aimed_at_goal = target_type == TargetType.GOAL and job_type != ProcessingType.SUBGOAL_GENERATION
    return Scope.GOAL if aimed_at_goal else Scope.TARGET


def is_goal_scope(job: Any) -> bool:
    """``job``: anything with ``type`` and ``target_type`` (a row, a NewJob)."""
    return job_scope(job.type, job.target_type) is Scope.GOAL


@dataclass(frozen=True)
class NewJob:
    process_id: uuid.UUID
    user_id: uuid.UUID
    type: ProcessingType
    target_type: TargetType
    target_id: uuid.UUID
    params: dict[str, Any]
    total_units: int
    created_at: datetime
    estimated_completion_at: datetime
    request_id: str | None
    parent_process_id: uuid.UUID | None = None
    root_process_id: uuid.UUID | None = None
    retry_count: int = 0
    units: list[tuple[uuid.UUID, TargetType]] = field(default_factory=list)
    target_is_new: bool = False  # the id reserved for a goal the job will create: no job can touch it yet

    @property
    def scope(self) -> Scope:
        return job_scope(self.type, self.target_type)

    def workflow_input(self) -> GenerationInput:
        return GenerationInput.model_validate(self, from_attributes=True)
