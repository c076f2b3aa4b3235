"""Temporal connection options: the settings over the TOML profile, loaded by temporalio.envconfig."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from temporalio.service import TLSConfig

from settings import Settings
from temporal_client import connect_config, temporal_env

PROFILE = """
[profile.default]
address = "default.example:7233"
namespace = "from-file"

[profile.cloud]
address = "acme.a1b2c.tmprl.cloud:7233"
namespace = "acme.a1b2c"
api_key = "key-from-file"
"""


def test_without_settings_or_profile_the_local_dev_server_is_used(tmp_path: Path) -> None:
    config = connect_config(Settings(temporal_config_file=str(tmp_path / "absent.toml")))
    assert (config["target_host"], config["namespace"]) == ("127.0.0.1:7233", "default")
    assert "tls" not in config and "api_key" not in config


def test_tls_and_mtls_files_are_read_from_the_settings(tmp_path: Path) -> None:
    for name in ("ca.pem", "client.pem", "client.key"):
        (tmp_path / name).write_bytes(f"-- {name} --".encode())
    settings = Settings(
        temporal_address="temporal.internal:7233",
        temporal_namespace="prod",
        temporal_tls_server_ca_cert_path=str(tmp_path / "ca.pem"),
        temporal_tls_server_name="temporal.internal",
        temporal_tls_client_cert_path=str(tmp_path / "client.pem"),
        temporal_tls_client_key_path=str(tmp_path / "client.key"),
    )
    config = connect_config(settings)
    assert config["target_host"] == "temporal.internal:7233" and config["namespace"] == "prod"
    assert config["tls"] == TLSConfig(
        server_root_ca_cert=b"-- ca.pem --",
        domain="temporal.internal",
        client_cert=b"-- client.pem --",
        client_private_key=b"-- client.key --",
    )


def test_an_api_key_turns_tls_on_unless_tls_is_switched_off() -> None:
    cloud = connect_config(Settings(temporal_address="x.tmprl.cloud:7233", temporal_api_key="secret"))
    assert cloud["api_key"] == "secret" and cloud["tls"] is True
    plain = connect_config(Settings(temporal_api_key="secret", temporal_tls=False))
    assert plain["tls"] is False


def test_a_toml_profile_supplies_what_the_settings_leave_unset(tmp_path: Path) -> None:
    config_file = tmp_path / "temporal.toml"
    config_file.write_text(PROFILE)
    from_file = connect_config(Settings(temporal_config_file=str(config_file)))
    assert (from_file["target_host"], from_file["namespace"]) == ("default.example:7233", "from-file")

    cloud = connect_config(Settings(temporal_config_file=str(config_file), temporal_profile="cloud"))
    assert cloud["target_host"] == "acme.a1b2c.tmprl.cloud:7233" and cloud["api_key"] == "key-from-file"
    assert cloud["tls"] is True

    overridden = connect_config(Settings(temporal_config_file=str(config_file), temporal_namespace="staging"))
    assert (overridden["target_host"], overridden["namespace"]) == ("default.example:7233", "staging")


def test_settings_come_from_the_cli_s_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", "temporal:7233")
    monkeypatch.setenv("TEMPORAL_TLS", "true")
    monkeypatch.setenv("TEMPORAL_TLS_SERVER_NAME", "temporal.internal")
    env = temporal_env(Settings())
    assert env == {
        "TEMPORAL_ADDRESS": "temporal:7233",
        "TEMPORAL_TLS": "true",
        "TEMPORAL_TLS_SERVER_NAME": "temporal.internal",
    }


def test_a_client_certificate_needs_its_key() -> None:
    with pytest.raises(ValidationError, match="TEMPORAL_TLS_CLIENT_KEY_PATH"):
        Settings(temporal_tls_client_cert_path="/certs/client.pem")
