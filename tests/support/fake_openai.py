"""A controllable OpenAI-compatible Chat Completions server on loopback (the AI provider's outside edge).

Each test queues the replies it wants and inspects the requests the client sent.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict → JSON; bytes → raw
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # before anything is written
    stall: float = 0.0  # after the headers and the first body byte
    trickle: float = 0.0  # between body bytes


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)

    def json(self) -> Any:
        return json.loads(self.body)


class FakeOpenAI:
    def __init__(self) -> None:
        self.replies: deque[Reply] = deque()
        self.requests: list[Seen] = []
        self.received = asyncio.Event()
        self.client_closed_early = asyncio.Event()
        self.responses_completed = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @property
    def base_url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            request_line, *header_lines = head.strip().split("\r\n")
            method, path, _ = request_line.split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append(Seen(method, path, headers, body))
            self.received.set()
            await self._respond(self.replies.popleft(), reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _respond(
        self, reply: Reply, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if await self._closed_within(reader, reply.delay):
            return
        body = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        head = [f"HTTP/1.1 {reply.status} Status", f"Content-Length: {len(body)}", "Connection: close"]
        head += ["Content-Type: application/json", *(f"{k}: {v}" for k, v in reply.headers.items())]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        for i, byte in enumerate(body):
            writer.write(bytes([byte]))
            await writer.drain()
            pause = reply.stall if i == 0 else reply.trickle
            if await self._closed_within(reader, pause):
                return
        await writer.drain()
        self.responses_completed += 1

    async def _closed_within(self, reader: asyncio.StreamReader, seconds: float) -> bool:
        """Wait up to ``seconds``; True (and recorded) if the client closed the connection meanwhile."""
        if seconds <= 0:
            return False
        try:
            data = await asyncio.wait_for(reader.read(1), seconds)
        except TimeoutError:
            return False
        if data == b"":
            self.client_closed_early.set()
            return True
        return False


def chat_completion(content: str, prompt_tokens: int = 321, completion_tokens: int = 123) -> dict[str, Any]:
    """A successful Chat Completions body carrying ``content``."""
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "model": "gpt-test-2026",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
    }
