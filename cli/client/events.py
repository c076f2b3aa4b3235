"""Following a job's SSE stream to its end, reconnecting with ``Last-Event-ID`` when the connection drops."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from cli.client.api import ApiClient, ApiError
from domain.enums import ProcessingStatus

DEFAULT_RECONNECT_SECONDS = 2.0
MAX_RECONNECTS = 10  # connections in a row that deliver no event


@dataclass
class Event:
    seq: int
    type: str
    status: ProcessingStatus
    progress: int
    payload: dict[str, Any]

    @classmethod
    def parse(cls, data: str) -> Event:
        raw = json.loads(data)
        return cls(raw["seq"], raw["type"], ProcessingStatus(raw["status"]), raw["progress"], raw["payload"])


def follow(api: ApiClient, process_id: str, after: int = 0) -> Iterator[Event]:
    """Every event after ``after`` up to and including the first terminal one.

    A stream that ends early (dropped connection, or the server's 10-minute cap) is reopened after the
    server's ``retry`` delay from the last event seen; ``MAX_RECONNECTS`` failures in a row give up."""
    cursor = after
    delay = DEFAULT_RECONNECT_SECONDS
    failures = 0
    while True:
        cause = "the stream ended before the job did"
        try:
            with api.event_stream(process_id, cursor) as stream:
                for sse in stream:
                    if sse.retry is not None:
                        delay = sse.retry / 1000
                    if not sse.data:
                        continue
                    event = Event.parse(sse.data)
                    failures = -1  # this connection delivered: the count starts again after it
                    cursor = event.seq
                    yield event
                    if event.status.is_terminal:
                        return
        except httpx.TransportError as exc:
            cause = str(exc) or type(exc).__name__
        failures += 1
        if failures >= MAX_RECONNECTS:
            raise ApiError("CONNECTION_ERROR", f"lost the event stream of {process_id}: {cause}")
        time.sleep(delay)
