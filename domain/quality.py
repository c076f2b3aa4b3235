"""Quality rules for generated subgoals, actions and tasks (spec 3.4-3.6).

The validators take the parser's raw items, whose strings are exactly what the model wrote, and do
pipeline steps 7 and 8 together: every string field goes through ``domain.text.clean_text`` (so an
injection pattern is detected before anything is stripped and becomes ``*_UNSAFE_TEXT``), then the
rules run on the normalised text. With no errors the result holds the typed items to persist.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Generic, TypeVar

from domain.enums import ActionType, TaskPriority
from domain.generation import ActionItem, SubGoalItem, TaskItem
from domain.text import clean_text, code_points


class Rule(StrEnum):
    SG_COUNT = "SG_COUNT"
    SG_TITLE_LENGTH = "SG_TITLE_LENGTH"
    SG_DESCRIPTION_LENGTH = "SG_DESCRIPTION_LENGTH"
    SG_BACKGROUND_LENGTH = "SG_BACKGROUND_LENGTH"
    SG_UNSAFE_TEXT = "SG_UNSAFE_TEXT"
    SG_DUPLICATE_TITLE = "SG_DUPLICATE_TITLE"
    AC_COUNT = "AC_COUNT"
    AC_TITLE_LENGTH = "AC_TITLE_LENGTH"
    AC_DESCRIPTION_LENGTH = "AC_DESCRIPTION_LENGTH"
    AC_BACKGROUND_LENGTH = "AC_BACKGROUND_LENGTH"
    AC_UNSAFE_TEXT = "AC_UNSAFE_TEXT"
    AC_DUPLICATE_TITLE = "AC_DUPLICATE_TITLE"
    AC_SIMILAR_DESCRIPTION = "AC_SIMILAR_DESCRIPTION"
    AC_TYPE_FALLBACK = "AC_TYPE_FALLBACK"
    TK_COUNT = "TK_COUNT"
    TK_TITLE_LENGTH = "TK_TITLE_LENGTH"
    TK_DESCRIPTION_LENGTH = "TK_DESCRIPTION_LENGTH"
    TK_ESTIMATE_RANGE = "TK_ESTIMATE_RANGE"
    TK_UNSAFE_TEXT = "TK_UNSAFE_TEXT"
    TK_SHORT_DESCRIPTION = "TK_SHORT_DESCRIPTION"
    TK_DUPLICATE_TITLE = "TK_DUPLICATE_TITLE"
    TK_ABSTRACT_TITLE = "TK_ABSTRACT_TITLE"
    TK_COUNT_GUIDANCE = "TK_COUNT_GUIDANCE"
    TK_DEPENDENCY_DROPPED = "TK_DEPENDENCY_DROPPED"


@dataclass(frozen=True, slots=True)
class Range:
    """An inclusive range; ``str`` gives the ``limit`` text of a violation (``"50..200"`` or ``"8"``)."""

    low: int
    high: int

    def __contains__(self, value: int) -> bool:
        return self.low <= value <= self.high

    def __str__(self) -> str:
        return str(self.low) if self.low == self.high else f"{self.low}..{self.high}"


SUBGOAL_COUNT = Range(8, 8)
SG_TITLE = Range(1, 30)
SG_DESCRIPTION = Range(50, 200)
SG_BACKGROUND = Range(0, 100)

ACTION_COUNT = Range(8, 8)
AC_TITLE = Range(1, 50)
AC_DESCRIPTION = Range(100, 200)
AC_BACKGROUND = Range(0, 100)
SIMILARITY_THRESHOLD = 0.8

TASK_COUNT = Range(1, 20)
TK_TITLE = Range(1, 50)
TK_DESCRIPTION = Range(0, 200)
TK_ESTIMATE = Range(15, 120)
DEFAULT_ESTIMATED_MINUTES = 45
TK_SHORT_DESCRIPTION_BELOW = 20
TASK_COUNT_GUIDANCE: dict[ActionType, Range] = {
    ActionType.EXECUTION: Range(3, 10),
    ActionType.HABIT: Range(1, 3),
}
ABSTRACT_TITLE_WORDS = ("検討する", "考える", "理解する", "把握する", "確認する")

HABIT_KEYWORDS = ("毎日", "毎週", "継続", "習慣", "定期的", "日々", "常に", "ルーティン", "繰り返し")
HIGH_PRIORITY_KEYWORDS = ("前提", "必須", "重要", "基礎", "基本", "最初", "初期")
LOW_PRIORITY_KEYWORDS = ("補助", "追加", "オプション", "任意", "余裕があれば")

MAX_STORED_VIOLATIONS = 20


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule. ``item`` is 1-based, None for rules about the whole list.

    Generated text is never put here: ``actual`` is a length, number, item number, similarity or
    pattern id. ``field`` names the offending field of ``*_UNSAFE_TEXT``.
    """

    rule: Rule
    item: int | None
    actual: int | float | str | None
    limit: str | None
    field: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rule": self.rule.value,
            "item": self.item,
            "actual": self.actual,
            "limit": self.limit,
        }
        if self.field is not None:
            out["field"] = self.field
        return out


T = TypeVar("T")
RawT = TypeVar("RawT")


@dataclass(frozen=True, slots=True)
class QualityResult(Generic[T]):
    """``items`` holds the validated items only when there are no errors."""

    items: tuple[T, ...]
    errors: tuple[Violation, ...]
    warnings: tuple[Violation, ...]

    @property
    def ok(self) -> bool:
        return not self.errors

    def error_details(self) -> dict[str, Any]:
        """The stored ``QUALITY_ERROR`` details: at most 20 violations."""
        return {"violations": [v.to_dict() for v in self.errors[:MAX_STORED_VIOLATIONS]]}


@dataclass(frozen=True, slots=True)
class RawSubGoal:
    title: str
    description: str
    background: str


@dataclass(frozen=True, slots=True)
class RawAction:
    title: str
    description: str
    background: str
    type: str | None = None  # the model's value; None when missing or not a JSON string


@dataclass(frozen=True, slots=True)
class RawTask:
    title: str
    description: str
    estimated_minutes: int | float | None = None
    priority: str | None = None  # the model's value; None when missing or not a JSON string
    dependencies: tuple[object, ...] = ()


@dataclass
class _Collector:
    unsafe_rule: Rule
    errors: list[Violation] = field(default_factory=list)
    warnings: list[Violation] = field(default_factory=list)

    def text(self, item: int, name: str, value: str) -> str:
        cleaned = clean_text(value)
        if cleaned.pattern_id is not None:
            self.errors.append(Violation(self.unsafe_rule, item, cleaned.pattern_id, None, field=name))
        return cleaned.text

    def optional_text(self, item: int, name: str, value: str | None) -> str | None:
        return None if value is None else self.text(item, name, value)

    def texts(self, item: int, raw: Any, names: Sequence[str]) -> list[str]:
        """The cleaned values of the fields ``names`` of ``raw``, in that order."""
        return [self.text(item, name, getattr(raw, name)) for name in names]

    def lengths(self, item: int, values: Sequence[str], limits: Sequence[tuple[Rule, Range]]) -> None:
        for value, (rule, limit) in zip(values, limits, strict=True):
            if code_points(value) not in limit:
                self.errors.append(Violation(rule, item, code_points(value), str(limit)))

    def duplicates(self, rule: Rule, titles: Sequence[str]) -> None:
        first_seen: dict[str, int] = {}
        for number, title in enumerate(titles, start=1):
            if title in first_seen:
                self.warnings.append(Violation(rule, number, first_seen[title], "unique"))
            else:
                first_seen[title] = number

    def result(self, items: Sequence[T]) -> QualityResult[T]:
        return QualityResult(
            items=() if self.errors else tuple(items),
            errors=tuple(self.errors),
            warnings=tuple(self.warnings),
        )


def _validate(
    items: Sequence[RawT],
    count_rule: Rule,
    count: Range,
    unsafe_rule: Rule,
    check: Callable[[_Collector, Sequence[RawT]], list[T]],
) -> QualityResult[T]:
    """A list of the wrong length fails on its count alone; any other is validated by ``check``."""
    if len(items) not in count:
        return QualityResult(
            items=(), errors=(Violation(count_rule, None, len(items), str(count)),), warnings=()
        )
    c = _Collector(unsafe_rule)
    return c.result(check(c, items))


_SG_LENGTHS = (
    (Rule.SG_TITLE_LENGTH, SG_TITLE),
    (Rule.SG_DESCRIPTION_LENGTH, SG_DESCRIPTION),
    (Rule.SG_BACKGROUND_LENGTH, SG_BACKGROUND),
)
_AC_LENGTHS = (
    (Rule.AC_TITLE_LENGTH, AC_TITLE),
    (Rule.AC_DESCRIPTION_LENGTH, AC_DESCRIPTION),
    (Rule.AC_BACKGROUND_LENGTH, AC_BACKGROUND),
)
_TK_LENGTHS = ((Rule.TK_TITLE_LENGTH, TK_TITLE), (Rule.TK_DESCRIPTION_LENGTH, TK_DESCRIPTION))


def _check_subgoals(c: _Collector, items: Sequence[RawSubGoal]) -> list[SubGoalItem]:
    validated: list[SubGoalItem] = []
    for number, raw in enumerate(items, start=1):
        title, description, background = c.texts(number, raw, ("title", "description", "background"))
        c.lengths(number, (title, description, background), _SG_LENGTHS)
        validated.append(SubGoalItem(title=title, description=description, background=background))
    c.duplicates(Rule.SG_DUPLICATE_TITLE, [s.title for s in validated])
    return validated


def validate_subgoals(items: Sequence[RawSubGoal]) -> QualityResult[SubGoalItem]:
    return _validate(items, Rule.SG_COUNT, SUBGOAL_COUNT, Rule.SG_UNSAFE_TEXT, _check_subgoals)


def jaccard_similarity(a: str, b: str) -> float:
    """Word sets when both texts contain whitespace, else character bigrams without whitespace."""
    if not a.strip() or not b.strip():
        return 0.0
    if a == b:
        return 1.0
    if any(ch.isspace() for ch in a) and any(ch.isspace() for ch in b):
        set_a, set_b = set(a.split()), set(b.split())
    else:
        set_a, set_b = _bigrams(a), _bigrams(b)
    union = set_a | set_b
    return len(set_a & set_b) / len(union) if union else 0.0


def _bigrams(text: str) -> set[str]:
    compact = "".join(text.split())
    return {compact[i : i + 2] for i in range(len(compact) - 1)}


def classify_action_type(text: str) -> ActionType:
    """The keyword classifier: any habit keyword wins, else EXECUTION."""
    if any(word in text for word in HABIT_KEYWORDS):
        return ActionType.HABIT
    return ActionType.EXECUTION


def resolve_action_type(ai_type: str | None, title: str, description: str) -> tuple[ActionType, bool]:
    """A valid AI type (any case) is kept, never overwritten; otherwise the keyword classifier decides.
    The flag says whether the classifier was used."""
    if ai_type is not None and ai_type.upper() in ActionType.__members__:
        return ActionType(ai_type.upper()), False
    return classify_action_type(f"{title} {description}"), True


def _check_actions(c: _Collector, items: Sequence[RawAction]) -> list[ActionItem]:
    validated: list[ActionItem] = []
    for number, raw in enumerate(items, start=1):
        title, description, background = c.texts(number, raw, ("title", "description", "background"))
        ai_type = c.optional_text(number, "type", raw.type)
        c.lengths(number, (title, description, background), _AC_LENGTHS)
        action_type, fell_back = resolve_action_type(ai_type, title, description)
        if fell_back:
            c.warnings.append(Violation(Rule.AC_TYPE_FALLBACK, number, action_type.value, "execution|habit"))
        validated.append(
            ActionItem(title=title, description=description, background=background, type=action_type)
        )
    c.duplicates(Rule.AC_DUPLICATE_TITLE, [a.title for a in validated])
    for later in range(1, len(validated)):
        for earlier in range(later):
            similarity = jaccard_similarity(validated[earlier].description, validated[later].description)
            if similarity > SIMILARITY_THRESHOLD:
                c.warnings.append(
                    Violation(Rule.AC_SIMILAR_DESCRIPTION, later + 1, round(similarity, 3), "<=0.8")
                )
    return validated


def validate_actions(items: Sequence[RawAction]) -> QualityResult[ActionItem]:
    return _validate(items, Rule.AC_COUNT, ACTION_COUNT, Rule.AC_UNSAFE_TEXT, _check_actions)


def resolve_priority(ai_priority: str | None, title: str, description: str) -> TaskPriority:
    """The AI value when it is HIGH/MEDIUM/LOW in any case, else keywords, else MEDIUM."""
    if ai_priority is not None and ai_priority.upper() in TaskPriority.__members__:
        return TaskPriority(ai_priority.upper())
    text = f"{title} {description}"
    if any(word in text for word in HIGH_PRIORITY_KEYWORDS):
        return TaskPriority.HIGH
    if any(word in text for word in LOW_PRIORITY_KEYWORDS):
        return TaskPriority.LOW
    return TaskPriority.MEDIUM


def resolve_estimate(value: int | float | None) -> int | None:
    """Minutes to store, or None when the value breaks ``TK_ESTIMATE_RANGE``."""
    if value is None:
        return DEFAULT_ESTIMATED_MINUTES
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        if not value.is_integer():
            return None
        value = int(value)
    return value if value in TK_ESTIMATE else None


def _earlier_dependencies(c: _Collector, number: int, raw: Sequence[object]) -> list[int]:
    position = number - 1
    kept: list[int] = []
    for dep in raw:
        if isinstance(dep, int) and not isinstance(dep, bool) and 0 <= dep < position:
            if dep not in kept:
                kept.append(dep)
        else:
            actual = dep if isinstance(dep, int) and not isinstance(dep, bool) else None
            c.warnings.append(Violation(Rule.TK_DEPENDENCY_DROPPED, number, actual, f"<{position}"))
    return kept


def _check_tasks(c: _Collector, items: Sequence[RawTask], action_type: ActionType) -> list[TaskItem]:
    guidance = TASK_COUNT_GUIDANCE[action_type]
    if len(items) not in guidance:
        c.warnings.append(Violation(Rule.TK_COUNT_GUIDANCE, None, len(items), str(guidance)))
    validated: list[TaskItem] = []
    for number, raw in enumerate(items, start=1):
        title, description = c.texts(number, raw, ("title", "description"))
        ai_priority = c.optional_text(number, "priority", raw.priority)
        c.lengths(number, (title, description), _TK_LENGTHS)
        minutes = resolve_estimate(raw.estimated_minutes)
        if minutes is None:
            c.errors.append(
                Violation(Rule.TK_ESTIMATE_RANGE, number, raw.estimated_minutes, str(TK_ESTIMATE))
            )
        if code_points(description) < TK_SHORT_DESCRIPTION_BELOW:
            c.warnings.append(Violation(Rule.TK_SHORT_DESCRIPTION, number, code_points(description), ">=20"))
        abstract = next((word for word in ABSTRACT_TITLE_WORDS if word in title), None)
        if abstract is not None:
            c.warnings.append(Violation(Rule.TK_ABSTRACT_TITLE, number, abstract, None))
        validated.append(
            TaskItem(
                title=title,
                description=description,
                # None here is already a TK_ESTIMATE_RANGE error, so this item is never returned.
                estimated_minutes=minutes or DEFAULT_ESTIMATED_MINUTES,
                priority=resolve_priority(ai_priority, title, description),
                depends_on=_earlier_dependencies(c, number, raw.dependencies),
            )
        )
    c.duplicates(Rule.TK_DUPLICATE_TITLE, [t.title for t in validated])
    return validated


def validate_tasks(items: Sequence[RawTask], action_type: ActionType) -> QualityResult[TaskItem]:
    """``action_type`` is the parent action's type; tasks inherit it when they are saved."""
    return _validate(
        items,
        Rule.TK_COUNT,
        TASK_COUNT,
        Rule.TK_UNSAFE_TEXT,
        lambda c, tasks: _check_tasks(c, tasks, action_type),
    )
