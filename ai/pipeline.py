"""Steps 5–9 of the unit pipeline (spec 3.1): call, parse, check quality, regenerate (≤ 3 outputs)."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Generic, TypeVar

from ai.parser import ResponseInvalid, parse_actions, parse_subgoals, parse_tasks
from ai.prompts import Prompt, with_invalid_response_feedback, with_regeneration_feedback
from ai.provider import AIProvider, AIRequest, AIResponse, CallContext, ProviderError, ProviderErrorKind
from domain.enums import ActionType, ProcessingType
from domain.errors import AppError, ErrorCode
from domain.generation import GeneratedUnit, GenerationMetadata
from domain.quality import QualityResult, Violation, validate_actions, validate_subgoals, validate_tasks
from observability import metrics
from observability.tracing import tag_activity_span

log = logging.getLogger("ai.pipeline")
MAX_OUTPUTS = 3
R = TypeVar("R")
ItemT = TypeVar("ItemT")

OnBadOutput = Callable[[int, ErrorCode], Awaitable[None]]


class Outcome(StrEnum):
    """The ``Outcome`` label of AIRequestDuration: how one provider call ended."""

    SUCCESS = "SUCCESS"
    INVALID_RESPONSE = "INVALID_RESPONSE"  # provider-detected, empty, truncated or unparsable
    QUALITY_ERROR = "QUALITY_ERROR"  # parsed but failed the quality rules
    TRANSIENT = "TRANSIENT"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"  # the activity was cancelled during the call
    ERROR = "ERROR"  # anything else (a bug): the activity boundary reports it


@dataclass(frozen=True, slots=True)
class SamplingConfig:
    temperature: float
    max_tokens: int
    top_p: float
    cost_per_1k_tokens_usd: float
    log_payloads: bool = False


@dataclass(frozen=True, slots=True)
class OutputKind(Generic[R, ItemT]):
    field: str
    parse: Callable[[str], list[R]]
    validate: Callable[[Sequence[R]], QualityResult[ItemT]]


def output_kind(job_type: ProcessingType, action_type: ActionType | None = None) -> OutputKind[Any, Any]:
    if job_type is ProcessingType.SUBGOAL_GENERATION:
        return OutputKind("subgoals", parse_subgoals, validate_subgoals)
    if job_type is ProcessingType.ACTION_GENERATION:
        return OutputKind("actions", parse_actions, validate_actions)
    parent = action_type or ActionType.EXECUTION
    return OutputKind("tasks", parse_tasks, lambda items: validate_tasks(items, parent))


def _ms_since(started: float) -> int:
    return math.floor((time.monotonic() - started) * 1000)


def _cost(tokens: int, per_1k_usd: float) -> float:
    return round(tokens / 1000 * per_1k_usd, 8)


def _failure_outcome(exc: BaseException) -> Outcome:
    if isinstance(exc, ProviderError):
        return Outcome(exc.kind.value)
    return Outcome.CANCELLED if isinstance(exc, asyncio.CancelledError) else Outcome.ERROR


def _record_call(
    provider: str,
    job_type: ProcessingType,
    outcome: Outcome,
    duration_ms: int,
    response: AIResponse | None = None,
    cost_per_1k_usd: float = 0.0,
) -> None:
    """The AI metrics of one provider call (tokens and cost only when the provider answered)."""
    tokens_in = response.input_tokens if response else 0
    tokens_out = response.output_tokens if response else 0
    metrics.ai_call(
        provider,
        job_type.value,
        outcome.value,
        duration_ms,
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        cost_usd=_cost(tokens_in + tokens_out, cost_per_1k_usd),
    )


def _log_violations(event: str, level: int, call: CallContext, violations: Sequence[Violation]) -> None:
    for v in violations:
        log.log(
            level,
            event.replace("_", " "),
            extra={
                "event": event,
                "processId": str(call.process_id),
                "unitId": str(call.unit_id),
                "rule": v.rule.value,
                "item": v.item,
            },
        )


async def generate_validated(
    provider: AIProvider,
    prompt: Prompt,
    kind: OutputKind[Any, Any],
    call: CallContext,
    sampling: SamplingConfig,
    on_bad_output: OnBadOutput,
) -> GeneratedUnit:
    """Produce one valid output or raise AppError with the code of the last failure."""
    tag_activity_span(call.process_id, call.attempt, call.unit_id)
    tokens_in = tokens_out = 0
    started = time.monotonic()
    current = prompt
    failure = AppError(ErrorCode.AI_RESPONSE_INVALID)
    for generation in range(1, MAX_OUTPUTS + 1):
        request = AIRequest(
            system=current.system,
            user=current.user,
            temperature=sampling.temperature,
            max_tokens=sampling.max_tokens,
            top_p=sampling.top_p,
            context=replace(call, generation=generation),
        )
        if sampling.log_payloads:
            log.debug(
                "ai prompt", extra={"event": "ai_prompt", "system": current.system, "user": current.user}
            )
        call_started = time.monotonic()
        try:
            response = await provider.generate(request)
        except BaseException as exc:
            _record_call(provider.name, call.type, _failure_outcome(exc), _ms_since(call_started))
            if not (isinstance(exc, ProviderError) and exc.kind is ProviderErrorKind.INVALID_RESPONSE):
                raise
            failure = AppError(ErrorCode.AI_RESPONSE_INVALID, internal=str(exc))
            violations: Sequence[Violation] = ()
        else:
            call_ms = _ms_since(call_started)
            tokens_in += response.input_tokens
            tokens_out += response.output_tokens
            log.info(
                "ai generation completed",
                extra={
                    "event": "ai_generation_completed",
                    "processId": str(call.process_id),
                    "unitId": str(call.unit_id),
                    "provider": response.provider,
                    "model": response.model,
                    "inputTokens": response.input_tokens,
                    "outputTokens": response.output_tokens,
                    "latencyMs": response.latency_ms,
                    "generation": generation,
                },
            )
            if sampling.log_payloads:
                log.debug("ai output", extra={"event": "ai_output", "text": response.text})
            try:
                if response.finish_reason == "length" or not response.text.strip():
                    raise ResponseInvalid("empty or truncated output")
                result = kind.validate(kind.parse(response.text))
            except ResponseInvalid as err:
                outcome = Outcome.INVALID_RESPONSE
                failure = AppError(ErrorCode.AI_RESPONSE_INVALID, internal=str(err))
                violations = ()
            else:
                _log_violations("quality_validation_warning", logging.WARNING, call, result.warnings)
                outcome = Outcome.SUCCESS if result.ok else Outcome.QUALITY_ERROR
            _record_call(
                provider.name, call.type, outcome, call_ms, response, sampling.cost_per_1k_tokens_usd
            )
            if outcome is Outcome.SUCCESS:
                total = tokens_in + tokens_out
                metadata = GenerationMetadata(
                    provider=response.provider,
                    model=response.model,
                    input_tokens=tokens_in,
                    output_tokens=tokens_out,
                    generation_attempts=generation,
                    duration_ms=_ms_since(started),
                    estimated_cost_usd=_cost(total, sampling.cost_per_1k_tokens_usd),
                )
                return GeneratedUnit.model_validate({kind.field: list(result.items), "metadata": metadata})
            if outcome is Outcome.QUALITY_ERROR:
                _log_violations("quality_validation_failed", logging.WARNING, call, result.errors)
                failure = AppError(ErrorCode.QUALITY_ERROR, result.error_details())
                violations = result.errors
        if generation < MAX_OUTPUTS:
            await on_bad_output(generation, failure.code)
            current = (
                with_regeneration_feedback(prompt, violations)
                if violations
                else with_invalid_response_feedback(prompt)
            )
    raise failure
