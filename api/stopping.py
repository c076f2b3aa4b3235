"""Noticing that the API process has been told to stop, so that open event streams can end cleanly.

uvicorn handles SIGTERM and SIGINT itself: it stops accepting connections and waits (up to
`--timeout-graceful-shutdown`) for the requests in flight, but tells the application nothing until every
response has ended; an event stream would only be cut off when the timeout runs out. So while the app
runs, its own handler is chained in front of the server's: it sets the `stopping` event, then hands the
signal on unchanged.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def on_stop_signal(callback: Callable[[], None]) -> Iterator[None]:
    """Call ``callback`` on the running loop when a stop signal arrives, before the handler installed
    already (the server's); signals without a Python handler are left alone, and so are threads other
    than the main one (where signals cannot be handled)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    chained = {sig: handler for sig, handler in previous.items() if callable(handler)}

    def handle(signum: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(callback)
        chained[signal.Signals(signum)](signum, frame)

    for sig in chained:
        signal.signal(sig, handle)
    try:
        yield
    finally:
        for sig, handler in chained.items():
            signal.signal(sig, handler)
