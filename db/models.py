"""SQLAlchemy 2 models for every table of spec section 2."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy import Enum as SAEnum
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from domain.enums import (
    ActionType,
    CompanySize,
    GoalStatus,
    ProcessingStatus,
    ProcessingType,
    TargetType,
    TaskPriority,
    TaskStatus,
    UnitStatus,
    UserIndustry,
)

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def pg_enum(enum_cls: type[Any], name: str) -> SAEnum:
    return SAEnum(enum_cls, name=name, values_callable=lambda e: [m.value for m in e])


processing_type = pg_enum(ProcessingType, "processing_type")
processing_status = pg_enum(ProcessingStatus, "processing_status")
target_type = pg_enum(TargetType, "target_type")
unit_status = pg_enum(UnitStatus, "unit_status")
goal_status = pg_enum(GoalStatus, "goal_status")
action_type = pg_enum(ActionType, "action_type")
task_type = pg_enum(ActionType, "task_type")
task_status = pg_enum(TaskStatus, "task_status")
task_priority = pg_enum(TaskPriority, "task_priority")
user_industry = pg_enum(UserIndustry, "user_industry")
company_size = pg_enum(CompanySize, "company_size")

ALL_ENUMS = (
    processing_type,
    processing_status,
    target_type,
    unit_status,
    goal_status,
    action_type,
    task_type,
    task_status,
    task_priority,
    user_industry,
    company_size,
)

TZ = DateTime(timezone=True)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _created() -> Mapped[datetime]:
    return mapped_column(TZ, nullable=False, server_default=func.now())


def _updated() -> Mapped[datetime]:
    return mapped_column(TZ, nullable=False, server_default=func.now())


def _pk() -> Mapped[uuid.UUID]:
    return mapped_column(UUID(as_uuid=True), primary_key=True)


def _fk_process_set_null() -> Mapped[uuid.UUID | None]:
    return mapped_column(
        UUID(as_uuid=True), ForeignKey("processing_states.id", ondelete="SET NULL"), nullable=True
    )


class User(Base):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("issuer", "subject", name="uq_users_issuer_subject"),)

    id: Mapped[uuid.UUID] = _pk()
    issuer: Mapped[str] = mapped_column(String(255), nullable=False, server_default=text("''"))
    subject: Mapped[str] = mapped_column(String(255), nullable=False)
    email: Mapped[str | None] = mapped_column(String(255))
    name: Mapped[str | None] = mapped_column(String(100))
    industry: Mapped[UserIndustry | None] = mapped_column(user_industry)
    company_size: Mapped[CompanySize | None] = mapped_column(company_size)
    job_type: Mapped[str | None] = mapped_column(String(100))
    position: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class Goal(Base):
    __tablename__ = "goals"
    __table_args__ = (
        CheckConstraint("progress BETWEEN 0 AND 100", name="progress_range"),
        Index("ix_goals_user_status", "user_id", "status"),
        Index("ix_goals_user_created", "user_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = _pk()
    user_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    title: Mapped[str] = mapped_column(String(200), nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    deadline: Mapped[datetime | None] = mapped_column(TZ)
    background: Mapped[str | None] = mapped_column(Text)
    constraints: Mapped[str | None] = mapped_column(Text)
    status: Mapped[GoalStatus] = mapped_column(
        goal_status, nullable=False, server_default=GoalStatus.ACTIVE.value
    )
    progress: Mapped[int] = mapped_column(SmallInteger, nullable=False, server_default=text("0"))
    created_by_process_id: Mapped[uuid.UUID | None] = _fk_process_set_null()
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class SubGoal(Base):
    __tablename__ = "sub_goals"
    __table_args__ = (
        UniqueConstraint("goal_id", "position", name="uq_sub_goals_goal_position"),
        CheckConstraint("position BETWEEN 0 AND 7", name="position_range"),
        CheckConstraint("progress BETWEEN 0 AND 100", name="progress_range"),
    )

    id: Mapped[uuid.UUID] = _pk()
    goal_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("goals.id", ondelete="CASCADE"), nullable=False
    )
    title: Mapped[str] = mapped_column(String(200), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False)
    background: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("''"))
    constraints: Mapped[str | None] = mapped_column(Text)
    position: Mapped[int] = mapped_column(SmallInteger, nullable=False)
    progress: Mapped[int] = mapped_column(SmallInteger, nullable=False, server_default=text("0"))
    generated_by_process_id: Mapped[uuid.UUID | None] = _fk_process_set_null()
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class Action(Base):
    __tablename__ = "actions"
    __table_args__ = (
        UniqueConstraint("sub_goal_id", "position", name="uq_actions_sub_goal_position"),
        CheckConstraint("position BETWEEN 0 AND 7", name="position_range"),
        CheckConstraint("progress BETWEEN 0 AND 100", name="progress_range"),
    )

    id: Mapped[uuid.UUID] = _pk()
    sub_goal_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("sub_goals.id", ondelete="CASCADE"), nullable=False
    )
    title: Mapped[str] = mapped_column(String(200), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False)
    background: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("''"))
    constraints: Mapped[str | None] = mapped_column(Text)
    type: Mapped[ActionType] = mapped_column(
        action_type, nullable=False, server_default=ActionType.EXECUTION.value
    )
    position: Mapped[int] = mapped_column(SmallInteger, nullable=False)
    progress: Mapped[int] = mapped_column(SmallInteger, nullable=False, server_default=text("0"))
    generated_by_process_id: Mapped[uuid.UUID | None] = _fk_process_set_null()
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (
        UniqueConstraint("action_id", "position", name="uq_tasks_action_position"),
        CheckConstraint("position >= 0", name="position_nonnegative"),
        CheckConstraint("estimated_minutes > 0", name="estimated_minutes_positive"),
        Index("ix_tasks_action_status", "action_id", "status"),
        Index("ix_tasks_status", "status"),
        Index("ix_tasks_deadline", "deadline"),
        Index("ix_tasks_created_at", "created_at"),
    )

    id: Mapped[uuid.UUID] = _pk()
    action_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("actions.id", ondelete="CASCADE"), nullable=False
    )
    title: Mapped[str] = mapped_column(String(255), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("''"))
    type: Mapped[ActionType] = mapped_column(task_type, nullable=False)
    status: Mapped[TaskStatus] = mapped_column(
        task_status, nullable=False, server_default=TaskStatus.NOT_STARTED.value
    )
    estimated_minutes: Mapped[int] = mapped_column(SmallInteger, nullable=False)
    priority: Mapped[TaskPriority] = mapped_column(
        task_priority, nullable=False, server_default=TaskPriority.MEDIUM.value
    )
    position: Mapped[int] = mapped_column(SmallInteger, nullable=False)
    depends_on: Mapped[list[int]] = mapped_column(
        ARRAY(SmallInteger), nullable=False, server_default=text("'{}'")
    )
    deadline: Mapped[datetime | None] = mapped_column(TZ)
    completed_at: Mapped[datetime | None] = mapped_column(TZ)
    generated_by_process_id: Mapped[uuid.UUID | None] = _fk_process_set_null()
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class ProcessingState(Base):
    __tablename__ = "processing_states"
    __table_args__ = (
        CheckConstraint(
            "(completed_at IS NULL) = (status IN ('PENDING','PROCESSING'))", name="completed_at_terminal"
        ),
        CheckConstraint("(status = 'COMPLETED') = (progress = 100)", name="progress_completed"),
        CheckConstraint("retry_count BETWEEN 0 AND 3", name="retry_count_range"),
        CheckConstraint("progress BETWEEN 0 AND 100", name="progress_range"),
        CheckConstraint("total_units >= 1", name="total_units_positive"),
        CheckConstraint(
            "cancelled_by IS NULL OR cancelled_by IN ('USER','OPERATOR','SYSTEM')", name="cancelled_by_values"
        ),
        Index("ix_ps_user_created", "user_id", text("created_at DESC")),
        Index("ix_ps_status_created", "status", "created_at"),
        Index("ix_ps_type_status", "type", "status"),
        Index(
            "uq_ps_active_target",
            "user_id",
            "type",
            "target_id",
            unique=True,
            postgresql_where=text("status IN ('PENDING','PROCESSING')"),
        ),
        Index(
            "uq_ps_parent",
            "parent_process_id",
            unique=True,
            postgresql_where=text("parent_process_id IS NOT NULL"),
        ),
        Index("ix_ps_root", "root_process_id"),
        Index("ix_ps_completed", "completed_at", postgresql_where=text("completed_at IS NOT NULL")),
        Index(
            "ix_ps_type_completed",
            "type",
            text("completed_at DESC"),
            postgresql_where=text("status = 'COMPLETED'"),
        ),
    )

    id: Mapped[uuid.UUID] = _pk()
    user_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    type: Mapped[ProcessingType] = mapped_column(processing_type, nullable=False)
    status: Mapped[ProcessingStatus] = mapped_column(
        processing_status, nullable=False, server_default=ProcessingStatus.PENDING.value
    )
    target_type: Mapped[TargetType] = mapped_column(target_type, nullable=False)
    target_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    params: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    progress: Mapped[int] = mapped_column(SmallInteger, nullable=False, server_default=text("0"))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_internal: Mapped[str | None] = mapped_column(Text)
    retry_count: Mapped[int] = mapped_column(SmallInteger, nullable=False, server_default=text("0"))
    parent_process_id: Mapped[uuid.UUID | None] = _fk_process_set_null()
    root_process_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    workflow_id: Mapped[str] = mapped_column(String(255), nullable=False, unique=True)
    workflow_run_id: Mapped[str | None] = mapped_column(String(64))
    event_seq: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    total_units: Mapped[int] = mapped_column(SmallInteger, nullable=False, server_default=text("1"))
    estimated_completion_at: Mapped[datetime] = mapped_column(TZ, nullable=False)
    started_at: Mapped[datetime | None] = mapped_column(TZ)
    deadline_at: Mapped[datetime | None] = mapped_column(TZ)
    completed_at: Mapped[datetime | None] = mapped_column(TZ)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(TZ)
    cancel_reason: Mapped[str | None] = mapped_column(String(500))
    cancelled_by: Mapped[str | None] = mapped_column(String(16))
    reopen_count: Mapped[int] = mapped_column(SmallInteger, nullable=False, server_default=text("0"))
    request_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class ProcessingUnit(Base):
    __tablename__ = "processing_units"

    process_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("processing_states.id", ondelete="CASCADE"), primary_key=True
    )
    unit_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    unit_type: Mapped[TargetType] = mapped_column(target_type, nullable=False)
    ordinal: Mapped[int] = mapped_column(SmallInteger, nullable=False)
    status: Mapped[UnitStatus] = mapped_column(
        unit_status, nullable=False, server_default=UnitStatus.PENDING.value
    )
    created_count: Mapped[int] = mapped_column(SmallInteger, nullable=False, server_default=text("0"))
    deleted_count: Mapped[int] = mapped_column(SmallInteger, nullable=False, server_default=text("0"))
    generation_attempts: Mapped[int] = mapped_column(SmallInteger, nullable=False, server_default=text("0"))
    input_tokens: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    output_tokens: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    finished_at: Mapped[datetime | None] = mapped_column(TZ)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class ProcessingEvent(Base):
    __tablename__ = "processing_events"
    __table_args__ = (UniqueConstraint("process_id", "seq", name="uq_processing_events_process_seq"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    process_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("processing_states.id", ondelete="CASCADE"), nullable=False
    )
    seq: Mapped[int] = mapped_column(Integer, nullable=False)
    type: Mapped[str] = mapped_column(String(32), nullable=False)
    status: Mapped[ProcessingStatus] = mapped_column(processing_status, nullable=False)
    progress: Mapped[int] = mapped_column(SmallInteger, nullable=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=text("'{}'"))
    created_at: Mapped[datetime] = _created()


class RateLimitWindow(Base):
    __tablename__ = "rate_limit_windows"

    user_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    bucket: Mapped[str] = mapped_column(String(16), primary_key=True)
    window_started_at: Mapped[datetime] = mapped_column(TZ, nullable=False)
    request_count: Mapped[int] = mapped_column(Integer, nullable=False)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class IdempotencyKey(Base):
    """The first response to a POST sent with an ``Idempotency-Key`` (issue 7; spec 12), per user and key.

    ``response_status`` is NULL while the first request is in flight (its claim, ``claim_id``)."""

    __tablename__ = "idempotency_keys"

    user_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64), nullable=False)
    claim_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    response_status: Mapped[int | None] = mapped_column(SmallInteger)
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    response_headers: Mapped[dict[str, str]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()

    __table_args__ = (Index("ix_idempotency_keys_created_at", "created_at"),)
