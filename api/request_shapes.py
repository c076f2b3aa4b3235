"""What requests may carry (spec 5.1, 5.3, 5.5-5.8), declared for the OpenAPI document only.

The API does not validate with these: ``api/bodies.py`` and ``api/validation.py`` do, so that every
failure is a catalogue error (400 ``VALIDATION_ERROR`` with ``details.fields``), never FastAPI's 422.
``tests/api/test_openapi_document.py`` checks that the two agree on sample bodies.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired

from pydantic import ConfigDict, Field, with_config
from typing_extensions import TypedDict  # pydantic needs it before Python 3.12

from api.bodies import CANCEL_REASON_MAX
from api.response_shapes import Uuid
from domain.enums import ProcessingStatus, ProcessingType

CLOSED = ConfigDict(extra="forbid")

DateTimeWithOffset = Annotated[
    str,
    Field(
        description="ISO 8601 date-time with `Z` or a numeric offset",
        json_schema_extra={"format": "date-time", "example": "2026-12-31T23:59:59+09:00"},
    ),
]
Regenerate = Annotated[
    bool, Field(description="Replace the target's existing children (else 409 `TARGET_HAS_CHILDREN`)")
]


def _text(low: int, high: int) -> Any:
    return Field(min_length=low, max_length=high, description=f"{low}..{high} characters after normalisation")


# ---------------------------------------------------------------------------------------------- generate


@with_config(CLOSED)
class SubgoalParams(TypedDict):
    """A new goal (no ``goalId``) or new subgoals for an existing goal. The deadline must be in the future."""

    title: Annotated[str, _text(1, 200)]
    description: Annotated[str, _text(1, 2000)]
    deadline: DateTimeWithOffset
    background: Annotated[str, _text(1, 1000)]
    constraints: NotRequired[Annotated[str, _text(0, 1000)]]
    goalId: NotRequired[Uuid]
    regenerate: NotRequired[Regenerate]


@with_config(CLOSED)
class SubGoalTarget(TypedDict):
    """The 8 actions of one subgoal."""

    subGoalId: Uuid
    regenerate: NotRequired[Regenerate]


@with_config(CLOSED)
class ActionTarget(TypedDict):
    """The tasks of one action."""

    actionId: Uuid
    regenerate: NotRequired[Regenerate]


@with_config(CLOSED)
class GoalTarget(TypedDict):
    """Goal scope: every subgoal (ACTION_GENERATION) or every action (TASK_GENERATION) of the goal."""

    goalId: Uuid
    regenerate: NotRequired[Regenerate]


@with_config(CLOSED)
class SubgoalGeneration(TypedDict):
    type: Literal[ProcessingType.SUBGOAL_GENERATION]
    params: SubgoalParams


@with_config(CLOSED)
class ActionGeneration(TypedDict):
    type: Literal[ProcessingType.ACTION_GENERATION]
    params: SubGoalTarget | GoalTarget


@with_config(CLOSED)
class TaskGeneration(TypedDict):
    type: Literal[ProcessingType.TASK_GENERATION]
    params: ActionTarget | GoalTarget


GenerateRequest = Annotated[
    SubgoalGeneration | ActionGeneration | TaskGeneration, Field(discriminator="type")
]


# ---------------------------------------------------------------------------------------------- retry, cancel


@with_config(CLOSED)
class RetryRequest(TypedDict):
    """Absent or ``{}``."""


@with_config(CLOSED)
class CancelRequest(TypedDict):
    reason: NotRequired[
        Annotated[
            str,
            Field(max_length=CANCEL_REASON_MAX, description="Default: ユーザーによるキャンセル"),
        ]
    ]


# ---------------------------------------------------------------------------------------------- queries


class HistoryQuery(TypedDict):
    """Query parameters of GET history; unknown parameters are ignored."""

    page: NotRequired[Annotated[int, Field(ge=1, json_schema_extra={"default": 1})]]
    pageSize: NotRequired[Annotated[int, Field(ge=1, le=100, json_schema_extra={"default": 20})]]
    type: NotRequired[ProcessingType]
    status: NotRequired[ProcessingStatus]
    startDate: NotRequired[
        Annotated[str, Field(description="Date-time with offset, or `YYYY-MM-DD` (from 00:00:00.000Z)")]
    ]
    endDate: NotRequired[
        Annotated[str, Field(description="Date-time with offset, or `YYYY-MM-DD` (to 23:59:59.999Z)")]
    ]
    targetId: NotRequired[Uuid]
    rootProcessId: NotRequired[Uuid]


class EventsQuery(TypedDict):
    """Query parameters of GET events: the JSON page, or where a stream starts without Last-Event-ID."""

    after: NotRequired[
        Annotated[int, Field(ge=0, description="Events with a larger seq", json_schema_extra={"default": 0})]
    ]
    limit: NotRequired[
        Annotated[int, Field(ge=1, le=500, description="JSON page only", json_schema_extra={"default": 100})]
    ]
