"""The response envelope (spec 5.1): ``{"success": true, "data"}`` or ``{"success": false, "error"}``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from fastapi.responses import JSONResponse

from domain.enums import Language
from domain.errors import CATALOGUE, ErrorCode


class EnvelopeResponse(JSONResponse):
    """JSON rendered by orjson (the same compact UTF-8 text as the standard encoder, several times faster);
    what orjson refuses (an integer beyond 64 bits, a non-string key) is rendered the standard way."""

    def render(self, content: Any) -> bytes:
        try:
            return orjson.dumps(content)
        except TypeError:
            return super().render(content)


def success(
    data: Mapping[str, Any], status_code: int = 200, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return EnvelopeResponse({"success": True, "data": data}, status_code=status_code, headers=headers)


def error_response(
    code: ErrorCode,
    lang: Language,
    details: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """An error in the envelope: never ``data``, never internal text; ``details`` only when given."""
    entry = CATALOGUE[code]
    error: dict[str, Any] = {"code": code.value, "message": entry.message(lang), "retryable": entry.retryable}
    if details:
        error["details"] = dict(details)
    return EnvelopeResponse(
        {"success": False, "error": error}, status_code=entry.http_status, headers=headers
    )
