"""A client that hangs up while sending its body is an ordinary event, not a server error (issue 7)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest
import uvicorn
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from api.app import create_app
from settings import Settings
from tests.support.api import bearer
from tests.support.servers import free_port


async def test_a_client_disconnecting_mid_body_is_logged_quietly(
    clean_db: AsyncEngine, api_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="api")
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(api_settings()), host="127.0.0.1", port=port, log_config=None, lifespan="on"
        )
    )
    serving = asyncio.create_task(server.serve())
    try:
        for _ in range(500):
            if server.started:
                break
            await asyncio.sleep(0.02)
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        token = bearer("hang-up")["Authorization"]
        head = (
            "POST /api/ai/async/generate HTTP/1.1\r\nHost: api.test\r\n"
            f"Authorization: {token}\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n"
        )
        writer.write(head.encode() + b'{"type":"SUBGOAL_GENERATION","params":{"title":"')
        await writer.drain()
        await asyncio.sleep(0.3)  # the API has authenticated and is reading the body
        writer.close()
        await writer.wait_closed()
        for _ in range(200):
            if any(getattr(r, "event", None) == "client_disconnected" for r in caplog.records):
                break
            await asyncio.sleep(0.02)
    finally:
        server.should_exit = True
        await serving
    [record] = [r for r in caplog.records if getattr(r, "event", None) == "client_disconnected"]
    assert record.levelno in (logging.INFO, logging.WARNING) and record.exc_info is None
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not [r for r in caplog.records if r.exc_info]
    [request_line] = [r for r in caplog.records if getattr(r, "event", None) == "http_request"]
    assert getattr(request_line, "status", None) == 499
    async with clean_db.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM processing_states"))).scalar_one() == 0
