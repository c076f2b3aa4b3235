"""Graceful deploys with real processes: SIGTERM to a worker in the middle of an AI call, and to an API
process holding an event stream and a request in flight."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio
from temporalio.client import Client

from db.repository import JobRepository
from settings import Settings
from tests.integration.test_openai_workflow import VALID
from tests.support.fake_openai import FakeOpenAI, Reply, chat_completion
from tests.support.jobs import make_user, start_subgoal_job
from tests.support.services import Service, Services, SseReader, auth, start_job, subgoal_request

AI_CALL_SECONDS = 10.0
GRACE_SECONDS = 30
API_GRACEFUL_TIMEOUT = 30


@pytest_asyncio.fixture
async def openai_server() -> AsyncIterator[FakeOpenAI]:
    fake = FakeOpenAI()
    await fake.start()
    yield fake
    await fake.stop()


def openai_settings(make_settings: Callable[..., Settings], fake: FakeOpenAI, **extra: Any) -> Settings:
    return make_settings(
        ai_provider="openai", openai_base_url=fake.base_url, openai_api_key="sk-test-key", **extra
    )


def lines_for(service: Service, event: str, process_id: object) -> list[dict[str, Any]]:
    return [line for line in service.events(event) if line.get("processId") == str(process_id)]


async def sigterm_during_the_call(
    services: Services, repo: JobRepository, client: Client, settings: Settings, fake: FakeOpenAI
) -> tuple[Service, uuid.UUID, float]:
    """Start a worker and a job, SIGTERM the worker once the provider has the request, wait for exit 0;
    the worker, the job and the seconds from the signal to the exit."""
    worker = await services.worker("worker", settings)
    process_id, _ = await start_subgoal_job(repo, client, settings, await make_user(repo.engine))
    await asyncio.wait_for(fake.received.wait(), 30)
    worker.signal(signal.SIGTERM)
    stopped_at = time.monotonic()
    assert await worker.exit_code(within=settings.worker_shutdown_grace_seconds + 15) == 0
    return worker, process_id, time.monotonic() - stopped_at


async def test_sigterm_during_an_ai_call_lets_it_finish_and_the_job_completes_on_the_same_worker(
    repo: JobRepository,
    client: Client,
    make_settings: Callable[..., Settings],
    openai_server: FakeOpenAI,
    tmp_path: Path,
) -> None:
    settings = openai_settings(make_settings, openai_server, worker_shutdown_grace_seconds=GRACE_SECONDS)
    openai_server.replies.append(Reply(body=chat_completion(VALID), delay=AI_CALL_SECONDS))
    with Services(tmp_path) as services:
        worker, process_id, took = await sigterm_during_the_call(
            services, repo, client, settings, openai_server
        )

    assert took < GRACE_SECONDS
    job = await repo.get_job(process_id)
    assert job is not None and job.status == "COMPLETED"
    assert len(openai_server.requests) == 1 and openai_server.responses_completed == 1
    # This worker made the call and wrote the outcome, after it was told to stop.
    [stopping] = worker.events("worker_stopping")
    [completed] = lines_for(worker, "state_transition", process_id)[-1:]
    assert completed["toStatus"] == "COMPLETED" and completed["pid"] == worker.pid
    assert completed["timestamp"] > stopping["timestamp"]
    assert len(lines_for(worker, "ai_generation_completed", process_id)) == 1
    assert worker.events("worker_stopped")[0]["handedOver"] == 1


async def test_an_ai_call_longer_than_the_grace_period_is_cancelled_and_the_worker_exits(
    repo: JobRepository,
    client: Client,
    make_settings: Callable[..., Settings],
    openai_server: FakeOpenAI,
    tmp_path: Path,
) -> None:
    grace = 2
    settings = openai_settings(make_settings, openai_server, worker_shutdown_grace_seconds=grace)
    openai_server.replies.append(Reply(body=chat_completion(VALID), delay=60.0))
    with Services(tmp_path) as services:
        _, process_id, _ = await sigterm_during_the_call(services, repo, client, settings, openai_server)

    await asyncio.wait_for(openai_server.client_closed_early.wait(), 10)
    assert openai_server.responses_completed == 0
    job = await repo.get_job(process_id)
    assert job is not None and job.status == "PROCESSING"  # the next worker retries the call


async def test_sigterm_to_an_api_finishes_the_request_in_flight_and_ends_streams_with_reconnect(
    repo: JobRepository, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(sse_poll_interval_ms=100)
    headers = auth("deploy-user", settings)
    graceful = ("--timeout-graceful-shutdown", str(API_GRACEFUL_TIMEOUT))
    with Services(tmp_path) as services:
        api, url = await services.api("api", settings, *graceful)
        async with httpx.AsyncClient(timeout=30) as http:
            process_id = await start_job(http, url, headers)  # no worker: it stays PENDING
            stream = SseReader(http, f"{url}/api/ai/async/events/{process_id}", headers)
            await stream.wait_for_event("CREATED")
            in_flight = await SlowPost.send_headers(url, "/api/ai/async/generate", headers)

            api.signal(signal.SIGTERM)
            stopped_at = time.monotonic()
            await refused(url)
            status, body = await in_flight.finish()
            frames = await asyncio.wait_for(stream.task, 15)
        # uvicorn raises the signal again once its graceful shutdown is complete (exit by SIGTERM).
        assert await api.exit_code(within=API_GRACEFUL_TIMEOUT) == -signal.SIGTERM
        took = time.monotonic() - stopped_at
        assert "Application shutdown complete." in api.tail()

    assert status == 202, body
    accepted = json.loads(body)["data"]["processId"]
    assert (await repo.get_job(accepted)) is not None
    assert [f.get("event") for f in frames] == [None, "CREATED", "RECONNECT"]
    assert json.loads(frames[-1]["data"]) == {
        "processId": process_id,
        "type": "RECONNECT",
        "after": 1,
        "reason": "SERVER_STOPPING",
    }
    assert "id" not in frames[-1]  # the client's Last-Event-ID stays on the last real event
    assert took < API_GRACEFUL_TIMEOUT


async def refused(url: str, within: float = 10.0) -> None:
    """Wait until the stopping server no longer accepts connections."""
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=2) as fresh:
        while time.monotonic() < deadline:
            try:
                await fresh.get(f"{url}/health")
            except httpx.ConnectError:
                return
            await asyncio.sleep(0.05)
    raise AssertionError(f"{url} still accepts connections {within:g} s after SIGTERM")


class SlowPost:
    """A POST whose body is held back: `Expect: 100-continue` makes the server say when the application
    is reading the body, so the request is certainly in flight before the test goes on."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> None:
        self.reader, self.writer, self.body = reader, writer, body

    @classmethod
    async def send_headers(cls, url: str, path: str, headers: dict[str, str]) -> SlowPost:
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        body = json.dumps(subgoal_request("デプロイ中に受け付けた目標")).encode()
        head = [
            f"POST {path} HTTP/1.1",
            f"Host: {host}:{port}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            "Expect: 100-continue",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        await writer.drain()
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 15)
        assert interim.startswith(b"HTTP/1.1 100"), interim
        return cls(reader, writer, body)

    async def finish(self) -> tuple[int, str]:
        self.writer.write(self.body)
        await self.writer.drain()
        head = (await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 15)).decode()
        fields = dict(line.lower().split(": ", 1) for line in head.split("\r\n")[1:] if ": " in line)
        length = int(fields["content-length"])
        body = (await self.reader.readexactly(length)).decode()
        self.writer.close()
        return int(head.split(" ", 2)[1]), body
