import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import jwt
import pytest

from api.dev_tokens import issue_dev_token
from cli.main import main
from settings import DEV_JWT_SECRET, get_settings

REPO_ROOT = Path(__file__).resolve().parents[2]
SECRET = "unit-test-secret-0123456789abcdef0123456789"


def test_token_decodes_with_the_secret_and_carries_sub_and_exp() -> None:
    before = int(time.time())
    token = issue_dev_token("user-1", SECRET, expires_in=120)

    claims = jwt.decode(token, SECRET, algorithms=["HS256"])

    assert claims["sub"] == "user-1"
    assert before <= claims["iat"] <= before + 2
    assert claims["exp"] == claims["iat"] + 120
    assert "iss" not in claims
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def test_token_has_issuer_only_when_given_and_extra_cannot_override_standard_claims() -> None:
    token = issue_dev_token(
        "user-1", SECRET, issuer="https://issuer.example", extra={"aud": "app", "sub": "x"}
    )

    claims = jwt.decode(token, SECRET, algorithms=["HS256"], audience="app")

    assert claims["iss"] == "https://issuer.example"
    assert claims["sub"] == "user-1"


def test_token_with_another_secret_is_rejected() -> None:
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(
            issue_dev_token("user-1", SECRET), "another-secret-0123456789abcdef-0123", algorithms=["HS256"]
        )


@pytest.mark.parametrize(("sub", "expires_in"), [("", 60), ("user-1", 0), ("user-1", -1)])
def test_bad_arguments_are_refused(sub: str, expires_in: int) -> None:
    with pytest.raises(ValueError):
        issue_dev_token(sub, SECRET, expires_in=expires_in)


def _mandala(*args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(("JWT_", "AUTH_", "APP_ENV"))}
    env.update(settings, PYTHONPATH=str(REPO_ROOT))
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_prints_only_the_token() -> None:
    result = _mandala("token", "--sub", "demo-user", "--expires-in", "600")

    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("\n")
    assert result.stdout.count("\n") == 1
    claims = jwt.decode(result.stdout.strip(), DEV_JWT_SECRET, algorithms=["HS256"])
    assert claims["sub"] == "demo-user"
    assert claims["exp"] - claims["iat"] == 600


def test_cli_uses_the_configured_secret_issuer_and_audience() -> None:
    result = _mandala(
        "token", "--sub", "demo-user", JWT_SECRET=SECRET, JWT_ISSUER="https://dev.example", JWT_AUDIENCE="app"
    )

    assert result.returncode == 0, result.stderr
    claims = jwt.decode(result.stdout.strip(), SECRET, algorithms=["HS256"], audience="app")
    assert claims["iss"] == "https://dev.example"


@pytest.mark.parametrize(
    "args",
    [
        ["--sub", "demo-user", "--expires-in", "0"],
        ["--sub", "demo-user", "--expires-in", "soon"],
        ["--sub", "   "],
        [],
    ],
)
def test_cli_refuses_bad_input(args: list[str]) -> None:
    result = _mandala("token", *args)

    assert result.returncode != 0
    assert result.stdout == ""
    assert "error" in result.stderr


@pytest.fixture
def configure(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Set environment variables for in-process `main()` calls, with fresh settings."""
    for name in ("APP_ENV", "AUTH_MODE", "JWT_SECRET", "JWT_ISSUER", "JWT_AUDIENCE", "JWT_JWKS_URL"):
        monkeypatch.delenv(name, raising=False)

    def apply(**variables: str) -> None:
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()

    apply()
    yield apply
    get_settings.cache_clear()


def test_main_token_prints_a_token_signed_with_the_configured_secret(
    configure: Callable[..., None], capsys: pytest.CaptureFixture[str]
) -> None:
    configure(JWT_SECRET=SECRET, AUTH_MODE="hs256")

    assert main(["token", "--sub", "in-process", "--expires-in", "90"]) == 0

    out, err = capsys.readouterr()
    claims = jwt.decode(out.strip(), SECRET, algorithms=["HS256"])
    assert (claims["sub"], claims["exp"] - claims["iat"], err) == ("in-process", 90, "")


def test_main_token_refuses_jwks_mode(
    configure: Callable[..., None], capsys: pytest.CaptureFixture[str]
) -> None:
    configure(AUTH_MODE="jwks", JWT_JWKS_URL="https://issuer.example/jwks.json")

    assert main(["token", "--sub", "demo-user"]) == 1

    out, err = capsys.readouterr()
    assert out == ""
    assert "AUTH_MODE=hs256" in err


def test_main_token_reports_invalid_configuration(
    configure: Callable[..., None], capsys: pytest.CaptureFixture[str]
) -> None:
    configure(DB_POOL_SIZE="0")

    assert main(["token", "--sub", "demo-user"]) == 1

    assert "invalid configuration" in capsys.readouterr().err


def test_main_dev_refuses_duplicate_ports(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["dev", "--api-port", "9000", "--ui-port", "9000"])

    assert exit_info.value.code == 2
    assert "must all differ" in capsys.readouterr().err
