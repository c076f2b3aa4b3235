"""The JSON shapes of the responses (spec 3.8, 5.3-5.10) as typed dicts.

``api/views.py`` returns these types, so mypy holds every view to its declared keys and value types at no
cost per request (a typed dict is a plain dict at run time), and the OpenAPI document declares the same
classes as the response models. Objects are closed (``additionalProperties: false``); the parts that are
stored JSON (``result``, error ``details``, event ``payload``) are checked against the declaration by
``tests/api/test_openapi_bodies.py`` on bodies the API really returns.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired

from pydantic import ConfigDict, Field, with_config
from typing_extensions import TypedDict  # pydantic needs it before Python 3.12

from domain.enums import (
    ActionType,
    CancelledBy,
    EventType,
    GoalStatus,
    ProcessingStatus,
    ProcessingType,
    Scope,
    TargetType,
    TaskPriority,
    TaskStatus,
)
from domain.errors import ErrorCode

CLOSED = ConfigDict(extra="forbid")

Uuid = Annotated[str, Field(json_schema_extra={"format": "uuid"})]
Timestamp = Annotated[
    str,
    Field(
        description="UTC, always `YYYY-MM-DDTHH:MM:SS.mmmZ`",
        json_schema_extra={"format": "date-time", "example": "2026-03-01T00:00:00.000Z"},
    ),
]
Percent = Annotated[int, Field(ge=0, le=100)]
# Stored as plain text columns, so the views pass them through as str; the schema still lists the values.
CancelledByValue = Annotated[str, Field(json_schema_extra={"enum": [c.value for c in CancelledBy]})]


# ---------------------------------------------------------------------------------------------- errors


@with_config(CLOSED)
class ErrorBody(TypedDict):
    code: ErrorCode
    message: Annotated[str, Field(description="In the language chosen by `Accept-Language`")]
    retryable: bool
    details: NotRequired[
        Annotated[
            dict[str, Any],
            Field(
                description="Validation errors: `{fields: [{field, message}]}`; "
                "429: `{retryAfter, limit, remaining, reset}`; otherwise as the code says"
            ),
        ]
    ]


@with_config(CLOSED)
class ErrorEnvelope(TypedDict):
    success: Literal[False]
    error: ErrorBody


# ---------------------------------------------------------------------------------------------- items


@with_config(CLOSED)
class SubGoalItem(TypedDict):
    id: Uuid
    title: str
    description: str
    background: str
    position: int
    progress: Percent
    createdAt: Timestamp
    updatedAt: Timestamp


@with_config(CLOSED)
class ActionItem(TypedDict):
    id: Uuid
    title: str
    description: str
    background: str
    type: ActionType
    position: int
    progress: Percent
    createdAt: Timestamp
    updatedAt: Timestamp


@with_config(CLOSED)
class TaskItem(TypedDict):
    id: Uuid
    title: str
    description: str
    type: ActionType
    status: TaskStatus
    estimatedMinutes: int
    priority: TaskPriority
    position: int
    dependsOn: Annotated[list[int], Field(description="Positions of earlier tasks of the same action")]
    createdAt: Timestamp
    updatedAt: Timestamp


# ---------------------------------------------------------------------------------------------- result


@with_config(CLOSED)
class Tokens(TypedDict):
    input: int
    output: int
    total: int


@with_config(CLOSED)
class GoalContext(TypedDict):
    goalTitle: str
    subGoalTitle: str


@with_config(CLOSED)
class ActionContext(TypedDict):
    goalTitle: str
    subGoalTitle: str
    actionTitle: str
    actionType: ActionType


@with_config(CLOSED)
class GenerationMetadata(TypedDict):
    provider: str
    model: str
    generatedAt: Timestamp
    generationAttempts: int
    tokensUsed: Tokens
    estimatedCostUsd: float
    durationMs: int
    replacedCount: int
    goalContext: NotRequired[GoalContext]
    actionContext: NotRequired[ActionContext]
    taskCount: NotRequired[int]
    totalEstimatedMinutes: NotRequired[int]


@with_config(CLOSED)
class SubGoalResult(TypedDict):
    goalId: Uuid
    subGoals: list[SubGoalItem]
    metadata: GenerationMetadata


@with_config(CLOSED)
class ActionResult(TypedDict):
    subGoalId: Uuid
    actions: list[ActionItem]
    metadata: GenerationMetadata


@with_config(CLOSED)
class TaskResult(TypedDict):
    actionId: Uuid
    tasks: list[TaskItem]
    metadata: GenerationMetadata


@with_config(CLOSED)
class SucceededUnit(TypedDict):
    unitId: Uuid
    unitType: TargetType
    createdCount: int


@with_config(CLOSED)
class FailedUnit(TypedDict):
    unitId: Uuid
    unitType: TargetType
    error: ErrorBody


@with_config(CLOSED)
class GoalScopeMetadata(TypedDict):
    generationAttempts: int
    tokensUsed: Tokens
    createdCount: int
    replacedCount: int


@with_config(CLOSED)
class GoalScopeResult(TypedDict):
    goalId: Uuid
    scope: Literal[Scope.GOAL]
    totalUnits: int
    succeededUnits: list[SucceededUnit]
    failedUnits: list[FailedUnit]
    notAttemptedUnits: list[Uuid]
    metadata: GoalScopeMetadata


JobResult = SubGoalResult | ActionResult | TaskResult | GoalScopeResult


# ---------------------------------------------------------------------------------------------- jobs


@with_config(CLOSED)
class Accepted(TypedDict):
    """202 of POST generate and retry. For a new goal, ``targetId`` is the id the goal will have; a retry's
    answer adds the lineage fields."""

    processId: Uuid
    status: ProcessingStatus
    type: ProcessingType
    targetType: TargetType
    targetId: Uuid
    scope: Scope
    totalUnits: int
    createdAt: Timestamp
    estimatedCompletionTime: Timestamp
    retryCount: NotRequired[int]
    originalProcessId: NotRequired[Uuid]
    rootProcessId: NotRequired[Uuid]


@with_config(CLOSED)
class JobFields(TypedDict):
    """The fields a job has in the status answer and in a history item alike."""

    processId: Uuid
    type: ProcessingType
    status: ProcessingStatus
    progress: Percent
    targetType: TargetType
    targetId: Uuid
    retryCount: int
    parentProcessId: Uuid | None
    createdAt: Timestamp
    updatedAt: Timestamp
    completedAt: Timestamp | None


@with_config(CLOSED)
class UnitCounts(TypedDict):
    total: int
    succeeded: int
    failed: int


class JobStatus(JobFields):
    """``estimatedCompletionTime`` only while PENDING or PROCESSING; ``result`` whenever the job saved
    one; ``error`` for FAILED, TIMEOUT and CANCELLED; ``cancelReason`` and ``cancelledBy`` for CANCELLED."""

    scope: Scope
    units: UnitCounts
    rootProcessId: Uuid
    startedAt: Timestamp | None
    estimatedCompletionTime: NotRequired[Timestamp]
    result: NotRequired[JobResult]
    error: NotRequired[ErrorBody]
    cancelReason: NotRequired[str | None]
    cancelledBy: NotRequired[CancelledByValue | None]


class HistoryItem(JobFields):
    """``error`` (without ``details``) for FAILED, TIMEOUT and CANCELLED."""

    error: NotRequired[ErrorBody]


@with_config(CLOSED)
class Pagination(TypedDict):
    page: int
    pageSize: int
    totalCount: int
    totalPages: int
    hasNext: bool
    hasPrevious: bool


@with_config(CLOSED)
class HistoryPage(TypedDict):
    processes: list[HistoryItem]
    pagination: Pagination


@with_config(CLOSED)
class Cancelled(TypedDict):
    processId: Uuid
    status: ProcessingStatus
    type: ProcessingType
    progress: Percent
    createdAt: Timestamp
    updatedAt: Timestamp
    completedAt: Timestamp | None
    cancelledAt: Timestamp | None
    cancelReason: str | None
    cancelledBy: CancelledByValue | None
    message: str


@with_config(CLOSED)
class Event(TypedDict):
    """One ``processing_events`` row; also the ``data`` of each server-sent event."""

    processId: Uuid
    seq: int
    type: Annotated[str, Field(json_schema_extra={"enum": [t.value for t in EventType]})]
    status: ProcessingStatus
    progress: Percent
    payload: dict[str, Any]
    createdAt: Timestamp


@with_config(CLOSED)
class EventsPage(TypedDict):
    events: list[Event]
    nextAfter: int
    hasMore: bool


# ---------------------------------------------------------------------------------------------- goal tree


class TaskNode(TaskItem):
    deadline: Timestamp | None
    completedAt: Timestamp | None


class ActionNode(ActionItem):
    tasks: list[TaskNode]


class SubGoalNode(SubGoalItem):
    actions: list[ActionNode]


@with_config(CLOSED)
class GoalNode(TypedDict):
    id: Uuid
    title: str
    description: str | None
    deadline: Timestamp | None
    background: str | None
    constraints: str | None
    status: GoalStatus
    progress: Percent
    createdAt: Timestamp
    updatedAt: Timestamp
    subGoals: list[SubGoalNode]


@with_config(CLOSED)
class GoalTree(TypedDict):
    goal: GoalNode


# ---------------------------------------------------------------------------------------------- envelopes


@with_config(CLOSED)
class AcceptedEnvelope(TypedDict):
    success: Literal[True]
    data: Accepted


@with_config(CLOSED)
class StatusEnvelope(TypedDict):
    success: Literal[True]
    data: JobStatus


@with_config(CLOSED)
class CancelledEnvelope(TypedDict):
    success: Literal[True]
    data: Cancelled


@with_config(CLOSED)
class HistoryEnvelope(TypedDict):
    success: Literal[True]
    data: HistoryPage


@with_config(CLOSED)
class EventsEnvelope(TypedDict):
    success: Literal[True]
    data: EventsPage


@with_config(CLOSED)
class GoalEnvelope(TypedDict):
    success: Literal[True]
    data: GoalTree


# ---------------------------------------------------------------------------------------------- probes


@with_config(CLOSED)
class Health(TypedDict):
    status: Literal["ok"]
    timestamp: Timestamp


@with_config(CLOSED)
class ReadinessChecks(TypedDict):
    database: Literal["ok", "error"]
    temporal: Literal["ok", "error"]


@with_config(CLOSED)
class Readiness(TypedDict):
    status: Literal["ok", "unavailable"]
    checks: ReadinessChecks
    timestamp: Timestamp
