"""Watching a job to its end: events feed the progress display; Ctrl-C offers to cancel the job.

The event stream is read on a thread of its own and handed to the main thread through a queue; while a job
is watched, Ctrl-C only posts a message to that queue. A KeyboardInterrupt raised wherever the main thread
happened to be could land inside rich's console (leaving its buffer open, so the cancel prompt was never
printed) or inside httpx's connection handling; a message is read only where the main thread is waiting.

Exit codes (docs/cli.md): 0 COMPLETED, 3 FAILED, 4 TIMEOUT, 5 CANCELLED; 1 when a request fails, 130 when
the user stops watching and leaves the job running.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from queue import SimpleQueue
from types import FrameType
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import TaskID
from rich.prompt import Confirm

from cli.client.api import ApiClient, ApiError
from cli.client.events import Event, follow
from cli.client.progress import JobState, ProgressBoard
from cli.client.text import t
from domain.enums import Language, ProcessingStatus

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_DETACHED = 130
EXIT_CODES = {
    ProcessingStatus.COMPLETED: EXIT_OK,
    ProcessingStatus.FAILED: 3,
    ProcessingStatus.TIMEOUT: 4,
    ProcessingStatus.CANCELLED: 5,
}


class Detached(Exception):
    """The user stopped watching and chose not to cancel: the job goes on."""

    def __init__(self, process_id: str) -> None:
        super().__init__(process_id)
        self.process_id = process_id


class _CtrlC:
    """The user pressed Ctrl-C."""


class _End:
    """The stream delivered the job's terminal event."""


Message = Event | _CtrlC | _End | Exception


def watch(
    api: ApiClient, board: ProgressBoard, row: TaskID, job: dict[str, Any], lang: Language
) -> dict[str, Any]:
    """Follow ``job`` (an accepted or a status body) to its end; returns its final status body."""
    total = job.get("totalUnits") or job.get("units", {}).get("total") or 1
    state = JobState(job["processId"], total)
    board.start(row, state)
    inbox: SimpleQueue[Message] = SimpleQueue()
    threading.Thread(target=_read, args=(api, state.process_id, inbox), daemon=True).start()
    # A shell starts a background command with Ctrl-C ignored; such a watch keeps ignoring it.
    inherited_ignore = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    with _on_sigint(signal.SIG_IGN if inherited_ignore else lambda *_: inbox.put(_CtrlC())):
        while not isinstance(message := inbox.get(), _End):
            if isinstance(message, Event):
                state.apply(message)
                board.update(row, state)
            elif isinstance(message, _CtrlC):
                with _on_sigint(signal.default_int_handler):  # Ctrl-C at the prompt answers "no"
                    _offer_cancel(api, board, state.process_id, lang)
            else:
                raise message
    return api.status(state.process_id)


def _read(api: ApiClient, process_id: str, inbox: SimpleQueue[Message]) -> None:
    """The reading thread. Left blocked when the user detaches: it is a daemon and ends with the process."""
    try:
        for event in follow(api, process_id):
            inbox.put(event)
    except Exception as exc:  # the main thread raises it
        inbox.put(exc)
    else:
        inbox.put(_End())


@contextmanager
def _on_sigint(handler: Callable[[int, FrameType | None], Any] | signal.Handlers) -> Iterator[None]:
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _offer_cancel(api: ApiClient, board: ProgressBoard, process_id: str, lang: Language) -> None:
    board.pause()
    console = board.console
    try:
        answer = Confirm.ask(t("cancel_prompt", lang, pid=process_id), console=console, default=False)
    except (EOFError, KeyboardInterrupt):
        answer = False
    if not answer:
        raise Detached(process_id)
    try:
        api.cancel(process_id)
    except ApiError as exc:  # it ended meanwhile (CANCEL_NOT_ALLOWED): the stream shows how
        console.print(f"[yellow]{exc.message} ({exc.code})")
    board.resume()


def report(console: Console, final: dict[str, Any], lang: Language) -> int:
    """A hint (see the chart, or retry), then the final line: the outcome with the catalogue message in the
    user's language. Returns the exit code for the outcome."""
    status = ProcessingStatus(final["status"])
    error = final.get("error") or {}
    if status is ProcessingStatus.COMPLETED and final.get("targetType") == "GOAL":
        console.print(t("show_hint", lang, goal=final["targetId"]), highlight=False)
    elif status in (ProcessingStatus.FAILED, ProcessingStatus.TIMEOUT) and error.get("retryable"):
        console.print(t("retry_hint", lang, pid=final["processId"]), highlight=False)
    if status is ProcessingStatus.COMPLETED:
        console.print(f"[green]{status.value}[/] — {t('completed', lang)}", highlight=False)
    else:
        message = escape(f"{error.get('message', '')} ({error.get('code', status.value)})")
        console.print(f"[red]{status.value}[/] — {message}", highlight=False)
    return EXIT_CODES.get(status, EXIT_ERROR)
