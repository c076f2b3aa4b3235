"""Every configuration setting, read from environment variables and validated at start-up.

docs/operations.md lists each one; keep the two in step.
"""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEV_JWT_SECRET = "mandala-dev-secret-change-me-0123456789abcdef"
DEFAULT_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:55432/mandala"
# Used when neither a TEMPORAL_* setting nor the TOML profile gives one (temporal_client.py).
DEFAULT_TEMPORAL_ADDRESS = "127.0.0.1:7233"
DEFAULT_TEMPORAL_NAMESPACE = "default"
# The Prometheus port of each process when METRICS_PORT is not set.
DEFAULT_METRICS_PORTS = {"api": 9464, "worker": 9465}


class AppEnv(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class Settings(BaseSettings):
    # An empty variable counts as unset, so docker-compose.yml can pass every setting as `${NAME:-}`.
    model_config = SettingsConfigDict(
        env_file=None, extra="ignore", case_sensitive=False, env_ignore_empty=True
    )

    app_env: AppEnv = AppEnv.DEVELOPMENT
    log_level: Literal["DEBUG", "INFO", "WARN", "WARNING", "ERROR"] = "INFO"
    log_ai_payloads: bool = False

    # Connections. The TEMPORAL_* connection settings carry the names the `temporal` CLI and
    # temporalio.envconfig use; unset ones come from the TOML profile, if any (temporal_client.py).
    database_url: str = DEFAULT_DATABASE_URL
    db_pool_size: int = Field(default=10, ge=1, le=200)
    temporal_address: str | None = None
    temporal_namespace: str | None = None
    temporal_api_key: str | None = None
    temporal_tls: bool | None = None
    temporal_tls_server_ca_cert_path: str | None = None
    temporal_tls_server_name: str | None = None
    temporal_tls_client_cert_path: str | None = None
    temporal_tls_client_key_path: str | None = None
    temporal_profile: str | None = None
    temporal_config_file: str | None = None
    temporal_task_queue: str = "ai-generation"
    # The API's Temporal client (spec 5.3, issue 7.3): a start never waits long on a dead Temporal.
    temporal_connect_timeout_seconds: float = Field(default=1.0, gt=0, le=60)
    temporal_rpc_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    temporal_unavailable_retry_seconds: float = Field(default=0.5, ge=0, le=30)

    # Worker
    worker_shutdown_grace_seconds: int = Field(default=60, ge=0, le=3600)

    # Auth
    auth_mode: Literal["hs256", "jwks"] = "hs256"
    jwt_secret: str = DEV_JWT_SECRET
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_jwks_url: str | None = None
    jwt_leeway_seconds: int = Field(default=30, ge=0, le=600)
    jwt_max_lifetime_seconds: int = Field(default=86_400, ge=60, le=31 * 86_400)

    # API
    cors_allow_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    rate_limit_write_per_minute: int = Field(default=20, ge=1)
    rate_limit_read_per_minute: int = Field(default=120, ge=1)
    sse_poll_interval_ms: int = Field(default=1000, ge=50, le=60_000)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)

    # AI provider
    ai_provider: Literal["offline", "openai", "bedrock"] = "offline"
    ai_temperature: float = Field(default=0.7, ge=0, le=2)
    ai_max_tokens: int = Field(default=2000, ge=1, le=32_000)
    ai_top_p: float = Field(default=0.9, gt=0, le=1)
    ai_offline_latency_ms: int = Field(default=0, ge=0, le=900_000)
    ai_offline_faults: bool = False
    ai_cost_per_1k_tokens_usd: float | None = Field(default=None, ge=0)
    openai_base_url: str = "https://api.openai.com/v1"
    openai_api_key: str = ""
    openai_model: str = "gpt-4o-mini"
    openai_json_mode: bool = True
    bedrock_model_id: str = "amazon.nova-micro-v1:0"
    bedrock_region: str = "ap-northeast-1"
    prompt_timezone: str = "Asia/Tokyo"

    # Jobs
    activity_timeout_seconds_subgoal: int = Field(default=300, ge=1, le=900)
    activity_timeout_seconds_action: int = Field(default=300, ge=1, le=900)
    activity_timeout_seconds_task: int = Field(default=300, ge=1, le=900)
    heartbeat_timeout_seconds: int = Field(default=10, ge=2, le=900)
    heartbeat_throttle_seconds: float = Field(default=1.0, ge=0.1, le=60)
    job_deadline_seconds: int = Field(default=600, ge=1, le=86_400)
    goal_scope_deadline_seconds: int = Field(default=600, ge=1, le=86_400)
    goal_scope_concurrency: int = Field(default=4, ge=1, le=16)
    estimate_seconds_subgoal: int = Field(default=60, ge=1)
    estimate_seconds_action: int = Field(default=180, ge=1)
    estimate_seconds_task: int = Field(default=120, ge=1)
    eta_history_jobs: int = Field(default=20, ge=0, le=1000)

    # Worker (docs/operations.md, "Sizing a worker")
    worker_max_cached_workflows: int = Field(default=1000, ge=0, le=100_000)

    # Housekeeping (spec 6.10, 6.11)
    temporal_maintenance_task_queue: str = "maintenance"
    schedules_enabled: bool = True
    reconcile_interval_seconds: int = Field(default=60, ge=5, le=3600)
    closed_sweep_seconds: float = Field(default=2.0, ge=0, le=3600)
    retention_days: int = Field(default=90, ge=1)
    retention_cron: str = "0 3 * * *"

    # Observability (spec 8.3)
    metrics_enabled: bool = True
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    metrics_host: str = "127.0.0.1"
    otel_exporter_otlp_endpoint: str | None = None

    @field_validator("cors_allow_origins", mode="before")
    @classmethod
    def _split_origins(cls, v: object) -> object:
        if isinstance(v, str):
            return [o.strip() for o in v.split(",") if o.strip()]
        return v

    @field_validator("database_url")
    @classmethod
    def _psycopg_driver(cls, v: str) -> str:
        for prefix in ("postgres://", "postgresql://"):
            if v.startswith(prefix):
                return "postgresql+psycopg://" + v[len(prefix) :]
        return v

    @model_validator(mode="after")
    def _production_guards(self) -> Settings:
        if self.app_env is AppEnv.PRODUCTION:
            if self.auth_mode == "hs256" and self.jwt_secret == DEV_JWT_SECRET:
                raise ValueError("JWT_SECRET must be set in production (the development secret is refused)")
            if self.ai_offline_faults:
                raise ValueError("AI_OFFLINE_FAULTS=true is refused when APP_ENV=production")
        if self.auth_mode == "jwks" and not self.jwt_jwks_url:
            raise ValueError("AUTH_MODE=jwks needs JWT_JWKS_URL")
        if (self.temporal_tls_client_cert_path is None) != (self.temporal_tls_client_key_path is None):
            raise ValueError(
                "TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH must be set together (mTLS)"
            )
        if self.heartbeat_throttle_seconds * 2 > self.heartbeat_timeout_seconds:
            # A beat must reach the server well inside the timeout, or a healthy call times out.
            raise ValueError("HEARTBEAT_THROTTLE_SECONDS must be at most half of HEARTBEAT_TIMEOUT_SECONDS")
        return self

    def activity_timeout_seconds(self, processing_type: str) -> int:
        return {
            "SUBGOAL_GENERATION": self.activity_timeout_seconds_subgoal,
            "ACTION_GENERATION": self.activity_timeout_seconds_action,
            "TASK_GENERATION": self.activity_timeout_seconds_task,
        }[processing_type]

    def estimate_seconds(self, processing_type: str) -> int:
        return {
            "SUBGOAL_GENERATION": self.estimate_seconds_subgoal,
            "ACTION_GENERATION": self.estimate_seconds_action,
            "TASK_GENERATION": self.estimate_seconds_task,
        }[processing_type]

    @property
    def cost_per_1k_tokens_usd(self) -> float:
        if self.ai_cost_per_1k_tokens_usd is not None:
            return self.ai_cost_per_1k_tokens_usd
        return 0.00015 if self.ai_provider == "bedrock" else 0.0


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
