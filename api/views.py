"""JSON shapes of the responses (spec 5.3-5.9). Stored errors and result messages are rendered on read in
the caller's language; every timestamp is ``YYYY-MM-DDTHH:MM:SS.mmmZ``."""

from __future__ import annotations

from typing import Any

from db.models import ProcessingEvent, ProcessingState, Task
from db.reads import ActionNode, GoalTree, JobView, SubGoalNode
from domain.enums import Language, ProcessingStatus
from domain.errors import render_error
from domain.items import action_item, stamps, subgoal_item, task_item
from domain.jobs import NewJob, job_scope
from domain.timefmt import iso_ms, iso_ms_or_none

CANCELLED_MESSAGE = {Language.JA: "処理をキャンセルしました", Language.EN: "Processing has been cancelled."}
_WITH_ERROR = frozenset({ProcessingStatus.FAILED, ProcessingStatus.TIMEOUT, ProcessingStatus.CANCELLED})


def _error(job: ProcessingState, lang: Language, with_details: bool) -> dict[str, Any] | None:
    if ProcessingStatus(job.status) not in _WITH_ERROR or not job.error:
        return None
    rendered = render_error(job.error, lang)
    if not with_details:
        rendered.pop("details", None)
    return rendered


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


def _job_fields(job: ProcessingState) -> dict[str, Any]:
    return {
        "processId": str(job.id),
        "type": str(job.type),
        "status": str(job.status),
        "progress": job.progress,
        "targetType": str(job.target_type),
        "targetId": str(job.target_id),
        "retryCount": job.retry_count,
        "parentProcessId": None if job.parent_process_id is None else str(job.parent_process_id),
        "createdAt": iso_ms(job.created_at),
        "updatedAt": iso_ms(job.updated_at),
        "completedAt": iso_ms_or_none(job.completed_at),
    }


def status_view(view: JobView, lang: Language) -> dict[str, Any]:
    job = view.job
    data = _job_fields(job) | {
        "scope": job_scope(job.type, job.target_type).value,
        "units": {"total": job.total_units, "succeeded": view.units.succeeded, "failed": view.units.failed},
        "rootProcessId": str(job.root_process_id),
        "startedAt": iso_ms_or_none(job.started_at),
    }
    status = ProcessingStatus(job.status)
    if not status.is_terminal:
        data["estimatedCompletionTime"] = iso_ms(job.estimated_completion_at)
    if job.result is not None:
        data["result"] = render_result(job.result, lang)
    error = _error(job, lang, with_details=True)
    if error is not None:
        data["error"] = error
    if status is ProcessingStatus.CANCELLED:
        data["cancelReason"] = job.cancel_reason
        data["cancelledBy"] = job.cancelled_by
    return data


def history_item(job: ProcessingState, lang: Language) -> dict[str, Any]:
    data = _job_fields(job)
    error = _error(job, lang, with_details=False)
    if error is not None:
        data["error"] = error
    return data


def accepted_view(job: NewJob) -> dict[str, Any]:
    data: dict[str, Any] = {
        "processId": str(job.process_id),
        "status": ProcessingStatus.PENDING.value,
        "type": job.type.value,
        "targetType": job.target_type.value,
        "targetId": str(job.target_id),
        "scope": job.scope.value,
        "totalUnits": job.total_units,
        "createdAt": iso_ms(job.created_at),
        "estimatedCompletionTime": iso_ms(job.estimated_completion_at),
    }
    if job.parent_process_id is not None:
        data |= {
            "retryCount": job.retry_count,
            "originalProcessId": str(job.parent_process_id),
            "rootProcessId": str(job.root_process_id),
        }
    return data


def cancelled_view(job: ProcessingState, lang: Language) -> dict[str, Any]:
    return {
        "processId": str(job.id),
        "status": str(job.status),
        "type": str(job.type),
        "progress": job.progress,
        "createdAt": iso_ms(job.created_at),
        "updatedAt": iso_ms(job.updated_at),
        "completedAt": iso_ms_or_none(job.completed_at),
        "cancelledAt": iso_ms_or_none(job.cancel_requested_at),
        "cancelReason": job.cancel_reason,
        "cancelledBy": job.cancelled_by,
        "message": CANCELLED_MESSAGE[lang],
    }


def event_view(event: ProcessingEvent) -> dict[str, Any]:
    return {
        "processId": str(event.process_id),
        "seq": event.seq,
        "type": event.type,
        "status": str(event.status),
        "progress": event.progress,
        "payload": event.payload,
        "createdAt": iso_ms(event.created_at),
    }


# ---------------------------------------------------------------------------------------------- goal tree


def _task(t: Task) -> dict[str, Any]:
    return task_item(t) | {
        "deadline": iso_ms_or_none(t.deadline),
        "completedAt": iso_ms_or_none(t.completed_at),
    }


def _action(node: ActionNode) -> dict[str, Any]:
    return action_item(node.action) | {"tasks": [_task(t) for t in node.tasks]}


def _subgoal(node: SubGoalNode) -> dict[str, Any]:
    return subgoal_item(node.subgoal) | {"actions": [_action(a) for a in node.actions]}


def goal_view(tree: GoalTree) -> dict[str, Any]:
    g = tree.goal
    goal = {
        "id": str(g.id),
        "title": g.title,
        "description": g.description,
        "deadline": iso_ms_or_none(g.deadline),
        "background": g.background,
        "constraints": g.constraints,
        "status": str(g.status),
        "progress": g.progress,
    } | stamps(g)
    return {"goal": goal | {"subGoals": [_subgoal(node) for node in tree.subgoals]}}
