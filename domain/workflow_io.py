"""Workflow and activity I/O models and Temporal constants.

Side-effect free: the workflow sandbox passes this module through, so it imports only the standard
library, pydantic, temporalio.common and other domain modules.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import AliasChoices, BaseModel, ConfigDict, Field
from temporalio.common import SearchAttributeKey

from domain.enums import CancelledBy, ProcessingStatus, ProcessingType, Scope, TargetType
from domain.generation import GeneratedUnit

SA_PROCESSING_TYPE = SearchAttributeKey.for_keyword("ProcessingType")
SA_PROCESSING_STATUS = SearchAttributeKey.for_keyword("ProcessingStatus")
SA_USER_ID = SearchAttributeKey.for_keyword("UserId")
SA_TARGET_ID = SearchAttributeKey.for_keyword("TargetId")
# The identity operators know a user by: the JWT `sub` and, when the token has one, `iss` (issue 6).
SA_USER_SUBJECT = SearchAttributeKey.for_keyword("UserSubject")
SA_USER_ISSUER = SearchAttributeKey.for_keyword("UserIssuer")
SEARCH_ATTRIBUTES = (
    SA_PROCESSING_TYPE,
    SA_PROCESSING_STATUS,
    SA_USER_ID,
    SA_TARGET_ID,
    SA_USER_SUBJECT,
    SA_USER_ISSUER,
)

WORKFLOW_ID_PREFIX = "ai-gen-"


class Act:
    """Activity names: workflows call activities by name so they never import activity code."""

    MARK_PROCESSING = "mark_processing"
    PLAN_UNITS = "plan_units"
    GENERATE_UNIT = "generate_unit"
    PERSIST_UNIT = "persist_unit"
    RECORD_UNIT_FAILURE = "record_unit_failure"
    FINALIZE = "finalize"
    RECONCILE_BATCH = "reconcile_batch"
    PURGE_BATCH = "purge_batch"


RECONCILER_SCHEDULE_ID = "ai-gen-reconciler"
RETENTION_SCHEDULE_ID = "ai-gen-retention"


def workflow_id_for(process_id: UUID | str) -> str:
    return f"{WORKFLOW_ID_PREFIX}{process_id}"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class GenerationInput(_Model):
    """The small workflow input; activities read params and context from Postgres."""

    process_id: UUID
    user_id: UUID
    type: ProcessingType
    target_type: TargetType
    target_id: UUID
    scope: Scope


class JobRef(_Model):
    process_id: UUID
    scope: Scope


class MarkProcessingResult(_Model):
    deadline_at: datetime
    progress: int
    reopened: bool = False


class UnitRef(_Model):
    unit_id: UUID
    unit_type: TargetType
    ordinal: int


class PlanResult(_Model):
    """The units to process plus the worker's timing settings, recorded in history for replay."""

    units: list[UnitRef]
    already_succeeded: list[UUID] = Field(default_factory=list)
    concurrency: int = 4
    generate_timeout_seconds: int = 300
    heartbeat_timeout_seconds: int = 60


class UnitRequest(_Model):
    process_id: UUID
    unit: UnitRef
    scope: Scope


class GenerateUnitResult(_Model):
    """Outcome of generate_unit. The validated output is a few kilobytes at most (8 items, or 20
    tasks), so it travels to persist_unit through the workflow instead of a staging table."""

    already_saved: bool = False
    output: GeneratedUnit | None = None


class PersistUnitRequest(_Model):
    process_id: UUID
    unit: UnitRef
    scope: Scope
    output: GeneratedUnit


class PersistUnitResult(_Model):
    created_count: int = 0
    deleted_count: int = 0
    job_completed: bool = False
    progress: int = 0


class UnitFailure(_Model):
    process_id: UUID
    unit: UnitRef
    scope: Scope
    error_code: str
    details: dict[str, Any] | None = None


class FinalizeRequest(_Model):
    process_id: UUID
    status: ProcessingStatus
    error_code: str | None = None
    details: dict[str, Any] | None = None
    internal: str | None = None
    cancel_reason: str | None = None
    cancelled_by: CancelledBy | None = None
    source: str = "workflow"


class OperatorCancel(_Model):
    """Input of the workflow update ``cancel`` (spec 6.9): the reason the row records."""

    reason: str = ""


class FinalizeResult(_Model):
    applied: bool
    status: ProcessingStatus
    repeated: bool = False  # not applied because this run's earlier attempt already wrote it


class ProgressView(_Model):
    """The ``progress`` query's answer (and the ``cancel`` update's): camelCase on the wire, read back too."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    status: ProcessingStatus
    progress: int
    units_done: int = Field(
        serialization_alias="unitsDone", validation_alias=AliasChoices("unitsDone", "units_done")
    )
    units_total: int = Field(
        serialization_alias="unitsTotal", validation_alias=AliasChoices("unitsTotal", "units_total")
    )


class WorkflowSummary(_Model):
    outcome: str
    process_id: UUID
    status: ProcessingStatus | None = None


class ReconcileSummary(_Model):
    checked: int = 0
    fixed: int = 0
    cancels_resent: int = 0
    queue_depth: int = 0


class RetentionInput(_Model):
    older_than_days: int


class RetentionSummary(_Model):
    deleted_jobs: int = 0
    deleted_rate_limit_windows: int = 0
    deleted_idempotency_keys: int = 0
