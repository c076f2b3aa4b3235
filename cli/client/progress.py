"""The live progress display: one row per job (units done / total, status, elapsed).

On a terminal it is a rich progress bar redrawn in place; otherwise (a pipe, a log file) each change is
printed as one line, so that a log still shows the job moving.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from cli.client.events import Event
from domain.enums import ProcessingStatus

_STATUS_STYLE = {
    ProcessingStatus.PENDING: "yellow",
    ProcessingStatus.PROCESSING: "cyan",
    ProcessingStatus.COMPLETED: "green",
    ProcessingStatus.FAILED: "red",
    ProcessingStatus.TIMEOUT: "red",
    ProcessingStatus.CANCELLED: "magenta",
}


def status_text(status: str) -> Text:
    return Text(status, style=_STATUS_STYLE[ProcessingStatus(status)])


@dataclass
class JobState:
    """What the events of one job have said so far."""

    process_id: str
    total_units: int
    status: ProcessingStatus = ProcessingStatus.PENDING
    progress: int = 0
    succeeded: int = 0
    failed: int = 0
    last_seq: int = 0
    started: float = field(default_factory=time.monotonic)

    def apply(self, event: Event) -> None:
        self.last_seq = event.seq
        self.status = event.status
        self.progress = event.progress
        if event.type == "UNIT_SUCCEEDED":
            self.succeeded += 1
        elif event.type == "UNIT_FAILED":
            self.failed += 1

    @property
    def units(self) -> str:
        return f"{self.succeeded + self.failed}/{self.total_units}"

    def elapsed(self) -> str:
        seconds = int(time.monotonic() - self.started)
        return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class ProgressBoard:
    """Rows are added up front (``add``) and started when their job exists (``start``)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._live = console.is_terminal
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[units]}", justify="right"),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self._labels: dict[TaskID, str] = {}
        self._shown: dict[TaskID, tuple[str, str, int]] = {}

    def __enter__(self) -> ProgressBoard:
        self.resume()
        return self

    def __exit__(self, *exc: object) -> None:
        self.pause()

    def pause(self) -> None:
        if self._live:
            self._progress.stop()

    def resume(self) -> None:
        if self._live:
            self._progress.start()

    def add(self, label: str, waiting: str) -> TaskID:
        row = self._progress.add_task(
            label, total=100, start=False, units="", status=Text(waiting, style="dim")
        )
        self._labels[row] = label
        return row

    def start(self, row: TaskID, state: JobState) -> None:
        self._progress.start_task(row)
        self.update(row, state)

    def update(self, row: TaskID, state: JobState) -> None:
        self._progress.update(
            row, completed=state.progress, units=state.units, status=status_text(state.status)
        )
        if state.status.is_terminal:
            self._progress.stop_task(row)
        shown = (state.status.value, state.units, state.progress)
        if not self._live and self._shown.get(row) != shown:
            self._shown[row] = shown
            line = f"{self._labels[row]}  {state.status.value}  {state.units}  {state.progress}%"
            self.console.print(f"{line}  {state.elapsed()}", highlight=False)
