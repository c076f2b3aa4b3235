"""The API process entry point for uvicorn: `uvicorn api.asgi:app` (JSON logs on stdout)."""

from __future__ import annotations

from api.app import create_app
from observability.logging import configure_logging
from settings import get_settings

configure_logging("api", get_settings().log_level)
app = create_app()
