"""H73, H75 and the SSE rules of spec 5.8: GET /api/ai/async/events/{processId}."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import Message

from api.app import create_app
from api.sse import event_stream
from domain.enums import ProcessingStatus
from domain.errors import ErrorCode
from settings import Settings
from tests.support.api import assert_error, bearer, ensure_user, field_messages, seed_tree, serve
from tests.support.jobs import Jobs

ALICE = bearer("alice")
SSE = {"Accept": "text/event-stream"}


def events_url(process_id: uuid.UUID | str) -> str:
    return f"/api/ai/async/events/{process_id}"


def parse_sse(body: str) -> list[dict[str, Any]]:
    """The frames of a stream: each as {field: value}, comments under ":"."""
    frames = []
    for block in body.split("\n\n"):
        if not block:
            continue
        frame: dict[str, Any] = {}
        for line in block.split("\n"):
            name, _, value = line.partition(": ")
            frame[name or ":"] = value if name else line[2:]
        frames.append(frame)
    return frames


async def failed_job(jobs: Jobs, engine: AsyncEngine) -> uuid.UUID:
    """CREATED, STARTED, PROGRESS(50), FAILED: four events, all written by the repository."""
    alice = await ensure_user(engine, "alice")
    process_id = await jobs.pending(
        alice, target_id=(await seed_tree(engine, alice, subgoals=1)).subgoal_ids[0]
    )
    await jobs.processing(process_id, progress=50)
    await jobs.finish(process_id, ProcessingStatus.FAILED, ErrorCode.AI_ERROR.value)
    return process_id


async def test_json_pages_follow_seq(api: httpx.AsyncClient, clean_db: AsyncEngine, jobs: Jobs) -> None:
    process_id = await failed_job(jobs, clean_db)
    child = (await api.post(f"/api/ai/async/retry/{process_id}", headers=ALICE)).json()["data"]["processId"]
    everything = (await api.get(events_url(process_id), headers=ALICE)).json()["data"]
    assert [(e["seq"], e["type"], e["status"], e["progress"]) for e in everything["events"]] == [
        (1, "CREATED", "PENDING", 0),
        (2, "STARTED", "PROCESSING", 0),
        (3, "PROGRESS", "PROCESSING", 50),
        (4, "FAILED", "FAILED", 50),
        (5, "RETRY_CREATED", "FAILED", 50),
    ]
    assert (everything["nextAfter"], everything["hasMore"]) == (5, False)
    assert set(everything["events"][0]) == {
        "processId",
        "seq",
        "type",
        "status",
        "progress",
        "payload",
        "createdAt",
    }
    assert everything["events"][4]["payload"] == {"childProcessId": child}
    middle = (await api.get(events_url(process_id), params={"after": 1, "limit": 2}, headers=ALICE)).json()[
        "data"
    ]
    assert [e["seq"] for e in middle["events"]] == [2, 3] and (middle["nextAfter"], middle["hasMore"]) == (
        3,
        True,
    )
    tail = (await api.get(events_url(process_id), params={"after": 3, "limit": 2}, headers=ALICE)).json()[
        "data"
    ]
    assert [e["seq"] for e in tail["events"]] == [4, 5] and (tail["nextAfter"], tail["hasMore"]) == (5, False)
    past = (await api.get(events_url(process_id), params={"after": 99}, headers=ALICE)).json()["data"]
    assert past == {"events": [], "nextAfter": 99, "hasMore": False}


async def test_json_page_parameters_and_checks(
    api: httpx.AsyncClient, clean_db: AsyncEngine, jobs: Jobs
) -> None:
    bobs = await jobs.pending(await ensure_user(clean_db, "bob"))
    response = await api.get(events_url(bobs), params={"after": "-1", "limit": "501"}, headers=ALICE)
    assert_error(response, 400, "VALIDATION_ERROR")
    assert field_messages(response) == {
        "after": "afterは0以上の整数である必要があります",
        "limit": "limitは1から500の整数である必要があります",
    }
    assert field_messages(await api.get(events_url(bobs), params={"limit": "0"}, headers=ALICE)) == {
        "limit": "limitは1から500の整数である必要があります"
    }
    assert_error(await api.get(events_url("zzz"), headers=ALICE), 400, "INVALID_UUID")
    assert_error(await api.get(events_url(uuid.uuid4()), headers=ALICE), 404, "PROCESSING_NOT_FOUND")
    assert_error(await api.get(events_url(bobs), headers=ALICE), 403, "FORBIDDEN")
    assert_error(
        await api.get(events_url(bobs), headers=ALICE | SSE), 403, "FORBIDDEN"
    )  # JSON before streaming


async def test_sse_replays_after_last_event_id_and_closes_on_terminal_job(
    api: httpx.AsyncClient, clean_db: AsyncEngine, jobs: Jobs
) -> None:
    process_id = await failed_job(jobs, clean_db)
    response = await api.get(events_url(process_id), headers=ALICE | SSE)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Accel-Buffering"] == "no"
    assert response.headers["X-RateLimit-Remaining"]
    frames = parse_sse(response.text)
    assert frames[0] == {"retry": "2000"}
    assert [(f["id"], f["event"]) for f in frames[1:]] == [
        ("1", "CREATED"),
        ("2", "STARTED"),
        ("3", "PROGRESS"),
        ("4", "FAILED"),
    ]
    data = json.loads(frames[3]["data"])
    assert data["seq"] == 3 and data["progress"] == 50 and data["payload"] == {"stage": "GENERATED"}
    assert set(data) == {"processId", "seq", "type", "status", "progress", "payload", "createdAt"}

    resumed = await api.get(events_url(process_id), headers=ALICE | SSE | {"Last-Event-ID": "2"})
    assert [f.get("id") for f in parse_sse(resumed.text)] == [None, "3", "4"]
    by_query = await api.get(events_url(process_id), params={"after": 3}, headers=ALICE | SSE)
    assert [f.get("id") for f in parse_sse(by_query.text)] == [None, "4"]
    caught_up = await api.get(events_url(process_id), headers=ALICE | SSE | {"Last-Event-ID": "4"})
    assert parse_sse(caught_up.text) == [{"retry": "2000"}]
    bad = await api.get(events_url(process_id), headers=ALICE | SSE | {"Last-Event-ID": "x"})
    assert field_messages(bad) == {"Last-Event-ID": "afterは0以上の整数である必要があります"}


async def test_sse_streams_new_events_until_the_job_ends(
    clean_db: AsyncEngine, api_settings: Callable[..., Settings], jobs: Jobs
) -> None:
    process_id = await jobs.pending(await ensure_user(clean_db, "alice"))
    async with serve(api_settings(sse_poll_interval_ms=50)) as http:
        stream = asyncio.create_task(http.get(events_url(process_id), headers=ALICE | SSE))
        await asyncio.sleep(0.3)
        assert not stream.done()
        await jobs.processing(process_id, progress=50)
        await asyncio.sleep(0.2)
        assert not stream.done()
        await http.post(f"/api/ai/async/cancel/{process_id}", headers=ALICE)
        response = await asyncio.wait_for(stream, 5)
    frames = parse_sse(response.text)
    assert [f.get("event") for f in frames] == [None, "CREATED", "STARTED", "PROGRESS", "CANCELLED"]
    assert [f.get("id") for f in frames[1:]] == ["1", "2", "3", "4"]


async def test_stream_pages_through_batches_sends_keepalives_and_ends_after_its_maximum(
    clean_db: AsyncEngine, jobs: Jobs
) -> None:
    process_id = await jobs.pending(await ensure_user(clean_db, "alice"))
    await jobs.processing(process_id, progress=50)  # CREATED, STARTED, PROGRESS
    frames = [
        frame
        async for frame in event_stream(
            clean_db,
            process_id,
            0,
            ProcessingStatus.PENDING,
            poll_seconds=0.05,
            stopping=asyncio.Event(),
            keepalive_seconds=0.1,
            max_seconds=0.5,
            batch=2,
        )
    ]
    assert frames[0] == "retry: 2000\n\n"
    assert [f.split("\n", 1)[0] for f in frames[1:4]] == ["id: 1", "id: 2", "id: 3"]
    assert set(frames[4:]) == {": keepalive\n\n"} and 2 <= len(frames[4:]) <= 5


async def test_asgi_lifespan_protocol(clean_db: AsyncEngine, api_settings: Callable[..., Settings]) -> None:
    """What uvicorn does with ``api.app:create_app --factory``: lifespan through the middleware stack."""
    app = create_app(api_settings())
    incoming: list[Message] = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    await app(
        {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}, receive, send
    )
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
