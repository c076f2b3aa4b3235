"""JSON shapes of the responses (spec 5.3-5.9). Stored errors and result messages are rendered on read in
the caller's language; every timestamp is ``YYYY-MM-DDTHH:MM:SS.mmmZ``."""

from __future__ import annotations

from typing import Any, cast

from api import response_shapes as shapes
from db import reads
from db.models import ProcessingEvent, ProcessingState, Task
from domain.enums import Language, ProcessingStatus
from domain.errors import render_error
from domain.items import action_item, stamps, subgoal_item, task_item
from domain.jobs import NewJob, job_scope
from domain.timefmt import iso_ms, iso_ms_or_none

CANCELLED_MESSAGE = {Language.JA: "処理をキャンセルしました", Language.EN: "Processing has been cancelled."}
_WITH_ERROR = frozenset({ProcessingStatus.FAILED, ProcessingStatus.TIMEOUT, ProcessingStatus.CANCELLED})


def _error(job: ProcessingState, lang: Language, with_details: bool) -> shapes.ErrorBody | None:
    if ProcessingStatus(job.status) not in _WITH_ERROR or not job.error:
        return None
    rendered = render_error(job.error, lang)
    if not with_details:
        rendered.pop("details", None)
    return cast(shapes.ErrorBody, rendered)


def render_result(result: dict[str, Any], lang: Language) -> dict[str, Any]:
    """Goal-scope results store failed units' errors as ``{code, retryable}``; add their messages."""
    failed = result.get("failedUnits")
    if not isinstance(failed, list):
        return result
    units = [
        {**u, "error": render_error(u["error"], lang)}
        if isinstance(u, dict) and isinstance(u.get("error"), dict)
        else u
        for u in failed
    ]
    return {**result, "failedUnits": units}


def _job_fields(job: ProcessingState) -> shapes.JobFields:
    return {
        "processId": str(job.id),
        "type": job.type,
        "status": job.status,
        "progress": job.progress,
        "targetType": job.target_type,
        "targetId": str(job.target_id),
        "retryCount": job.retry_count,
        "parentProcessId": None if job.parent_process_id is None else str(job.parent_process_id),
        "createdAt": iso_ms(job.created_at),
        "updatedAt": iso_ms(job.updated_at),
        "completedAt": iso_ms_or_none(job.completed_at),
    }


def status_view(view: reads.JobView, lang: Language) -> shapes.JobStatus:
    job = view.job
    # The job fields are a closed typed dict, so none of the optional keys below can hide in them.
    data: shapes.JobStatus = {
        **_job_fields(job),  # type: ignore[typeddict-item]
        "scope": job_scope(job.type, job.target_type),
        "units": {"total": job.total_units, "succeeded": view.units.succeeded, "failed": view.units.failed},
        "rootProcessId": str(job.root_process_id),
        "startedAt": iso_ms_or_none(job.started_at),
    }
    status = ProcessingStatus(job.status)
    if not status.is_terminal:
        data["estimatedCompletionTime"] = iso_ms(job.estimated_completion_at)
    if job.result is not None:
        data["result"] = cast(shapes.JobResult, render_result(job.result, lang))
    error = _error(job, lang, with_details=True)
    if error is not None:
        data["error"] = error
    if status is ProcessingStatus.CANCELLED:
        data["cancelReason"] = job.cancel_reason
        data["cancelledBy"] = job.cancelled_by
    return data


def history_item(job: ProcessingState, lang: Language) -> shapes.HistoryItem:
    data: shapes.HistoryItem = {**_job_fields(job)}  # type: ignore[typeddict-item]  # as in status_view
    error = _error(job, lang, with_details=False)
    if error is not None:
        data["error"] = error
    return data


def accepted_view(job: NewJob) -> shapes.Accepted:
    data: shapes.Accepted = {
        "processId": str(job.process_id),
        "status": ProcessingStatus.PENDING,
        "type": job.type,
        "targetType": job.target_type,
        "targetId": str(job.target_id),
        "scope": job.scope,
        "totalUnits": job.total_units,
        "createdAt": iso_ms(job.created_at),
        "estimatedCompletionTime": iso_ms(job.estimated_completion_at),
    }
    if job.parent_process_id is not None:
        data["retryCount"] = job.retry_count
        data["originalProcessId"] = str(job.parent_process_id)
        data["rootProcessId"] = str(job.root_process_id)
    return data


def cancelled_view(job: ProcessingState, lang: Language) -> shapes.Cancelled:
    return {
        "processId": str(job.id),
        "status": job.status,
        "type": job.type,
        "progress": job.progress,
        "createdAt": iso_ms(job.created_at),
        "updatedAt": iso_ms(job.updated_at),
        "completedAt": iso_ms_or_none(job.completed_at),
        "cancelledAt": iso_ms_or_none(job.cancel_requested_at),
        "cancelReason": job.cancel_reason,
        "cancelledBy": job.cancelled_by,
        "message": CANCELLED_MESSAGE[lang],
    }


def event_view(event: ProcessingEvent) -> shapes.Event:
    return {
        "processId": str(event.process_id),
        "seq": event.seq,
        "type": event.type,
        "status": event.status,
        "progress": event.progress,
        "payload": event.payload,
        "createdAt": iso_ms(event.created_at),
    }


# ---------------------------------------------------------------------------------------------- goal tree


# The items come from domain/items.py, shared with the stored job results, as plain dicts.


def _task(t: Task) -> shapes.TaskNode:
    item = task_item(t) | {
        "deadline": iso_ms_or_none(t.deadline),
        "completedAt": iso_ms_or_none(t.completed_at),
    }
    return cast(shapes.TaskNode, item)


def _action(node: reads.ActionNode) -> shapes.ActionNode:
    return cast(shapes.ActionNode, action_item(node.action) | {"tasks": [_task(t) for t in node.tasks]})


def _subgoal(node: reads.SubGoalNode) -> shapes.SubGoalNode:
    return cast(
        shapes.SubGoalNode, subgoal_item(node.subgoal) | {"actions": [_action(a) for a in node.actions]}
    )


def goal_view(tree: reads.GoalTree) -> shapes.GoalTree:
    g = tree.goal
    goal: shapes.GoalNode = {
        "id": str(g.id),
        "title": g.title,
        "description": g.description,
        "deadline": iso_ms_or_none(g.deadline),
        "background": g.background,
        "constraints": g.constraints,
        "status": g.status,
        "progress": g.progress,
        **stamps(g),  # type: ignore[typeddict-item]  # createdAt and updatedAt, as plain str values
        "subGoals": [_subgoal(node) for node in tree.subgoals],
    }
    return {"goal": goal}
