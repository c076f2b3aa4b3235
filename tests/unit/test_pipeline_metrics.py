"""AIRequestDuration / AITokensUsed / AIEstimatedCostUsd per provider call, and the activity span's tags."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider

from ai.pipeline import generate_validated, output_kind
from ai.provider import AIRequest, AIResponse, ProviderError, ProviderErrorKind
from domain.enums import ProcessingType
from domain.errors import AppError, ErrorCode
from tests.support.metrics_probe import MetricsProbe, installed, labels
from tests.support.scripted_provider import CALL, PROMPT, SAMPLING, ScriptedProvider, run, subgoals

AI = {"Provider": "scripted", "ProcessingType": "SUBGOAL_GENERATION"}


@pytest.fixture
def probe() -> Iterator[MetricsProbe]:
    with installed() as p:
        yield p


def outcomes(probe: MetricsProbe) -> dict[str, int]:
    return {dict(k)["Outcome"]: p.count for k, p in probe.histograms("AIRequestDuration").items()}


async def test_each_call_is_timed_with_its_outcome_and_billed_with_its_tokens(probe: MetricsProbe) -> None:
    provider = ScriptedProvider(subgoals(7), "not json", subgoals())
    unit, _ = await run(provider)
    assert outcomes(probe) == {"QUALITY_ERROR": 1, "INVALID_RESPONSE": 1, "SUCCESS": 1}
    assert set(probe.histograms("AIRequestDuration")) == {
        labels(**AI, Outcome=o) for o in ("QUALITY_ERROR", "INVALID_RESPONSE", "SUCCESS")
    }
    assert probe.series("AITokensUsed") == {
        labels(**AI, Direction="input"): 300,
        labels(**AI, Direction="output"): 120,
    }
    assert probe.value("AIEstimatedCostUsd") == pytest.approx(420 / 1000 * 0.5)
    assert probe.value("AIEstimatedCostUsd") == pytest.approx(unit.metadata.estimated_cost_usd)


@pytest.mark.parametrize("kind", [ProviderErrorKind.TRANSIENT, ProviderErrorKind.REJECTED])
async def test_failed_calls_are_timed_without_tokens(probe: MetricsProbe, kind: ProviderErrorKind) -> None:
    with pytest.raises(ProviderError):
        await run(ScriptedProvider(ProviderError(kind, "status 503")))
    assert outcomes(probe) == {kind.value: 1}
    assert probe.series("AITokensUsed") == {} and probe.series("AIEstimatedCostUsd") == {}


async def test_provider_invalid_responses_count_once_per_call(probe: MetricsProbe) -> None:
    invalid = [ProviderError(ProviderErrorKind.INVALID_RESPONSE, "no text block") for _ in range(3)]
    with pytest.raises(AppError) as failure:
        await run(ScriptedProvider(*invalid))
    assert failure.value.code is ErrorCode.AI_RESPONSE_INVALID
    assert outcomes(probe) == {"INVALID_RESPONSE": 3}


class HangingProvider:
    name = "scripted"

    def __init__(self) -> None:
        self.called = asyncio.Event()

    async def generate(self, request: AIRequest) -> AIResponse:
        self.called.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        return None


async def test_a_call_cancelled_with_the_activity_is_still_timed(probe: MetricsProbe) -> None:
    provider = HangingProvider()

    async def on_bad(generation: int, code: ErrorCode) -> None:
        return None

    kind = output_kind(ProcessingType.SUBGOAL_GENERATION)
    task = asyncio.ensure_future(generate_validated(provider, PROMPT, kind, CALL, SAMPLING, on_bad))
    await provider.called.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert outcomes(probe) == {"CANCELLED": 1}


async def test_the_current_span_gets_process_unit_and_attempt() -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("RunActivity:generate_unit") as span:
        await run(ScriptedProvider(subgoals()))
    assert isinstance(span, ReadableSpan) and span.attributes is not None
    assert dict(span.attributes) == {
        "processId": str(CALL.process_id),
        "unitId": str(CALL.unit_id),
        "attempt": CALL.attempt,
    }
