"""The AI provider interface (spec 3.2).

Providers make exactly one call per ``generate`` and never retry: Temporal owns every retry, and the
activity owns regeneration. Every failure is a ``ProviderError`` whose ``kind`` maps to one code:
TRANSIENT → ``AI_ERROR`` (auto-retried, ``retry_after`` sets the next delay), REJECTED →
``AI_REQUEST_REJECTED``, INVALID_RESPONSE → ``AI_RESPONSE_INVALID`` (regenerated in the activity).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol
from uuid import UUID

from domain.enums import ProcessingType
from domain.errors import ErrorCode

log = logging.getLogger("ai.provider")


class ProviderErrorKind(StrEnum):
    TRANSIENT = "TRANSIENT"
    REJECTED = "REJECTED"
    INVALID_RESPONSE = "INVALID_RESPONSE"

    @property
    def error_code(self) -> ErrorCode:
        return _ERROR_CODES[self]


_ERROR_CODES = {
    ProviderErrorKind.TRANSIENT: ErrorCode.AI_ERROR,
    ProviderErrorKind.REJECTED: ErrorCode.AI_REQUEST_REJECTED,
    ProviderErrorKind.INVALID_RESPONSE: ErrorCode.AI_RESPONSE_INVALID,
}


class ProviderError(Exception):
    """The one error type providers raise. The message must not contain prompt or output text."""

    def __init__(self, kind: ProviderErrorKind, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True, kw_only=True)
class CallContext:
    """Who is calling: used for logs and, by the offline provider, for seeding and fault injection."""

    process_id: UUID
    unit_id: UUID
    type: ProcessingType
    attempt: int = 1  # the Temporal activity attempt, from 1
    generation: int = 1  # the output number within one attempt, 1..3
    retry_count: int = 0  # the job's place in its retry chain: 0 for the original, 1 for its first retry


@dataclass(frozen=True, slots=True, kw_only=True)
class AIRequest:
    system: str
    user: str
    temperature: float
    max_tokens: int
    top_p: float
    context: CallContext


@dataclass(frozen=True, slots=True, kw_only=True)
class AIResponse:
    text: str
    input_tokens: int
    output_tokens: int
    provider: str
    model: str
    finish_reason: str | None
    latency_ms: int


class AIProvider(Protocol):
    @property
    def name(self) -> str: ...

    async def generate(self, request: AIRequest) -> AIResponse: ...

    async def aclose(self) -> None: ...


def _count(usage: dict[str, Any], key: str) -> int | None:
    value = usage.get(key)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def read_usage(
    body: dict[str, Any], input_key: str, output_key: str, request: AIRequest, provider: str, model: str
) -> tuple[int, int]:
    """The token counts a provider reported under ``body["usage"]``; a missing count is 0 and logged."""
    usage = body.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    tokens_in, tokens_out = _count(usage, input_key), _count(usage, output_key)
    if tokens_in is None or tokens_out is None:
        log.warning(
            "ai usage missing",
            extra={
                "event": "ai_usage_missing",
                "provider": provider,
                "model": model,
                "processId": str(request.context.process_id),
                "unitId": str(request.context.unit_id),
            },
        )
    return tokens_in or 0, tokens_out or 0
