"""Servers that an earlier run started on a data directory and that outlived it.

A server writes a pid file into its data directory (PostgreSQL its own `postmaster.pid`, the Temporal dev
server the `temporal.pid` we write). Before a start the file is checked: a pid number alone proves
nothing, since numbers are reused (after a container restart the file often names an unrelated live
process). The process counts as the recorded server only if it was started when the file says (its start
time, within a clock tolerance) *and* it serves this data directory (`belongs`). Such a leftover is
stopped; any other process is left alone and the stale file is removed.

Callers must own the data directory (`mandala dev` holds its lock), so a leftover cannot be the server
of another run that is still alive.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from cli.processes import announce

# /proc start times are derived from the boot time, which is known to the second.
START_TIME_TOLERANCE_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class PidRecord:
    pid: int
    started_at: float  # seconds since the epoch


def read_pid_record(path: Path, started_at_line: int) -> PidRecord | None:
    """The pid (first line) and start time (line `started_at_line`, 0-based) of a pid file; None when the
    file is missing or unreadable."""
    try:
        lines = path.read_text().splitlines()
        return PidRecord(int(lines[0]), float(lines[started_at_line]))
    except (FileNotFoundError, ValueError, IndexError):
        return None


def write_pid_record(path: Path, pid: int) -> None:
    """Record a process we started: its pid and its start time, one a line."""
    path.write_text(f"{pid}\n{psutil.Process(pid).create_time()}\n")


def recorded_process(record: PidRecord, belongs: Callable[[psutil.Process], bool]) -> psutil.Process | None:
    """The live process `record` describes, or None when the pid is dead or now someone else's."""
    try:
        process = psutil.Process(record.pid)
        if abs(process.create_time() - record.started_at) > START_TIME_TOLERANCE_SECONDS:
            return None
        return process if belongs(process) else None
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def clear_leftover(
    pid_file: Path,
    *,
    started_at_line: int,
    belongs: Callable[[psutil.Process], bool],
    what: str,
    stop_signal: signal.Signals,
    timeout: float,
) -> None:
    """Stop the server `pid_file` records if it still runs; otherwise remove the stale file."""
    record = read_pid_record(pid_file, started_at_line)
    if record is None:
        return
    process = recorded_process(record, belongs)
    if process is None:
        pid_file.unlink(missing_ok=True)
        return
    announce(f"stopping {what} (pid {record.pid}) left running on {pid_file.parent} by an earlier run")
    try:
        process.send_signal(stop_signal)
        process.wait(timeout)
    except psutil.TimeoutExpired:
        announce(f"{what} (pid {record.pid}) did not stop within {timeout:g} s; killing it")
        process.kill()
        process.wait(10)
    except psutil.NoSuchProcess:
        pass
    pid_file.unlink(missing_ok=True)


def same_directory(process: psutil.Process, directory: Path) -> bool:
    """Whether `process` runs in `directory` (a postmaster changes into its data directory)."""
    try:
        return Path(process.cwd()).resolve() == directory.resolve()
    except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess, FileNotFoundError):
        return False
