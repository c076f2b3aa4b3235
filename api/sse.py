"""The SSE progress stream of spec 5.8: replay after a cursor, then poll until a terminal event.

When the API process is told to stop, an open stream ends with a `RECONNECT` event (no `id`, so the
client's Last-Event-ID stays on the last real event): the client reconnects at once, to another API
process, instead of being cut off when the server's graceful-shutdown timeout runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncEngine

from api.response_shapes import Event
from api.views import event_view
from db import reads
from domain.enums import ProcessingStatus

RECONNECT_MS = 2000
RECONNECT = "RECONNECT"
KEEPALIVE_SECONDS = 15.0
MAX_STREAM_SECONDS = 600.0
BATCH = 500
HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


def _json(data: Mapping[str, object]) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def sse_frame(data: Event) -> str:
    return f"id: {data['seq']}\nevent: {data['type']}\ndata: {_json(data)}\n\n"


def reconnect_frame(process_id: UUID, after: int) -> str:
    """The last frame of a stream closed by a server stop: reconnect with Last-Event-ID ``after``."""
    body = {"processId": str(process_id), "type": RECONNECT, "after": after, "reason": "SERVER_STOPPING"}
    return f"event: {RECONNECT}\ndata: {_json(body)}\n\n"


async def event_stream(
    engine: AsyncEngine,
    process_id: UUID,
    after: int,
    status: ProcessingStatus,
    poll_seconds: float,
    stopping: asyncio.Event,
    keepalive_seconds: float = KEEPALIVE_SECONDS,
    max_seconds: float = MAX_STREAM_SECONDS,
    batch: int = BATCH,
) -> AsyncIterator[str]:
    """``status`` is the job's status when the stream was opened: a terminal job closes right after the
    replay. Afterwards each event's status (the job status after it) decides. ``stopping`` is set when
    the process begins to stop."""
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
        if stopping.is_set():
            yield reconnect_frame(process_id, cursor)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), poll_seconds)
        if loop.time() - last_write >= keepalive_seconds:
            yield ": keepalive\n\n"
            last_write = loop.time()
