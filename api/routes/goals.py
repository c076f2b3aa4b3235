"""GET /api/goals/{goalId}: the generated mandala tree (spec 5.9)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse

from api.deps import ReadUser, ServicesDep
from api.envelope import success
from api.openapi import errors, inputs
from api.response_shapes import GoalEnvelope
from api.validation import path_id
from api.views import goal_view
from db import reads
from domain.errors import AppError, ErrorCode

router = APIRouter(prefix="/api/goals", tags=["goals"])


@router.get(
    "/{goalId}",
    summary="The mandala tree of a goal",
    response_model=GoalEnvelope,
    responses=errors(ErrorCode.INVALID_UUID, ErrorCode.GOAL_NOT_FOUND, ErrorCode.FORBIDDEN),
    openapi_extra=inputs(),
)
async def goal(
    svc: ServicesDep,
    user_id: ReadUser,
    goal_id: Annotated[str, Path(alias="goalId", json_schema_extra={"format": "uuid"})],
) -> JSONResponse:
    gid = path_id(goal_id, field="goalId")
    async with svc.engine.connect() as conn:
        tree = await reads.goal_tree(conn, gid)
    if tree is None:
        raise AppError(ErrorCode.GOAL_NOT_FOUND)
    if tree.goal.user_id != user_id:
        raise AppError(ErrorCode.FORBIDDEN)
    return success(goal_view(tree))
