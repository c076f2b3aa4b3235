"""A loopback TCP proxy that cuts the first server-sent event stream after a number of events.

It stands between a client and the API to prove that the client resumes a dropped stream: the first
connection that asks for ``text/event-stream`` is closed right after the end of its ``cut_after``-th event
frame, so the client has seen exactly that many events. Every request head is recorded.
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_EVENT_STREAM = re.compile(rb"accept:\s*text/event-stream", re.IGNORECASE)


class CuttingProxy:
    def __init__(self, upstream_port: int, cut_after: int) -> None:
        self.upstream_port = upstream_port
        self.cut_after = cut_after
        self.requests: list[str] = []  # request heads as sent by the client
        self.cuts = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._open: list[socket.socket] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stream_requests(self) -> list[str]:
        with self._lock:
            return [head for head in self.requests if _EVENT_STREAM.search(head.encode())]

    def serve(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            with self._lock:
                self._open += [client, upstream]
            state = {"stream": False}
            threading.Thread(target=self._requests, args=(client, upstream, state), daemon=True).start()
            threading.Thread(target=self._responses, args=(upstream, client, state), daemon=True).start()

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            for sock in self._open:
                _shut(sock)

    def _requests(self, client: socket.socket, upstream: socket.socket, state: dict[str, bool]) -> None:
        while data := _recv(client):
            with self._lock:
                self.requests.append(data.split(b"\r\n\r\n", 1)[0].decode("latin-1"))
                if _EVENT_STREAM.search(data) and self.cuts == 0:
                    state["stream"] = True
            upstream.sendall(data)
        _shut(upstream)

    def _responses(self, upstream: socket.socket, client: socket.socket, state: dict[str, bool]) -> None:
        seen = b""
        while data := _recv(upstream):
            if not state["stream"]:
                client.sendall(data)
                continue
            seen += data
            end = _end_of_frame(seen, self.cut_after)
            if end is None:
                client.sendall(data)
                continue
            client.sendall(data[: len(data) - (len(seen) - end)])
            with self._lock:
                self.cuts += 1
            break
        _shut(client)
        _shut(upstream)


def _end_of_frame(stream: bytes, count: int) -> int | None:
    """Where the ``count``-th ``id:`` frame of ``stream`` ends, with the HTTP chunk's trailing CRLF."""
    position = 0
    for _ in range(count):
        position = stream.find(b"\nid: ", position)  # a frame's first line, not the X-Request-ID header
        if position < 0:
            return None
        position += 5
    end = stream.find(b"\n\n", position)
    if end < 0 or len(stream) < end + 4:
        return None
    return end + 4  # "\n\n" ends the frame, "\r\n" its chunk


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


@contextmanager
def cutting_proxy(upstream_port: int, cut_after: int) -> Iterator[CuttingProxy]:
    proxy = CuttingProxy(upstream_port, cut_after)
    thread = threading.Thread(target=proxy.serve, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.close()
        thread.join(5)
