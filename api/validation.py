"""Path ids and query strings (spec 5.1, 5.7, 5.8): every error collected into one VALIDATION_ERROR."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from typing import TypeVar
from uuid import UUID

from api.fields import FieldError, FieldMessage, InvalidFields, parse_offset_datetime, parse_uuid
from db.reads import HistoryFilter
from domain.enums import ProcessingStatus, ProcessingType
from domain.errors import ErrorCode

_DIGITS = re.compile(r"^[0-9]+$")
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
MAX_SEQ = 2**31 - 1  # processing_events.seq is an integer
START_OF_DAY = time(0, 0)
END_OF_DAY = time(23, 59, 59, 999_999)
E = TypeVar("E", ProcessingType, ProcessingStatus)


def path_id(value: str, field: str = "processId") -> UUID:
    parsed = parse_uuid(value)
    if parsed is None:
        raise InvalidFields([FieldError(field, FieldMessage.PATH_ID_INVALID)], ErrorCode.INVALID_UUID)
    return parsed


class _Query:
    def __init__(self, params: Mapping[str, str]) -> None:
        self.params = params
        self.errors: list[FieldError] = []

    def integer(self, key: str, default: int, low: int, high: int | None, message: FieldMessage) -> int:
        raw = self.params.get(key)
        if raw is None:
            return default
        if _DIGITS.match(raw) and int(raw) >= low and (high is None or int(raw) <= high):
            return int(raw)
        self.errors.append(FieldError(key, message))
        return default

    def choice(self, key: str, enum: type[E], message: FieldMessage) -> E | None:
        raw = self.params.get(key)
        if raw is None:
            return None
        try:
            return enum(raw)
        except ValueError:
            self.errors.append(FieldError(key, message))
            return None

    def uuid(self, key: str) -> UUID | None:
        raw = self.params.get(key)
        if raw is None:
            return None
        parsed = parse_uuid(raw)
        if parsed is None:
            self.errors.append(FieldError(key, FieldMessage.PATH_ID_INVALID))
        return parsed

    def bound(self, key: str, day_time: time) -> datetime | None:
        """An offset date-time, or a date meaning ``day_time`` UTC of that day."""
        raw = self.params.get(key)
        if raw is None:
            return None
        if _DATE_ONLY.match(raw):
            try:
                return datetime.combine(date.fromisoformat(raw), day_time, UTC)
            except ValueError:
                pass
        parsed = parse_offset_datetime(raw)
        if parsed is None:
            self.errors.append(FieldError(key, FieldMessage.DATE_INVALID))
        return parsed

    def done(self) -> None:
        if self.errors:
            raise InvalidFields(self.errors)


def history_query(params: Mapping[str, str]) -> tuple[int, int, HistoryFilter]:
    """``page`` (default 1), ``pageSize`` (default 20) and the filters of the history page."""
    q = _Query(params)
    page = q.integer("page", 1, 1, None, FieldMessage.PAGE_INVALID)
    page_size = q.integer("pageSize", 20, 1, 100, FieldMessage.PAGE_SIZE_INVALID)
    flt = HistoryFilter(
        type=q.choice("type", ProcessingType, FieldMessage.TYPE_INVALID),
        status=q.choice("status", ProcessingStatus, FieldMessage.STATUS_INVALID),
        created_from=q.bound("startDate", START_OF_DAY),
        created_to=q.bound("endDate", END_OF_DAY),
        target_id=q.uuid("targetId"),
        root_process_id=q.uuid("rootProcessId"),
    )
    if flt.created_from and flt.created_to and flt.created_from > flt.created_to:
        q.errors.append(FieldError("startDate", FieldMessage.DATE_RANGE_INVERTED))
    q.done()
    return page, page_size, flt


def events_page_query(params: Mapping[str, str]) -> tuple[int, int]:
    """``after`` (default 0) and ``limit`` (default 100) of the JSON events page."""
    q = _Query(params)
    after = q.integer("after", 0, 0, None, FieldMessage.AFTER_INVALID)
    limit = q.integer("limit", 100, 1, 500, FieldMessage.LIMIT_INVALID)
    q.done()
    return min(after, MAX_SEQ), limit


def stream_cursor(last_event_id: str | None, params: Mapping[str, str]) -> int:
    """Where an SSE stream resumes: ``Last-Event-ID`` when sent, else ``after`` (default 0)."""
    key = "after" if last_event_id is None else "Last-Event-ID"
    q = _Query(params if last_event_id is None else {key: last_event_id})
    after = q.integer(key, 0, 0, None, FieldMessage.AFTER_INVALID)
    q.done()
    return min(after, MAX_SEQ)
