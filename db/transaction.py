"""One repository transaction: driver failures become catalogue codes, and the transitions it applied are
logged (with their terminal metrics) only after it has committed.

Logging after commit, and only for a guarded update that matched, is what makes each terminal metric
count exactly once: a refused transition returns None and is never registered, and a transaction that
rolls back logs nothing.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db.engine import db_error
from db.transitions import Transition
from domain.errors import AppError, InternalSignalError
from observability import metrics

log = logging.getLogger("db.transaction")


class Tx:
    """An open transaction's connection and the applied transitions waiting for its commit."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self.applied: list[tuple[Transition, dict[str, Any]]] = []

    def log_after_commit(self, t: Transition | None, **extra: Any) -> None:
        """Log ``t`` (None: the guarded update was refused, nothing to log) once the transaction commits."""
        if t is not None:
            self.applied.append((t, extra))


@asynccontextmanager
async def transaction(engine: AsyncEngine) -> AsyncIterator[Tx]:
    try:
        async with engine.begin() as conn:
            tx = Tx(conn)
            yield tx
    except (AppError, InternalSignalError, sa_exc.IntegrityError):
        raise
    except (sa_exc.SQLAlchemyError, OSError) as exc:
        raise db_error(exc) from exc
    for t, extra in tx.applied:
        log_transition(t, **extra)


def log_transition(t: Transition, **extra: Any) -> None:
    fields: dict[str, Any] = {
        "event": "state_transition",
        "processId": str(t.process_id),
        "userId": str(t.user_id),
        "type": t.type,
        "fromStatus": t.from_status.value,
        "toStatus": t.to_status.value,
        "status": t.to_status.value,
        "progress": t.progress,
    }
    if t.to_status.is_terminal and t.completed_at is not None:
        duration_ms = (t.completed_at - t.created_at).total_seconds() * 1000
        fields["durationMs"] = int(duration_ms)
        error_code, cancelled_by = extra.get("errorCode"), extra.get("cancelledBy")
        metrics.job_finished(
            str(t.type),
            t.to_status,
            duration_ms,
            error_type=None if error_code is None else str(error_code),
            cancelled_by=None if cancelled_by is None else str(cancelled_by),
        )
    fields.update(extra)
    log.info("state transition", extra=fields)
