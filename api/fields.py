"""Field errors of request validation (spec 5.1): the messages, the 400 that lists them, and the id and
date-time formats every request part shares (bodies, path ids, query strings)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any
from uuid import UUID

from domain.enums import Language
from domain.errors import AppError, ErrorCode

UUID_PATTERN = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_DATE_TIME_WITH_OFFSET = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})$"
)


class FieldMessage(Enum):
    """The field validation messages of spec 5.1, ``(ja, en)``."""

    BODY_MISSING = ("リクエストボディが存在しません", "The request body is missing.")
    BODY_NOT_JSON = ("不正なJSON形式です", "The request body is not valid JSON.")
    BODY_NOT_OBJECT = (
        "リクエストボディはJSONオブジェクトである必要があります",
        "The request body must be a JSON object.",
    )
    UNKNOWN_FIELD = ("不明なフィールドです", "Unknown field.")
    NOT_A_STRING = ("文字列である必要があります", "Must be a string.")
    INVALID_CHARACTER = ("使用できない文字が含まれています", "Contains a character that cannot be used.")
    PARAMS_REQUIRED = ("paramsは必須です", "params is required.")
    TITLE_REQUIRED = ("目標タイトルは必須です", "The goal title is required.")
    TITLE_TOO_LONG = (
        "目標タイトルは200文字以内である必要があります",
        "The goal title must be at most 200 characters.",
    )
    DESCRIPTION_REQUIRED = ("目標説明は必須です", "The goal description is required.")
    DESCRIPTION_TOO_LONG = (
        "目標説明は2000文字以内である必要があります",
        "The goal description must be at most 2000 characters.",
    )
    BACKGROUND_REQUIRED = ("背景情報は必須です", "The background is required.")
    BACKGROUND_TOO_LONG = (
        "背景情報は1000文字以内である必要があります",
        "The background must be at most 1000 characters.",
    )
    CONSTRAINTS_TOO_LONG = (
        "制約事項は1000文字以内である必要があります",
        "The constraints must be at most 1000 characters.",
    )
    DEADLINE_INVALID = (
        "達成期限は有効な日時形式である必要があります",
        "The deadline must be a valid date-time.",
    )
    DEADLINE_NOT_FUTURE = ("達成期限は未来の日付である必要があります", "The deadline must be in the future.")
    GOAL_ID_INVALID = ("目標IDは有効なUUID形式である必要があります", "The goal ID must be a valid UUID.")
    SUBGOAL_ID_INVALID = (
        "サブ目標IDは有効なUUID形式である必要があります",
        "The subgoal ID must be a valid UUID.",
    )
    ACTION_ID_INVALID = (
        "アクションIDは有効なUUID形式である必要があります",
        "The action ID must be a valid UUID.",
    )
    ONE_OF_SUBGOAL_OR_GOAL = (
        "subGoalIdまたはgoalIdのどちらか一方を指定してください",
        "Specify exactly one of subGoalId or goalId.",
    )
    ONE_OF_ACTION_OR_GOAL = (
        "actionIdまたはgoalIdのどちらか一方を指定してください",
        "Specify exactly one of actionId or goalId.",
    )
    REGENERATE_NOT_BOOLEAN = ("regenerateは真偽値である必要があります", "regenerate must be a boolean.")
    CANCEL_REASON_TOO_LONG = (
        "キャンセル理由は500文字以内である必要があります",
        "The cancel reason must be at most 500 characters.",
    )
    PAGE_INVALID = ("pageは1以上の整数である必要があります", "page must be an integer of at least 1.")
    PAGE_SIZE_INVALID = (
        "pageSizeは1から100の整数である必要があります",
        "pageSize must be an integer from 1 to 100.",
    )
    TYPE_INVALID = ("処理タイプが不正です", "Invalid processing type.")
    STATUS_INVALID = ("処理状態が不正です", "Invalid processing status.")
    DATE_INVALID = ("日時はISO 8601形式で指定してください", "Use an ISO 8601 date-time.")
    DATE_RANGE_INVERTED = (
        "startDateはendDate以前である必要があります",
        "startDate must not be later than endDate.",
    )
    AFTER_INVALID = ("afterは0以上の整数である必要があります", "after must be an integer of at least 0.")
    LIMIT_INVALID = ("limitは1から500の整数である必要があります", "limit must be an integer from 1 to 500.")
    PATH_ID_INVALID = ("有効なUUID形式で指定してください", "Specify a valid UUID.")
    IDEMPOTENCY_KEY_INVALID = (
        "Idempotency-Keyは1〜255文字の表示可能なASCII文字で指定してください",
        "Idempotency-Key must be 1 to 255 visible ASCII characters.",
    )
    PROMPT_INJECTION = (
        "プロンプトインジェクションの可能性がある入力が検出されました",
        "The input looks like a prompt-injection attempt.",
    )

    def text(self, lang: Language) -> str:
        ja, en = self.value
        return str(en if lang is Language.EN else ja)


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    message: FieldMessage
    pattern_id: str | None = None  # set for PROMPT_INJECTION: logged, never returned


class InvalidFields(AppError):
    """A 400 whose ``details.fields`` lists every field error, rendered per language at the edge."""

    def __init__(self, fields: Sequence[FieldError], code: ErrorCode = ErrorCode.VALIDATION_ERROR) -> None:
        super().__init__(code)
        self.fields = tuple(fields)

    def details_in(self, lang: Language) -> dict[str, Any]:
        return {"fields": [{"field": f.field, "message": f.message.text(lang)} for f in self.fields]}


def parse_offset_datetime(value: object) -> datetime | None:
    """An ISO-8601 date-time with ``Z`` or a numeric offset (never a bare date or local time), else None."""
    if not isinstance(value, str) or not _DATE_TIME_WITH_OFFSET.fullmatch(value):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def parse_uuid(value: object) -> UUID | None:
    """A UUID in the 8-4-4-4-12 hex form (any version digit), else None."""
    if isinstance(value, str) and UUID_PATTERN.fullmatch(value):
        return UUID(value)
    return None
