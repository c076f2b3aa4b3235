"""Settings are validated at start-up and every one of them is documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from settings import DEV_JWT_SECRET, Settings


def test_defaults_match_the_spec() -> None:
    s = Settings()
    assert s.ai_provider == "offline" and s.auth_mode == "hs256"
    assert (s.ai_temperature, s.ai_max_tokens, s.ai_top_p) == (0.7, 2000, 0.9)
    assert s.temporal_task_queue == "ai-generation"
    assert s.activity_timeout_seconds("TASK_GENERATION") == 300
    # spec 6.7: a lost worker's call is retried elsewhere in <= 15 s; a cancel reaches it in about 1 s
    assert (s.heartbeat_timeout_seconds, s.heartbeat_throttle_seconds) == (10, 1.0)
    assert s.closed_sweep_seconds <= 5
    assert s.job_deadline_seconds == 600 and s.goal_scope_concurrency == 4
    assert s.estimate_seconds("ACTION_GENERATION") == 180


@pytest.mark.parametrize(
    "overrides",
    [
        {"activity_timeout_seconds_task": 901},
        {"goal_scope_concurrency": 17},
        {"app_env": "production", "ai_offline_faults": True, "jwt_secret": "x" * 40},
        {"app_env": "production"},
        {"auth_mode": "jwks"},
        {"heartbeat_timeout_seconds": 3, "heartbeat_throttle_seconds": 2},
    ],
)
def test_invalid_configuration_is_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Settings(**overrides)


def test_environment_variables_are_read_and_urls_normalised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://u:p@db:5432/x")
    monkeypatch.setenv("CORS_ALLOW_ORIGINS", "https://a.example, https://b.example")
    s = Settings()
    assert s.database_url == "postgresql+psycopg://u:p@db:5432/x"
    assert s.cors_allow_origins == ["https://a.example", "https://b.example"]
    assert s.jwt_secret == DEV_JWT_SECRET


def test_every_setting_is_documented() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", doc))
    for name in Settings.model_fields:
        upper = name.upper()
        assert (
            upper in documented
            or any(upper.startswith(d.rstrip("_")) for d in documented if d.endswith("SUBGOAL"))
            or (upper.startswith("ACTIVITY_TIMEOUT_SECONDS_") or upper.startswith("ESTIMATE_SECONDS_"))
        ), upper


def test_an_empty_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEMPORAL_API_KEY", "")
    monkeypatch.setenv("AI_OFFLINE_LATENCY_MS", "")
    s = Settings()
    assert s.temporal_api_key is None and s.ai_offline_latency_ms == 0
