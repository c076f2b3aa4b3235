"""Read-only queries of the API: job views, history, events, the goal tree and target checks.

Nothing here writes; job state changes go through db.repository.JobRepository.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast
from uuid import UUID

from psycopg import AsyncConnection as DriverConnection
from psycopg.rows import dict_row
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import InstrumentedAttribute

from db.models import Action, Goal, ProcessingEvent, ProcessingState, ProcessingUnit, SubGoal, Task
from domain.enums import ACTIVE_STATUSES, ProcessingStatus, ProcessingType, TargetType, UnitStatus

PS = ProcessingState
PU = ProcessingUnit

# The table of each unit kind, and the foreign key by which its children point at it.
_UNIT_ID: dict[TargetType, InstrumentedAttribute[UUID]] = {
    TargetType.GOAL: Goal.id,
    TargetType.SUB_GOAL: SubGoal.id,
    TargetType.ACTION: Action.id,
}
_CHILD_PARENT: dict[TargetType, InstrumentedAttribute[UUID]] = {
    TargetType.GOAL: SubGoal.goal_id,
    TargetType.SUB_GOAL: Action.sub_goal_id,
    TargetType.ACTION: Task.action_id,
}


@dataclass(frozen=True, slots=True)
class UnitCounts:
    succeeded: int
    failed: int


@dataclass(frozen=True, slots=True)
class JobView:
    job: ProcessingState
    units: UnitCounts


@dataclass(frozen=True, slots=True)
class HistoryFilter:
    type: ProcessingType | None = None
    status: ProcessingStatus | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    target_id: UUID | None = None
    root_process_id: UUID | None = None

    def conditions(self, user_id: UUID) -> list[ColumnElement[bool]]:
        out: list[ColumnElement[bool]] = [PS.user_id == user_id]
        if self.type is not None:
            out.append(PS.type == self.type)
        if self.status is not None:
            out.append(PS.status == self.status)
        if self.created_from is not None:
            out.append(PS.created_at >= self.created_from)
        if self.created_to is not None:
            out.append(PS.created_at <= self.created_to)
        if self.target_id is not None:
            out.append(PS.target_id == self.target_id)
        if self.root_process_id is not None:
            out.append(PS.root_process_id == self.root_process_id)
        return out


@dataclass(frozen=True, slots=True)
class ActionNode:
    action: Action
    tasks: list[Task] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SubGoalNode:
    subgoal: SubGoal
    actions: list[ActionNode] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class GoalTree:
    goal: Goal
    subgoals: list[SubGoalNode]


@dataclass(frozen=True, slots=True)
class UnitRow:
    unit_id: UUID
    unit_type: TargetType
    status: UnitStatus


def _job(row: Any) -> ProcessingState:
    return ProcessingState(**row._mapping)


# ---------------------------------------------------------------------------------------------- jobs


# The status read, the API's hottest query: plain psycopg on the pool's connection with a server-side
# prepared statement. Through SQLAlchemy, building the statement and its result cost more than the query.
_JOB_VIEW_SQL = (
    "SELECT ps.*, u.units_succeeded, u.units_failed FROM processing_states ps, LATERAL ("
    f"SELECT count(*) FILTER (WHERE pu.status = '{UnitStatus.SUCCEEDED.value}') AS units_succeeded, "
    f"count(*) FILTER (WHERE pu.status = '{UnitStatus.FAILED.value}') AS units_failed "
    "FROM processing_units pu WHERE pu.process_id = ps.id) u WHERE ps.id = %s"
)


async def job_view(conn: AsyncConnection, process_id: UUID) -> JobView | None:
    """One primary-key read: the job row plus its unit counts. On an AUTOCOMMIT connection it is a single
    round trip."""
    driver = cast("DriverConnection[Any]", (await conn.get_raw_connection()).driver_connection)
    async with driver.cursor(row_factory=dict_row) as cur:
        await cur.execute(_JOB_VIEW_SQL, (process_id,), prepare=True)
        row = await cur.fetchone()
    if row is None:
        return None
    counts = UnitCounts(row.pop("units_succeeded"), row.pop("units_failed"))
    return JobView(_loaded(row), counts)


def _loaded(row: dict[str, Any]) -> ProcessingState:
    """A detached ProcessingState holding ``row`` as loaded values, the way the ORM's own loader fills an
    instance (no attribute events): the constructor's instrumentation was ~12 % of a status read's CPU."""
    job = cast(ProcessingState, PS.__mapper__.class_manager.new_instance())
    job.__dict__.update(row)
    return job


async def child_of(conn: AsyncConnection, process_id: UUID) -> UUID | None:
    """The retry child of a job, if one exists."""
    stmt = select(PS.id).where(PS.parent_process_id == process_id)
    return (await conn.execute(stmt)).scalar_one_or_none()


async def active_job_for(conn: AsyncConnection, job: Any) -> UUID | None:
    """The active job of ``job``'s user, type and target, if one exists (``job``: a row or a NewJob)."""
    stmt = select(PS.id).where(
        PS.user_id == job.user_id,
        PS.type == job.type,
        PS.target_id == job.target_id,
        PS.status.in_(list(ACTIVE_STATUSES)),
    )
    return (await conn.execute(stmt)).scalar_one_or_none()


async def job_units(conn: AsyncConnection, process_id: UUID) -> list[UnitRow]:
    """The units of a job in processing order."""
    stmt = select(PU.unit_id, PU.unit_type, PU.status).where(PU.process_id == process_id).order_by(PU.ordinal)
    rows = (await conn.execute(stmt)).all()
    return [UnitRow(r.unit_id, TargetType(r.unit_type), UnitStatus(r.status)) for r in rows]


async def history_page(
    conn: AsyncConnection, user_id: UUID, flt: HistoryFilter, page: int, page_size: int
) -> tuple[list[ProcessingState], int]:
    """The caller's jobs, newest first, and the total count under the same filters."""
    where = flt.conditions(user_id)
    total = (await conn.execute(select(func.count()).select_from(PS).where(*where))).scalar_one()
    offset = (page - 1) * page_size
    if offset >= total:  # past the end (this also keeps huge page numbers out of SQL)
        return [], total
    stmt = (
        select(PS).where(*where).order_by(PS.created_at.desc(), PS.id.desc()).offset(offset).limit(page_size)
    )
    rows = (await conn.execute(stmt)).all()
    return [_job(r) for r in rows], total


async def events_after(
    conn: AsyncConnection, process_id: UUID, after: int, limit: int
) -> list[ProcessingEvent]:
    stmt = (
        select(ProcessingEvent)
        .where(ProcessingEvent.process_id == process_id, ProcessingEvent.seq > after)
        .order_by(ProcessingEvent.seq)
        .limit(limit)
    )
    return [ProcessingEvent(**r._mapping) for r in (await conn.execute(stmt)).all()]


# ---------------------------------------------------------------------------------------------- goal tree


async def goal_tree(conn: AsyncConnection, goal_id: UUID) -> GoalTree | None:
    """The goal with its subgoals, actions and tasks, each level in position order."""
    goal_row = (await conn.execute(select(Goal).where(Goal.id == goal_id))).one_or_none()
    if goal_row is None:
        return None
    subgoals = (
        await conn.execute(select(SubGoal).where(SubGoal.goal_id == goal_id).order_by(SubGoal.position))
    ).all()
    actions = (
        await conn.execute(
            select(Action)
            .join(SubGoal, Action.sub_goal_id == SubGoal.id)
            .where(SubGoal.goal_id == goal_id)
            .order_by(Action.position)
        )
    ).all()
    tasks = (
        await conn.execute(
            select(Task)
            .join(Action, Task.action_id == Action.id)
            .join(SubGoal, Action.sub_goal_id == SubGoal.id)
            .where(SubGoal.goal_id == goal_id)
            .order_by(Task.position)
        )
    ).all()
    tasks_of: defaultdict[UUID, list[Task]] = defaultdict(list)
    for t in tasks:
        tasks_of[t.action_id].append(Task(**t._mapping))
    actions_of: defaultdict[UUID, list[ActionNode]] = defaultdict(list)
    for a in actions:
        actions_of[a.sub_goal_id].append(ActionNode(Action(**a._mapping), tasks_of[a.id]))
    nodes = [SubGoalNode(SubGoal(**s._mapping), actions_of[s.id]) for s in subgoals]
    return GoalTree(Goal(**goal_row._mapping), nodes)


# ---------------------------------------------------------------------------------------------- targets


async def target_owner(conn: AsyncConnection, target_type: TargetType, target_id: UUID) -> UUID | None:
    """The owner of the goal that holds the target, or None when the target does not exist."""
    stmt = select(Goal.user_id)
    if target_type is TargetType.SUB_GOAL:
        stmt = stmt.join(SubGoal, SubGoal.goal_id == Goal.id)
    elif target_type is TargetType.ACTION:
        stmt = stmt.join(SubGoal, SubGoal.goal_id == Goal.id).join(Action, Action.sub_goal_id == SubGoal.id)
    stmt = stmt.where(_UNIT_ID[target_type] == target_id)
    return (await conn.execute(stmt)).scalar_one_or_none()


async def goal_units(conn: AsyncConnection, goal_id: UUID, unit_type: TargetType) -> list[UUID]:
    """The units of a goal-scope job: subgoals in position order, or every action of the goal ordered by
    subgoal position then action position."""
    if unit_type is TargetType.SUB_GOAL:
        stmt = select(SubGoal.id).where(SubGoal.goal_id == goal_id).order_by(SubGoal.position)
    else:
        stmt = (
            select(Action.id)
            .join(SubGoal, Action.sub_goal_id == SubGoal.id)
            .where(SubGoal.goal_id == goal_id)
            .order_by(SubGoal.position, Action.position)
        )
    return list((await conn.execute(stmt)).scalars())


async def existing_units(conn: AsyncConnection, unit_type: TargetType, ids: Sequence[UUID]) -> set[UUID]:
    column = _UNIT_ID[unit_type]
    return set((await conn.execute(select(column).where(column.in_(ids)))).scalars())


async def units_with_children(
    conn: AsyncConnection, unit_type: TargetType, ids: Sequence[UUID]
) -> list[UUID]:
    """The ids (in the given order) that already have generated children."""
    parent = _CHILD_PARENT[unit_type]
    having = set((await conn.execute(select(parent).where(parent.in_(ids)).distinct())).scalars())
    return [i for i in ids if i in having]
