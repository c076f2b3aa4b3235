"""Build the provider selected by AI_PROVIDER."""

from __future__ import annotations

from ai.offline import OfflineProvider
from ai.openai_provider import OpenAIProvider
from ai.provider import AIProvider
from settings import Settings

ACTIVITY_TIMEOUT_MARGIN_SECONDS = 5.0
MIN_PROVIDER_TIMEOUT_SECONDS = 1.0
_BOTO_PACKAGES = frozenset({"boto3", "botocore"})


def provider_timeout_seconds(settings: Settings) -> float:
    """The client timeout: the largest per-type activity timeout minus 5 s, at least 1 s."""
    longest = max(
        settings.activity_timeout_seconds_subgoal,
        settings.activity_timeout_seconds_action,
        settings.activity_timeout_seconds_task,
    )
    return max(longest - ACTIVITY_TIMEOUT_MARGIN_SECONDS, MIN_PROVIDER_TIMEOUT_SECONDS)


def build_provider(settings: Settings) -> AIProvider:
    if settings.ai_provider == "offline":
        return OfflineProvider(
            latency_ms=settings.ai_offline_latency_ms, faults_enabled=settings.ai_offline_faults
        )
    if settings.ai_provider == "openai":
        return OpenAIProvider(
            base_url=settings.openai_base_url,
            api_key=settings.openai_api_key,
            model=settings.openai_model,
            json_mode=settings.openai_json_mode,
            timeout_seconds=provider_timeout_seconds(settings),
        )
    try:
        from ai.bedrock_provider import BedrockProvider
    except ModuleNotFoundError as exc:
        if exc.name not in _BOTO_PACKAGES:
            raise
        raise RuntimeError(
            "AI_PROVIDER=bedrock needs boto3, which is not installed: "
            "install the 'bedrock' extra (pip install 'goal-mandala[bedrock]')"
        ) from exc
    return BedrockProvider(
        model_id=settings.bedrock_model_id,
        region=settings.bedrock_region,
        timeout_seconds=provider_timeout_seconds(settings),
    )
