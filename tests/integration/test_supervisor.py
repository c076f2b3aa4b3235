"""The supervisor restarts real child processes with backoff, and retries a restart that fails."""

from __future__ import annotations

import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from cli.postgres import EmbeddedPostgres
from cli.processes import Command
from cli.supervisor import Supervisor
from tests.support.servers import free_ports


def run_until(supervisor: Supervisor, done: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline
        supervisor.check()
        time.sleep(0.01)


def messages_of(code: str, count: int, **options: float) -> list[str]:
    """The first `count` things a supervisor says about a Python child running `code`."""
    messages: list[str] = []
    supervisor = Supervisor(say=messages.append, **options)
    supervisor.start(Command("the child", [sys.executable, "-c", code]))
    try:
        run_until(supervisor, lambda: len(messages) >= count)
    finally:
        supervisor.stop_all()
    return messages[:count]


def test_a_crashing_child_is_restarted_with_growing_delays_up_to_the_cap() -> None:
    messages = messages_of("import sys; sys.exit(3)", 8, initial_delay=0.05, max_delay=0.2, stable_after=60)
    assert messages[0::2] == [
        f"the child exited with code 3; restarting it in {delay} s" for delay in ("0.05", "0.1", "0.2", "0.2")
    ]
    for number, message in enumerate(messages[1::2], start=1):
        assert message.startswith("the child restarted (pid ") and message.endswith(f", restart {number})")


def test_a_child_that_ran_long_enough_restarts_after_the_initial_delay_again() -> None:
    code = "import sys, time; time.sleep(0.4); sys.exit(1)"
    messages = messages_of(code, 6, initial_delay=0.05, max_delay=5, stable_after=0.2)
    assert messages[0::2] == ["the child exited with code 1; restarting it in 0.05 s"] * 3


@pytest.fixture
def scratch_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="mandala-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_restart_that_fails_is_tried_again_after_the_next_delay(scratch_dir: Path) -> None:
    port = free_ports(1)[0]
    postgres = EmbeddedPostgres(scratch_dir / "pg", port=port)
    messages: list[str] = []
    supervisor = Supervisor(initial_delay=0.05, max_delay=0.1, say=messages.append)
    supervisor.start(postgres)
    try:
        assert postgres.pid is not None
        psutil.Process(postgres.pid).send_signal(signal.SIGKILL)
        with socket.socket() as squatter:
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            deadline = time.monotonic() + 10
            while True:  # the dead postmaster's port frees as soon as it is gone
                try:
                    squatter.bind(("127.0.0.1", port))
                    break
                except OSError:
                    assert time.monotonic() < deadline
                    time.sleep(0.05)
            squatter.listen()
            run_until(supervisor, lambda: len(messages) >= 2)
        run_until(supervisor, lambda: messages[-1].startswith("PostgreSQL restarted"))
    finally:
        supervisor.stop_all()
    assert messages[0] == "PostgreSQL exited with signal SIGKILL; restarting it in 0.05 s"
    assert messages[1].startswith("PostgreSQL could not be restarted (PostgreSQL cannot listen on ")
    assert messages[1].endswith("; restarting it in 0.1 s")
    assert messages[-1].startswith("PostgreSQL restarted (pid ")
