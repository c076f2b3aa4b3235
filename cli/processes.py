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
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import NoReturn, Self

_PR_SET_PDEATHSIG = 1


class ServiceStartError(RuntimeError):
    """A service could not be started; the message says why and what to do."""


class PortInUseError(ServiceStartError):
    def __init__(self, what: str, host: str, port: int) -> None:
        super().__init__(
            f"{what} cannot listen on {host}:{port}: the port is already in use "
            "(stop the other process or choose another port)"
        )


def announce(message: str) -> None:
    """A line for the person watching `mandala dev` (stderr, so that stdout keeps the banner)."""
    print(f"mandala dev: {message}", file=sys.stderr, flush=True)


def ensure_port_free(host: str, port: int, what: str) -> None:
    """Fail with a clear message when something already listens on host:port."""
    listening_socket(host, port, what).close()


def listening_socket(host: str, port: int, what: str, backlog: int = 0) -> socket.socket:
    """A TCP socket bound to host:port (listening when `backlog` > 0); PortInUseError when taken."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # Servers set SO_REUSEADDR too, so lingering TIME_WAIT connections must not count as "in use".
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        if backlog > 0:
            sock.listen(backlog)
    except OSError as exc:
        sock.close()
        if exc.errno != errno.EADDRINUSE:
            raise
        raise PortInUseError(what, host, port) from None
    return sock


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


def describe_exit(code: int) -> str:
    """`code 3`, or `signal SIGKILL` for a negative Popen return code."""
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"


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
        pass_fds: Sequence[int] = (),
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
                pass_fds=tuple(pass_fds),
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

    def wait_for_group_exit(self, timeout: float) -> bool:
        """After the process itself has exited, wait until the rest of its group (e.g. PostgreSQL's
        backends after a killed postmaster) is gone too; False if some member is still there.

        Only signal 0 is sent: a group whose leader has died cannot be told apart from a new group that
        reused the number once it is empty, so this never signals it for real.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                os.killpg(self._popen.pid, 0)
            except ProcessLookupError:
                return True
            except PermissionError:  # a member runs as a user we cannot signal: it still exists
                pass
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)


class ChildServer:
    """A service run as one ManagedProcess that `start()` creates: PostgreSQL, Temporal, the worker, the API.

    `start()` after the process has died starts a new one, which is how `mandala dev` restarts it.
    """

    name = "a child process"
    stop_timeout = 10.0

    def __init__(self) -> None:
        self._process: ManagedProcess | None = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        """The process id while it runs."""
        return self._process.pid if self._process is not None and self._process.poll() is None else None

    def poll(self) -> int | None:
        """The exit code once a started process has exited, else None."""
        return self._process.poll() if self._process is not None else None

    def start(self, timeout: float = 60.0) -> None:
        """Start the process unless it runs, and wait until it is ready (ServiceStartError if it is not
        within `timeout` seconds). After a death, the dead process's group is let finish first."""
        if self.pid is not None:
            return
        if self._process is not None:
            self._process.wait_for_group_exit(timeout=10.0)
            self._process = None
        self._prepare()
        self._process = self._spawn()
        try:
            self._wait_until_ready(self._process, time.monotonic() + timeout)
        except ServiceStartError:
            self.stop()
            raise

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop(self.stop_timeout)
            self._process = None
            self._stopped()

    def _prepare(self) -> None:
        """Before each spawn: clear leftovers, check ports, create directories."""

    def _spawn(self) -> ManagedProcess:
        raise NotImplementedError

    def _wait_until_ready(self, process: ManagedProcess, deadline: float) -> None:
        """Return once the process serves; raise ServiceStartError if it exits or the deadline passes."""

    def _stopped(self) -> None:
        """After a stop: remove what only a running process needs."""


class Command(ChildServer):
    """A command run as a child (the worker, an API process); ready as soon as it is spawned."""

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        pass_fds: Sequence[int] = (),
    ) -> None:
        super().__init__()
        self.name = name
        self._args = list(args)
        self._cwd = cwd
        self._env = env
        self._pass_fds = tuple(pass_fds)

    def _spawn(self) -> ManagedProcess:
        return ManagedProcess(self.name, self._args, cwd=self._cwd, env=self._env, pass_fds=self._pass_fds)
