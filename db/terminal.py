"""The one terminal write, shared by the API's cancel, the workflow's finalize and the reconciler."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func

from db.models import ProcessingState as PS
from db.results import goal_scope_result
from db.transaction import Tx
from db.transitions import Transition, transition
from domain.enums import ACTIVE_STATUSES, CancelledBy, EventType, ProcessingStatus
from domain.errors import AppError, ErrorCode
from domain.jobs import OPERATOR_CANCEL_REASON, is_goal_scope
from domain.workflow_io import FinalizeRequest


def cancelled_by(req: FinalizeRequest) -> str | None:
    """Who a CANCELLED write names: the request's canceller, an operator by default."""
    if req.status is not ProcessingStatus.CANCELLED:
        return None
    return (req.cancelled_by or CancelledBy.OPERATOR).value


async def terminal_write(tx: Tx, row: Any, req: FinalizeRequest, **log_extra: Any) -> Transition | None:
    """The guarded write of one terminal state with its event (goal scope: with the rebuilt result),
    logged after commit when it applied."""
    values: dict[str, Any] = {"status": req.status}
    payload: dict[str, Any] = {"source": req.source}
    if req.status is ProcessingStatus.COMPLETED:
        values["progress"] = 100
    else:
        code = ErrorCode(req.error_code or ErrorCode.UNKNOWN_ERROR)
        err = AppError(code, req.details)
        values.update(error=err.stored(), error_code=code.value, error_internal=req.internal)
        payload["errorCode"] = code.value
    by = cancelled_by(req)
    if by is not None:
        values.update(
            cancel_requested_at=func.coalesce(PS.cancel_requested_at, func.now()),
            cancel_reason=(req.cancel_reason or OPERATOR_CANCEL_REASON)[:500],
            cancelled_by=by,
        )
        payload["cancelledBy"] = by
    if is_goal_scope(row):
        values["result"] = await goal_scope_result(tx.conn, row)
    t = await transition(tx.conn, row.id, ACTIVE_STATUSES, EventType(req.status.value), payload, **values)
    tx.log_after_commit(t, errorCode=req.error_code, cancelledBy=by, **log_extra)
    return t
