"""Request body validation (spec 5.1, 5.3, 5.5, 5.6): pure functions, no I/O.

``validate_generate`` turns the raw body of POST /generate into the normalised params that are stored in
``processing_states.params``. Every field error is collected and reported together; messages are
``FieldMessage`` members rendered in the caller's language at the edge.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from api.fields import FieldError, FieldMessage, InvalidFields, parse_offset_datetime, parse_uuid
from domain.enums import ProcessingType, Scope, TargetType
from domain.errors import ErrorCode
from domain.storable import escaped, surrogate_paths
from domain.text import InjectionDetected, code_points, sanitize_field
from domain.timefmt import iso_ms

CANCEL_REASON_MAX = 500


@dataclass(frozen=True, slots=True)
class Target:
    """What a job aims at, derived from its type and normalised params (new jobs and retries alike)."""

    target_type: TargetType
    target_id: UUID | None  # None: a SUBGOAL job that creates a new goal (the API reserves its id)
    scope: Scope
    regenerate: bool


@dataclass(frozen=True, slots=True)
class GenerateRequest:
    type: ProcessingType
    params: dict[str, Any]
    target: Target


class _Errors:
    """Collects schema errors and injection hits separately: schema errors win (order of checks)."""

    def __init__(self) -> None:
        self.schema: list[FieldError] = []
        self.injections: list[FieldError] = []

    def add(self, field: str, message: FieldMessage) -> None:
        self.schema.append(FieldError(field, message))

    def unknown_keys(self, obj: dict[str, Any], allowed: Sequence[str], prefix: str = "") -> None:
        for key in obj:
            if key not in allowed:
                self.add(prefix + escaped(key), FieldMessage.UNKNOWN_FIELD)

    def raise_if_any(self) -> None:
        if self.schema:
            raise InvalidFields(self.schema)
        if self.injections:
            raise InvalidFields(self.injections, ErrorCode.PROMPT_INJECTION_DETECTED)

    def text(self, obj: dict[str, Any], key: str, field: str) -> str | None:
        """The normalised text of ``obj[key]``; None when absent or already reported (type, injection)."""
        if key not in obj:
            return None
        value = obj[key]
        if not isinstance(value, str):
            self.add(field, FieldMessage.NOT_A_STRING)
            return None
        try:
            return sanitize_field(value)
        except InjectionDetected as hit:
            self.injections.append(FieldError(field, FieldMessage.PROMPT_INJECTION, hit.pattern_id))
            return None


def parse_object(raw: bytes) -> dict[str, Any]:
    """The JSON object of a required request body."""
    if not raw.strip():
        raise InvalidFields([FieldError("body", FieldMessage.BODY_MISSING)])
    try:
        value = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser allows
        raise InvalidFields([FieldError("body", FieldMessage.BODY_NOT_JSON)]) from None
    if not isinstance(value, dict):
        raise InvalidFields([FieldError("body", FieldMessage.BODY_NOT_OBJECT)])
    if bad := surrogate_paths(value):  # not Unicode text: nothing can normalise, store or echo it
        raise InvalidFields([FieldError(path, FieldMessage.INVALID_CHARACTER) for path in bad])
    return value


def parse_optional_object(raw: bytes) -> dict[str, Any]:
    """The JSON object of an optional request body; ``{}`` when the body is absent."""
    return parse_object(raw) if raw.strip() else {}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# ---------------------------------------------------------------------------------------------- generate

_SUBGOAL_TEXT: tuple[tuple[str, int, FieldMessage | None, FieldMessage], ...] = (
    ("title", 200, FieldMessage.TITLE_REQUIRED, FieldMessage.TITLE_TOO_LONG),
    ("description", 2000, FieldMessage.DESCRIPTION_REQUIRED, FieldMessage.DESCRIPTION_TOO_LONG),
    ("background", 1000, FieldMessage.BACKGROUND_REQUIRED, FieldMessage.BACKGROUND_TOO_LONG),
    ("constraints", 1000, None, FieldMessage.CONSTRAINTS_TOO_LONG),
)
_SUBGOAL_KEYS = ("title", "description", "deadline", "background", "constraints", "goalId", "regenerate")


@dataclass(frozen=True, slots=True)
class _IdSchema:
    """ACTION / TASK params: exactly one of a target id and goalId."""

    target_key: str
    target_type: TargetType
    target_message: FieldMessage
    one_of_message: FieldMessage


_ID_SCHEMAS = {
    ProcessingType.ACTION_GENERATION: _IdSchema(
        "subGoalId", TargetType.SUB_GOAL, FieldMessage.SUBGOAL_ID_INVALID, FieldMessage.ONE_OF_SUBGOAL_OR_GOAL
    ),
    ProcessingType.TASK_GENERATION: _IdSchema(
        "actionId", TargetType.ACTION, FieldMessage.ACTION_ID_INVALID, FieldMessage.ONE_OF_ACTION_OR_GOAL
    ),
}


def validate_generate(raw: bytes, now: datetime) -> GenerateRequest:
    """Spec 5.3 validation of a POST /generate body; raises InvalidFields / AppError(INVALID_PROCESS_TYPE)."""
    body = parse_object(raw)
    raw_type = body.get("type")
    if not isinstance(raw_type, str) or raw_type not in ProcessingType.__members__:
        raise InvalidFields([FieldError("type", FieldMessage.TYPE_INVALID)], ErrorCode.INVALID_PROCESS_TYPE)
    job_type = ProcessingType(raw_type)
    errors = _Errors()
    errors.unknown_keys(body, ("type", "params"))
    raw_params = body.get("params")
    if not isinstance(raw_params, dict):
        errors.add("params", FieldMessage.PARAMS_REQUIRED)
        raise InvalidFields(errors.schema)
    if job_type is ProcessingType.SUBGOAL_GENERATION:
        params = _subgoal_params(raw_params, now, errors)
    else:
        params = _id_params(raw_params, _ID_SCHEMAS[job_type], errors)
    errors.raise_if_any()
    return GenerateRequest(job_type, params, target_of(job_type, params))


def _subgoal_params(raw: dict[str, Any], now: datetime, errors: _Errors) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for key, limit, required_message, too_long_message in _SUBGOAL_TEXT:
        field = f"params.{key}"
        value = errors.text(raw, key, field)
        if value is None and key in raw:
            continue  # wrong type or injection, already recorded
        if not value:
            if required_message is not None:
                errors.add(field, required_message)
        elif code_points(value) > limit:
            errors.add(field, too_long_message)
        else:
            params[key] = value
    deadline = _deadline(raw.get("deadline"), now, errors)
    if deadline is not None:
        params["deadline"] = deadline
    if "goalId" in raw:
        goal_id = parse_uuid(raw["goalId"])
        if goal_id is None:
            errors.add("params.goalId", FieldMessage.GOAL_ID_INVALID)
        else:
            params["goalId"] = str(goal_id)
    params["regenerate"] = _regenerate(raw, errors)
    errors.unknown_keys(raw, _SUBGOAL_KEYS, "params.")
    return params


def _deadline(value: object, now: datetime, errors: _Errors) -> str | None:
    parsed = parse_offset_datetime(value)
    if parsed is None:
        errors.add("params.deadline", FieldMessage.DEADLINE_INVALID)
        return None
    if parsed <= now:
        errors.add("params.deadline", FieldMessage.DEADLINE_NOT_FUTURE)
        return None
    return iso_ms(parsed)


def _regenerate(raw: dict[str, Any], errors: _Errors) -> bool:
    value = raw.get("regenerate", False)
    if isinstance(value, bool):
        return value
    errors.add("params.regenerate", FieldMessage.REGENERATE_NOT_BOOLEAN)
    return False


def _id_params(raw: dict[str, Any], schema: _IdSchema, errors: _Errors) -> dict[str, Any]:
    params: dict[str, Any] = {}
    given = [key for key in (schema.target_key, "goalId") if key in raw]
    if len(given) != 1:
        errors.add("params", schema.one_of_message)
    for key in given:
        message = schema.target_message if key == schema.target_key else FieldMessage.GOAL_ID_INVALID
        parsed = parse_uuid(raw[key])
        if parsed is None:
            errors.add(f"params.{key}", message)
        else:
            params[key] = str(parsed)
    params["regenerate"] = _regenerate(raw, errors)
    errors.unknown_keys(raw, (schema.target_key, "goalId", "regenerate"), "params.")
    return params


def target_of(job_type: ProcessingType, params: dict[str, Any]) -> Target:
    """The target of a job from its normalised params (spec 1.1 table)."""
    regenerate = bool(params.get("regenerate", False))
    goal_id = parse_uuid(params.get("goalId"))
    if job_type is ProcessingType.SUBGOAL_GENERATION:
        return Target(TargetType.GOAL, goal_id, Scope.TARGET, regenerate)
    if goal_id is not None:
        return Target(TargetType.GOAL, goal_id, Scope.GOAL, regenerate)
    schema = _ID_SCHEMAS[job_type]
    return Target(schema.target_type, parse_uuid(params.get(schema.target_key)), Scope.TARGET, regenerate)


# ---------------------------------------------------------------------------------------------- retry, cancel


def validate_retry_body(raw: bytes) -> None:
    """A retry body must be absent or ``{}``."""
    errors = _Errors()
    errors.unknown_keys(parse_optional_object(raw), ())
    errors.raise_if_any()


def validate_cancel_body(raw: bytes) -> str | None:
    """The normalised cancel reason (spec 5.6); None when absent or empty (the caller's default applies)."""
    body = parse_optional_object(raw)
    errors = _Errors()
    errors.unknown_keys(body, ("reason",))
    reason = errors.text(body, "reason", "reason")
    if reason is not None and code_points(reason) > CANCEL_REASON_MAX:
        errors.add("reason", FieldMessage.CANCEL_REASON_TOO_LONG)
    errors.raise_if_any()
    return reason or None
