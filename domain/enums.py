"""Enumerations shared by every room (values are the PostgreSQL enum labels)."""

from enum import StrEnum


class ProcessingType(StrEnum):
    SUBGOAL_GENERATION = "SUBGOAL_GENERATION"
    ACTION_GENERATION = "ACTION_GENERATION"
    TASK_GENERATION = "TASK_GENERATION"


class ProcessingStatus(StrEnum):
    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    TIMEOUT = "TIMEOUT"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self not in ACTIVE_STATUSES


ACTIVE_STATUSES: frozenset[ProcessingStatus] = frozenset(
    {ProcessingStatus.PENDING, ProcessingStatus.PROCESSING}
)


class TargetType(StrEnum):
    GOAL = "GOAL"
    SUB_GOAL = "SUB_GOAL"
    ACTION = "ACTION"


class Scope(StrEnum):
    TARGET = "TARGET"
    GOAL = "GOAL"


class UnitStatus(StrEnum):
    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


class GoalStatus(StrEnum):
    ACTIVE = "ACTIVE"
    COMPLETED = "COMPLETED"
    PAUSED = "PAUSED"
    CANCELLED = "CANCELLED"


class ActionType(StrEnum):
    EXECUTION = "EXECUTION"
    HABIT = "HABIT"


class TaskStatus(StrEnum):
    NOT_STARTED = "NOT_STARTED"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    SKIPPED = "SKIPPED"


class TaskPriority(StrEnum):
    HIGH = "HIGH"
    MEDIUM = "MEDIUM"
    LOW = "LOW"


class UserIndustry(StrEnum):
    TECHNOLOGY = "TECHNOLOGY"
    FINANCE = "FINANCE"
    HEALTHCARE = "HEALTHCARE"
    EDUCATION = "EDUCATION"
    MANUFACTURING = "MANUFACTURING"
    RETAIL = "RETAIL"
    CONSULTING = "CONSULTING"
    GOVERNMENT = "GOVERNMENT"
    NON_PROFIT = "NON_PROFIT"
    OTHER = "OTHER"


class CompanySize(StrEnum):
    STARTUP = "STARTUP"
    SMALL = "SMALL"
    MEDIUM = "MEDIUM"
    LARGE = "LARGE"
    ENTERPRISE = "ENTERPRISE"


class CancelledBy(StrEnum):
    USER = "USER"
    OPERATOR = "OPERATOR"
    SYSTEM = "SYSTEM"


class EventType(StrEnum):
    CREATED = "CREATED"
    STARTED = "STARTED"
    PROGRESS = "PROGRESS"
    ATTEMPT_FAILED = "ATTEMPT_FAILED"
    UNIT_SUCCEEDED = "UNIT_SUCCEEDED"
    UNIT_FAILED = "UNIT_FAILED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    TIMEOUT = "TIMEOUT"
    CANCELLED = "CANCELLED"
    REOPENED = "REOPENED"
    RETRY_CREATED = "RETRY_CREATED"


class Language(StrEnum):
    JA = "ja"
    EN = "en"
