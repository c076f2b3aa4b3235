"""The SSE progress stream of spec 5.8: replay after a cursor, then poll until a terminal event."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncEngine

from api.response_shapes import Event
from api.views import event_view
from db import reads
from domain.enums import ProcessingStatus

RECONNECT_MS = 2000
KEEPALIVE_SECONDS = 15.0
MAX_STREAM_SECONDS = 600.0
BATCH = 500
HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


def sse_frame(data: Event) -> str:
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"id: {data['seq']}\nevent: {data['type']}\ndata: {body}\n\n"


async def event_stream(
    engine: AsyncEngine,
    process_id: UUID,
    after: int,
    status: ProcessingStatus,
    poll_seconds: float,
    keepalive_seconds: float = KEEPALIVE_SECONDS,
    max_seconds: float = MAX_STREAM_SECONDS,
    batch: int = BATCH,
) -> AsyncIterator[str]:
    """``status`` is the job's status when the stream was opened: a terminal job closes right after the
    replay. Afterwards each event's status (the job status after it) decides."""
    loop = asyncio.get_running_loop()
    closes_at = loop.time() + max_seconds
    last_write = loop.time()
    cursor = after
    yield f"retry: {RECONNECT_MS}\n\n"
    while True:
        async with engine.connect() as conn:
            events = await reads.events_after(conn, process_id, cursor, batch)
        for event in events:
            yield sse_frame(event_view(event))
            cursor, status = event.seq, ProcessingStatus(event.status)
            last_write = loop.time()
        if len(events) == batch:
            continue
        if status.is_terminal or loop.time() >= closes_at:
            return
        await asyncio.sleep(poll_seconds)
        if loop.time() - last_write >= keepalive_seconds:
            yield ": keepalive\n\n"
            last_write = loop.time()
