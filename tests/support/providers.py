"""Shared by the provider tests: a request with the spec's default sampling values."""

from __future__ import annotations

import uuid

from ai.provider import AIRequest, CallContext
from domain.enums import ProcessingType
from settings import Settings

# Sentinels: an error message or log line containing either would leak prompt text.
SYSTEM = "SYSTEM-SENTINEL あなたは目標達成の専門家です。"
USER = "USER-SENTINEL 目標: TypeScriptのエキスパートになる"


def make_request() -> AIRequest:
    """AI_TEMPERATURE, AI_MAX_TOKENS and AI_TOP_P at their defaults, as a worker would send them."""
    defaults = Settings.model_fields
    return AIRequest(
        system=SYSTEM,
        user=USER,
        temperature=defaults["ai_temperature"].default,
        max_tokens=defaults["ai_max_tokens"].default,
        top_p=defaults["ai_top_p"].default,
        context=CallContext(
            process_id=uuid.uuid4(), unit_id=uuid.uuid4(), type=ProcessingType.SUBGOAL_GENERATION
        ),
    )
