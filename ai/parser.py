"""Parsing of AI output text into raw items (spec 3.3, pipeline step 6).

The parser checks structure only and returns the strings exactly as the model wrote them.
Normalisation and injection detection (step 7) happen in ``domain.quality``'s validators, which call
the one text pipeline, so that detection sees the text before anything is stripped. The item count is a
quality rule, not a parse rule.

``ResponseInvalid`` messages name the failed check and never contain generated text.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any, TypeVar

from domain.quality import RawAction, RawSubGoal, RawTask

SUBGOALS_KEY = "subGoals"
ACTIONS_KEY = "actions"
TASKS_KEY = "tasks"

_FENCED_BLOCK = re.compile(r"```[ \t]*[A-Za-z0-9_.+-]*[ \t]*\r?\n?(.*?)```", re.DOTALL)

Item = TypeVar("Item")


class ResponseInvalid(Exception):
    """The text is not a JSON object of the expected shape (error code ``AI_RESPONSE_INVALID``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def extract_json_text(text: str) -> str:
    """Step 1: the first fenced block's content, else the span from the first ``{`` to the last ``}``."""
    trimmed = text.strip()
    fenced = _FENCED_BLOCK.search(trimmed)
    if fenced is not None:
        return fenced.group(1).strip()
    if trimmed.startswith("{"):
        return trimmed
    start, end = trimmed.find("{"), trimmed.rfind("}")
    if start == -1 or end < start:
        raise ResponseInvalid("no JSON object in the text")
    return trimmed[start : end + 1]


def _reject_constant(name: str) -> Any:
    raise ResponseInvalid(f"non-standard JSON constant {name}")


def _load_items(text: str, key: str) -> list[dict[str, Any]]:
    try:
        document = json.loads(extract_json_text(text), parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise ResponseInvalid(f"invalid JSON at position {exc.pos}") from None
    except (ValueError, RecursionError):  # e.g. an integer literal over the int-string limit
        raise ResponseInvalid("JSON value cannot be decoded") from None
    if not isinstance(document, dict):
        raise ResponseInvalid("the JSON value is not an object")
    items = document.get(key)
    if not isinstance(items, list):
        raise ResponseInvalid(f"key {key!r} is missing or not an array")
    for number, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            raise ResponseInvalid(f"item {number} is not an object")
    return items


def _string(item: dict[str, Any], number: int, name: str) -> str:
    value = item.get(name)
    if not isinstance(value, str):
        raise ResponseInvalid(f"item {number}: field {name!r} is missing or not a string")
    return value


def _enum_text(item: dict[str, Any], name: str) -> str | None:
    """``type`` and ``priority`` have fallbacks in the quality rules, so any non-string counts as absent."""
    value = item.get(name)
    return value if isinstance(value, str) else None


def _minutes(item: dict[str, Any], number: int) -> int | float | None:
    value = item.get("estimatedMinutes")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ResponseInvalid(f"item {number}: field 'estimatedMinutes' is not a number or null")
    if isinstance(value, float) and not math.isfinite(value):
        raise ResponseInvalid(f"item {number}: field 'estimatedMinutes' is not finite")
    return value


def _dependencies(item: dict[str, Any], number: int) -> tuple[object, ...]:
    value = item.get("dependencies")
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ResponseInvalid(f"item {number}: field 'dependencies' is not an array or null")
    return tuple(value)


def _parse(text: str, key: str, build: Callable[[dict[str, Any], int], Item]) -> list[Item]:
    return [build(item, number) for number, item in enumerate(_load_items(text, key), start=1)]


def _subgoal(item: dict[str, Any], number: int) -> RawSubGoal:
    return RawSubGoal(
        title=_string(item, number, "title"),
        description=_string(item, number, "description"),
        background=_string(item, number, "background"),
    )


def _action(item: dict[str, Any], number: int) -> RawAction:
    return RawAction(
        title=_string(item, number, "title"),
        description=_string(item, number, "description"),
        background=_string(item, number, "background"),
        type=_enum_text(item, "type"),
    )


def _task(item: dict[str, Any], number: int) -> RawTask:
    return RawTask(
        title=_string(item, number, "title"),
        description=_string(item, number, "description"),
        estimated_minutes=_minutes(item, number),
        priority=_enum_text(item, "priority"),
        dependencies=_dependencies(item, number),
    )


def parse_subgoals(text: str) -> list[RawSubGoal]:
    return _parse(text, SUBGOALS_KEY, _subgoal)


def parse_actions(text: str) -> list[RawAction]:
    return _parse(text, ACTIONS_KEY, _action)


def parse_tasks(text: str) -> list[RawTask]:
    return _parse(text, TASKS_KEY, _task)
