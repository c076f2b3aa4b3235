"""Build the provider selected by AI_PROVIDER."""

from __future__ import annotations

from ai.offline import OfflineProvider
from ai.provider import AIProvider
from settings import Settings


def build_provider(settings: Settings) -> AIProvider:
    if settings.ai_provider == "offline":
        return OfflineProvider(
            latency_ms=settings.ai_offline_latency_ms, faults_enabled=settings.ai_offline_faults
        )
    raise ValueError(f"AI_PROVIDER={settings.ai_provider} is not available in this build")
