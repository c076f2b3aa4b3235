"""Ports and data directories for the servers the tests start."""

from __future__ import annotations

import random
import socket
import tempfile
from contextlib import ExitStack
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_ports(count: int) -> list[int]:
    """Distinct free ports: all sockets are held open together so the kernel cannot hand one out twice."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def free_port_run(count: int) -> int:
    """The first of `count` consecutive free ports, below the kernel's ephemeral range (mandala dev gives
    its processes consecutive metrics ports)."""
    for _ in range(200):
        first = random.randrange(20_000, 32_000 - count)
        try:
            with ExitStack() as stack:
                for port in range(first, first + count):
                    stack.enter_context(socket.socket()).bind(("127.0.0.1", port))
        except OSError:
            continue
        return first
    raise RuntimeError(f"no {count} consecutive free ports found")


def free_port() -> int:
    return free_ports(1)[0]


def closed_port_address() -> str:
    """An address nothing listens on."""
    return f"127.0.0.1:{free_port()}"


def server_dir() -> Path:
    """A data directory outside pytest's per-session temp root, which is reset to mode 0700 by every new
    session; as root, PostgreSQL runs as an unprivileged user that must traverse the parents."""
    return Path(tempfile.mkdtemp(prefix="mandala-test-")) / "data"
