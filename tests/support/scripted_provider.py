"""A scripted provider at the outside edge, and the regeneration pipeline run against it."""

from __future__ import annotations

import json
import uuid
from typing import Any

from ai.pipeline import SamplingConfig, generate_validated, output_kind
from ai.prompts import Prompt
from ai.provider import AIRequest, AIResponse, CallContext, ProviderError
from domain.enums import ProcessingType
from domain.errors import ErrorCode

CALL = CallContext(process_id=uuid.uuid4(), unit_id=uuid.uuid4(), type=ProcessingType.SUBGOAL_GENERATION)
SAMPLING = SamplingConfig(temperature=0.7, max_tokens=2000, top_p=0.9, cost_per_1k_tokens_usd=0.5)
PROMPT = Prompt(system="system rules", user="data")


def subgoals(n: int = 8, title: str = "目標を達成する", description: str = "説明" * 30) -> str:
    items = [{"title": f"{title}{i}", "description": description, "background": ""} for i in range(n)]
    return json.dumps({"subGoals": items}, ensure_ascii=False)


class ScriptedProvider:
    """Answers each call with the next scripted text (or raises the scripted error)."""

    name = "scripted"

    def __init__(self, *outputs: str | ProviderError, finish_reason: str = "stop") -> None:
        self.outputs = list(outputs)
        self.requests: list[AIRequest] = []
        self.finish_reason = finish_reason

    async def generate(self, request: AIRequest) -> AIResponse:
        self.requests.append(request)
        out = self.outputs.pop(0)
        if isinstance(out, ProviderError):
            raise out
        return AIResponse(
            text=out,
            input_tokens=100,
            output_tokens=40,
            provider="scripted",
            model="m1",
            finish_reason=self.finish_reason,
            latency_ms=1,
        )

    async def aclose(self) -> None:
        return None


async def run(provider: ScriptedProvider) -> tuple[Any, list[tuple[int, ErrorCode]]]:
    bad: list[tuple[int, ErrorCode]] = []

    async def on_bad(generation: int, code: ErrorCode) -> None:
        bad.append((generation, code))

    kind = output_kind(ProcessingType.SUBGOAL_GENERATION)
    unit = await generate_validated(provider, PROMPT, kind, CALL, SAMPLING, on_bad)
    return unit, bad
