"""The one way this service reaches Temporal: the API, the worker, `cli.temporal_setup` and the benchmarks.

The connection options (address, namespace, TLS or mTLS, API key) are loaded by `temporalio.envconfig`,
the SDK's loader that the `temporal` CLI shares: an optional TOML profile (TEMPORAL_CONFIG_FILE,
TEMPORAL_PROFILE; by default `~/.config/temporalio/temporal.toml` if it exists), overridden by each
TEMPORAL_* setting that is set. Settings are passed to the loader as its environment, so a process and
a test that builds `Settings(...)` in code connect the same way, and the CLI run with `temporal_env()`
reaches the same server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from temporalio.client import Client, Interceptor
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfigProfile, ClientConnectConfig
from temporalio.runtime import Runtime
from temporalio.service import RetryConfig

from settings import DEFAULT_TEMPORAL_ADDRESS, DEFAULT_TEMPORAL_NAMESPACE, Settings

CONNECT_TIMEOUT_SECONDS = 10.0
# The Settings fields that are envconfig variables: TEMPORAL_ADDRESS, TEMPORAL_TLS_SERVER_CA_CERT_PATH, ...
CONNECTION_FIELDS = (
    "temporal_address",
    "temporal_namespace",
    "temporal_api_key",
    "temporal_tls",
    "temporal_tls_server_ca_cert_path",
    "temporal_tls_server_name",
    "temporal_tls_client_cert_path",
    "temporal_tls_client_key_path",
    "temporal_profile",
    "temporal_config_file",
)


class TemporalConnectError(RuntimeError):
    """Temporal could not be reached; the message names the address, the TLS mode and the cause."""


def temporal_env(settings: Settings) -> dict[str, str]:
    """The TEMPORAL_* variables of the connection settings that are set (for envconfig and the CLI)."""
    env: dict[str, str] = {}
    for name in CONNECTION_FIELDS:
        value = getattr(settings, name)
        if value is not None:
            env[name.upper()] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


def connect_config(settings: Settings) -> ClientConnectConfig:
    """`Client.connect` keyword arguments: the TOML profile, overridden by the settings that are set."""
    env = temporal_env(settings)
    config_file = env.get("TEMPORAL_CONFIG_FILE")
    profile = ClientConfigProfile.load(
        env.get("TEMPORAL_PROFILE"),
        config_source=Path(config_file) if config_file else None,
        override_env_vars=env,
    )
    config = profile.to_client_connect_config()
    config.setdefault("target_host", DEFAULT_TEMPORAL_ADDRESS)
    config.setdefault("namespace", DEFAULT_TEMPORAL_NAMESPACE)
    return config


async def connect_temporal(
    settings: Settings,
    *,
    runtime: Runtime | None = None,
    interceptors: Sequence[Interceptor] = (),
    within: float = CONNECT_TIMEOUT_SECONDS,
    retry_config: RetryConfig | None = None,
) -> Client:
    """A client with the pydantic data converter and tracing (plus ``interceptors``; ``retry_config``:
    the SDK's retry of UNAVAILABLE calls), or a TemporalConnectError within ``within`` seconds (a wrong
    CA fails at once, a silent peer at the end)."""
    config = connect_config(settings)
    try:
        return await asyncio.wait_for(
            Client.connect(
                **config,
                data_converter=pydantic_data_converter,
                interceptors=[TracingInterceptor(), *interceptors],
                runtime=runtime,
                retry_config=retry_config,
            ),
            within,
        )
    except (RuntimeError, TimeoutError) as exc:
        raise TemporalConnectError(_explain(config, exc, within)) from exc


def _explain(config: ClientConnectConfig, exc: Exception, within: float) -> str:
    mode = "TLS" if config.get("tls") else "plaintext"  # absent, False, True or a TLSConfig
    cause = f"no answer within {within:g} s" if isinstance(exc, TimeoutError) else str(exc)
    message = (
        f"cannot connect to Temporal at {config['target_host']} "
        f"(namespace {config['namespace']}, {mode}): {cause}"
    )
    if "InvalidCertificate" in cause or "certificate" in cause.lower():
        message += (
            " — the server's certificate is not trusted: check TEMPORAL_TLS_SERVER_CA_CERT_PATH "
            "and TEMPORAL_TLS_SERVER_NAME"
        )
    return message
