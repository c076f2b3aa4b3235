"""Running the `mandala` client commands as subprocesses against a live stack."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from tests.support.live_stack import REPO_ROOT

CLI_TIMEOUT = 120.0
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def mandala(
    *args: str, env: dict[str, str], timeout: float = CLI_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def started_id(output: str) -> str:
    """The process id of the first "Started job …" line."""
    match = re.search(rf"Started job ({UUID})", output)
    assert match, output
    return match.group(1)


def shown_goal(output: str) -> str:
    """The goal id of the "mandala show GOAL" hint printed after a completed job."""
    match = re.search(rf"mandala show ({UUID})", output)
    assert match, output
    return match.group(1)


@dataclass
class Running:
    """A client command left running; its output is collected as it comes (prompts end no line)."""

    process: subprocess.Popen[bytes]
    chunks: list[bytes] = field(default_factory=list)
    _seen: threading.Condition = field(default_factory=threading.Condition)

    def output(self) -> str:
        return b"".join(self.chunks).decode(errors="replace")

    def wait_for(self, pattern: str, timeout: float = 60.0) -> str:
        regex = re.compile(pattern)
        with self._seen:
            found = self._seen.wait_for(lambda: regex.search(self.output()) is not None, timeout)
        assert found, f"{pattern!r} never printed:\n{self.output()}"
        return self.output()

    def answer(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        self.process.stdin.flush()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def _collect(self, fd: int) -> None:
        while chunk := os.read(fd, 4096):
            with self._seen:
                self.chunks.append(chunk)
                self._seen.notify_all()


@contextmanager
def start_mandala(*args: str, env: dict[str, str], sigint_ignored: bool = False) -> Iterator[Running]:
    """A client command with a stdin to answer its prompts; killed on leaving if it still runs.

    ``sigint_ignored`` starts it as a shell starts a background command: with SIGINT ignored."""
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", *args],
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint_ignored else None,
    )
    running = Running(process)
    assert process.stdout is not None
    threading.Thread(target=running._collect, args=(process.stdout.fileno(),), daemon=True).start()
    try:
        yield running
    finally:
        running.stop()
