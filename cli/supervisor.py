"""Keeps `mandala dev`'s children running: a child that dies is restarted with backoff, and said so.

Backoff: the first restart waits `initial_delay` (1 s), each further one twice as long up to `max_delay`
(30 s); a child that had run for `stable_after` (60 s) before it died starts again from `initial_delay`.
A restart that fails (e.g. PostgreSQL cannot start yet because the old server's backends are still
exiting) is tried again after the next delay; nothing is given up while `mandala dev` runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from cli.processes import ServiceStartError, announce, describe_exit


class Service(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def pid(self) -> int | None: ...

    def start(self) -> None: ...

    def poll(self) -> int | None: ...

    def stop(self) -> None: ...


@dataclass
class _Watched:
    service: Service
    started_at: float
    delay: float
    restart_at: float | None = None  # set while the service is down
    restarts: int = 0


class Supervisor:
    def __init__(
        self,
        *,
        initial_delay: float = 1.0,
        max_delay: float = 30.0,
        stable_after: float = 60.0,
        say: Callable[[str], None] = announce,
    ) -> None:
        self._initial_delay = initial_delay
        self._max_delay = max_delay
        self._stable_after = stable_after
        self._say = say
        self._watched: list[_Watched] = []

    def start(self, service: Service) -> None:
        """Start `service` (a ServiceStartError propagates) and watch it from now on."""
        self._watched.append(_Watched(service, time.monotonic(), self._initial_delay))
        service.start()

    def first_exit(self) -> str | None:
        """How the first watched service that has exited did so, e.g. `the worker exited with code 1`."""
        for watched in self._watched:
            code = watched.service.poll()
            if code is not None:
                return f"{watched.service.name} exited with {describe_exit(code)}"
        return None

    def check(self) -> None:
        """One round: notice services that died and restart those whose delay has passed."""
        now = time.monotonic()
        for watched in self._watched:
            if watched.restart_at is None:
                code = watched.service.poll()
                if code is not None:
                    self._schedule(watched, now, f"exited with {describe_exit(code)}")
            elif now >= watched.restart_at:
                self._restart(watched)

    def stop_all(self) -> None:
        """Stop every service, the last started first."""
        for watched in reversed(self._watched):
            watched.service.stop()

    def _schedule(self, watched: _Watched, now: float, why: str) -> None:
        if now - watched.started_at >= self._stable_after:
            watched.delay = self._initial_delay
        watched.restart_at = now + watched.delay
        self._say(f"{watched.service.name} {why}; restarting it in {watched.delay:g} s")
        watched.delay = min(watched.delay * 2, self._max_delay)

    def _restart(self, watched: _Watched) -> None:
        watched.restarts += 1
        watched.started_at = time.monotonic()
        try:
            watched.service.start()
        except Exception as exc:  # whatever stopped this restart, the next one may succeed
            cause = str(exc) if isinstance(exc, ServiceStartError) else f"{type(exc).__name__}: {exc}"
            self._schedule(watched, time.monotonic(), f"could not be restarted ({cause})")
            return
        watched.restart_at = None
        self._say(f"{watched.service.name} restarted (pid {watched.service.pid}, restart {watched.restarts})")
