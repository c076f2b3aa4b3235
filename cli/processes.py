"""Child processes that `mandala dev` and the test launchers start, supervise and stop."""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NoReturn

_PR_SET_PDEATHSIG = 1


class ServiceStartError(RuntimeError):
    """A service could not be started; the message says why and what to do."""


class PortInUseError(ServiceStartError):
    def __init__(self, what: str, host: str, port: int) -> None:
        super().__init__(
            f"{what} cannot listen on {host}:{port}: the port is already in use "
            "(stop the other process or choose another port)"
        )


def ensure_port_free(host: str, port: int, what: str) -> None:
    """Fail with a clear message when something already listens on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Servers set SO_REUSEADDR too, so lingering TIME_WAIT connections must not count as "in use".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            raise PortInUseError(what, host, port) from None


def exit_now(code: int) -> NoReturn:
    """Leave at once with ``code``, once the caller has stopped everything it started: temporalio's runtime
    threads can abort interpreter shutdown (SIGABRT, sdk-python #300)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return "(no log written)"
    return "\n".join(text.splitlines()[-lines:])


def _parent_death_signal(sig: signal.Signals) -> Callable[[], None] | None:
    """A preexec hook making the child receive `sig` when this process dies, even by SIGKILL.

    Linux delivers it when the *thread* that forked the child exits, so it is only armed for children
    started from the main thread (a server started from a worker thread would die with that thread).
    """
    if sys.platform != "linux" or threading.current_thread() is not threading.main_thread():
        return None
    # Resolved here, in the parent: the forked child should do as little as possible before exec.
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, int(sig))

    return arm


class ManagedProcess:
    """A child process in its own process group.

    Its own group keeps a terminal's Ctrl+C away from it, so that the parent decides the stop order;
    the parent-death signal still stops it if the parent is killed outright.
    """

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        *,
        stop_signal: signal.Signals = signal.SIGTERM,
        log_path: Path | None = None,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        user: str | None = None,
    ) -> None:
        self.name = name
        self.stop_signal = stop_signal
        log = log_path.open("ab") if log_path is not None else None
        try:
            self._popen = subprocess.Popen(
                list(args),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT if log is not None else None,
                cwd=cwd,
                env=env,
                user=user,
                process_group=0,
                preexec_fn=_parent_death_signal(stop_signal),
            )
        finally:
            if log is not None:
                log.close()

    @property
    def pid(self) -> int:
        return self._popen.pid

    def poll(self) -> int | None:
        """The exit code once the process has exited, else None."""
        return self._popen.poll()

    def stop(self, timeout: float = 10.0) -> None:
        """Send the stop signal, wait up to `timeout` seconds, then kill the whole process group."""
        if self._popen.poll() is not None:
            return
        try:
            self._popen.send_signal(self.stop_signal)
            self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            print(f"{self.name} did not stop within {timeout:g} s; killing it", file=sys.stderr)
            try:
                os.killpg(self._popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._popen.wait()
