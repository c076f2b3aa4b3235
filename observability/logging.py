"""One JSON object per line on stdout (spec 8.1), masked (spec 8.2)."""

from __future__ import annotations

import json
import logging
import socket
import sys
import traceback
from datetime import UTC, datetime
from typing import Any

from observability.masking import mask

_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
_LEVELS = {"WARNING": "WARN", "CRITICAL": "ERROR"}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service
        # Several processes of one service (replicas, or two on one host) write to one stream: these
        # tell them apart, and match the Temporal worker identity `<pid>@<host>`.
        self.host = socket.gethostname()

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC)
        out: dict[str, Any] = {
            "timestamp": ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z",
            "level": _LEVELS.get(record.levelname, record.levelname),
            "service": self.service,
            "pid": record.process,
            "host": self.host,
            "logger": record.name,
            "event": getattr(record, "event", None) or "log",
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in out and value is not None:
                out[key] = value
        if record.exc_info and record.levelno >= logging.ERROR:
            out["stack"] = "".join(traceback.format_exception(*record.exc_info))
        return json.dumps(mask(out), ensure_ascii=False, default=str)


def configure_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel("WARNING" if level == "WARN" else level)
    for noisy in ("uvicorn.access",):
        logging.getLogger(noisy).disabled = True
