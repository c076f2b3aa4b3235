"""docker-compose.yml, the Dockerfile, .env.example and docs/deploy.md stay in step with the code.

No Docker engine runs here, so the compose file is validated by `docker-compose config` (the Debian
`docker-compose` package; .ci/run installs it) and read: every command must be a real entry point,
every port what the process listens on, every variable a real `Settings` field.
"""

from __future__ import annotations

import ast
import configparser
import importlib.util
import os
import re
import shlex
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from sqlalchemy.engine import make_url

from observability.masking import is_secret_key
from observability.metrics import DEFAULT_PORTS
from settings import Settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
APP_SERVICES = ("temporal-setup", "migrate", "api", "worker")
SETTINGS = frozenset(name.upper() for name in Settings.model_fields)
# Read by botocore (the Bedrock provider), not by Settings.
THIRD_PARTY = frozenset({"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"})
# Used by docker-compose.yml itself (docs/deploy.md lists them).
COMPOSE_VARIABLES = frozenset(
    {
        "POSTGRES_PASSWORD",
        "POSTGRES_VERSION",
        "TEMPORAL_VERSION",
        "TEMPORAL_UI_VERSION",
        "API_PORTS",
        "APP_IMAGE_TAG",
        "WORKER_STOP_GRACE_PERIOD",
    }
)
# Set by the compose file for every app service, not taken from .env.
PINNED = {"DATABASE_URL", "SCHEDULES_ENABLED"}
SUBSTITUTION = re.compile(r"\$\{([A-Z0-9_]+)(?::?-[^}]*)?\}")


def raw_compose() -> dict[str, Any]:
    """The file as written (anchors and merge keys resolved by YAML, `${...}` left as they are)."""
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return loaded


@cache
def compose_config(env_file: Path | None) -> dict[str, Any]:
    """`docker-compose config`: the file as Compose understands it, interpolated with ``env_file`` only."""
    if env_file is None:  # not the developer's own .env: an empty one
        handle, name = tempfile.mkstemp(suffix=".env")
        os.close(handle)
        env_file = Path(name)
    args = ["docker-compose", "--env-file", str(env_file), "-f", str(COMPOSE), "config"]
    clean_env = {key: os.environ[key] for key in ("PATH", "HOME") if key in os.environ}
    result = subprocess.run(args, cwd=REPO, env=clean_env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


ENV_FILES = [None, ENV_EXAMPLE]


@pytest.mark.parametrize("env_file", ENV_FILES, ids=["no .env", ".env.example"])
def test_docker_compose_config_accepts_the_file(env_file: Path | None) -> None:
    services = compose_config(env_file)["services"]
    assert set(services) == {"postgres", "temporal", "temporal-ui", *APP_SERVICES}
    assert all("container_name" not in service for service in services.values())  # replicas need none


def test_every_setting_reaches_every_app_service_under_its_own_name() -> None:
    services = raw_compose()["services"]
    for name in APP_SERVICES:
        environment = services[name]["environment"]
        assert set(environment) == SETTINGS | THIRD_PARTY, name
        for key, value in environment.items():
            if key not in PINNED:
                assert SUBSTITUTION.fullmatch(str(value)), f"{key}: {value}"
                assert SUBSTITUTION.fullmatch(str(value)).group(1) == key  # type: ignore[union-attr]
    used = set(SUBSTITUTION.findall(COMPOSE.read_text(encoding="utf-8")))
    assert used <= SETTINGS | THIRD_PARTY | COMPOSE_VARIABLES, used - SETTINGS - THIRD_PARTY


@pytest.mark.parametrize("env_file", ENV_FILES, ids=["no .env", ".env.example"])
def test_each_app_service_environment_is_valid_settings_pointing_at_the_compose_services(
    env_file: Path | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = compose_config(env_file)
    for name in APP_SERVICES:
        for key in SETTINGS:
            monkeypatch.delenv(key, raising=False)
        for key, value in config["services"][name]["environment"].items():
            monkeypatch.setenv(key, "" if value is None else str(value))
        settings = Settings()
        assert settings.ai_provider == "offline" and settings.ai_offline_latency_ms == 2000
        assert settings.schedules_enabled is False  # temporal-setup owns the Schedules
        database = make_url(settings.database_url)
        postgres = config["services"]["postgres"]["environment"]
        assert (database.host, database.port, database.database) == (
            "postgres",
            5432,
            postgres["POSTGRES_DB"],
        )
        assert database.username == postgres["POSTGRES_USER"]
        assert database.password == postgres["POSTGRES_PASSWORD"]
        assert settings.temporal_address == "temporal:7233"
        [temporal_port] = config["services"]["temporal"]["ports"]
        assert (temporal_port["published"], temporal_port["target"]) == (7233, 7233)


def test_service_commands_and_health_checks_are_real_entry_points() -> None:
    services = compose_config(None)["services"]
    for name in APP_SERVICES:
        check_entry_point(services[name]["command"])
    for name in ("api",):
        check_entry_point(services[name]["healthcheck"]["test"][1:])


def test_ports_are_those_the_processes_listen_on() -> None:
    services = compose_config(None)["services"]
    api = services["api"]
    listen = check_entry_point(api["command"])
    [published] = api["ports"]
    assert published["target"] == listen
    assert "-" in str(published["published"])  # a range: `--scale api=N` gives each replica a port
    assert urlsplit(api["healthcheck"]["test"][-1]).port == listen
    assert api["expose"] == [str(DEFAULT_PORTS["api"])]
    worker = services["worker"]
    assert "ports" not in worker and worker["expose"] == [str(DEFAULT_PORTS["worker"])]
    ui = services["temporal-ui"]
    assert ui["ports"][0]["published"] == 8233 and ui["ports"][0]["target"] == int(
        ui["environment"]["TEMPORAL_UI_PORT"]
    )


def test_services_start_in_order_without_retries_by_hand() -> None:
    services = compose_config(None)["services"]

    def needs(name: str) -> dict[str, str]:
        return {dep: spec["condition"] for dep, spec in services[name]["depends_on"].items()}

    ready = {"migrate": "service_completed_successfully", "temporal-setup": "service_completed_successfully"}
    assert needs("api") == ready and needs("worker") == ready
    assert needs("migrate") == {"postgres": "service_healthy"}
    assert needs("temporal") == {"postgres": "service_healthy"}
    assert needs("temporal-setup") == {"temporal": "service_healthy"}
    assert needs("temporal-ui") == {"temporal": "service_healthy"}
    for name in ("postgres", "temporal", "api"):
        assert services[name]["healthcheck"]["test"], name


def test_the_worker_is_given_longer_than_its_shutdown_grace() -> None:
    stop_grace = compose_config(None)["services"]["worker"]["stop_grace_period"]
    seconds = int(re.fullmatch(r"(\d+)s", stop_grace).group(1))  # type: ignore[union-attr]
    assert seconds > Settings().worker_shutdown_grace_seconds


def test_the_dockerfile_is_multi_stage_slim_non_root_and_copies_what_exists() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", (REPO / "Dockerfile").read_text(), re.MULTILINE))
    for stage in stages:
        base = stage[0].split()[1].replace("${PYTHON_IMAGE}", args["PYTHON_IMAGE"])
        assert base.startswith("python:3.11-slim"), base
    runtime = stages[-1]
    assert any(re.fullmatch(r"USER (\d+)", line) and line != "USER 0" for line in runtime)
    assert not any(re.search(r"apt-get|pip install|gcc|build-essential", line) for line in runtime)
    assert any("pip uninstall --yes pip setuptools" in line for line in stages[0])
    ignored = (REPO / ".dockerignore").read_text().split()
    assert ".env" in ignored and ".git" in ignored
    for line in runtime:
        if line.startswith("COPY") and "--from=" not in line:
            for source in line.split()[1:-1]:
                assert (REPO / source).is_file() and source not in ignored, source


def test_the_image_installs_every_module_package_and_data_file() -> None:
    """The Dockerfile installs the project (not editable): what pyproject.toml leaves out is missing."""
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    assert {path.stem for path in REPO.glob("*.py")} == set(setuptools["py-modules"])
    packages = {path.parent.name for path in REPO.glob("*/__init__.py")} - {"tests", "bench"}
    assert packages == {pattern.rstrip("*") for pattern in setuptools["packages"]["find"]["include"]}
    assert set(setuptools["package-data"]) <= packages
    for package in packages:
        root = REPO / package
        data = [
            path.relative_to(root)
            for path in root.rglob("*")
            if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts
        ]
        patterns = setuptools["package-data"].get(package, [])
        unpackaged = [str(f) for f in data if not any(f.match(pattern) for pattern in patterns)]
        assert unpackaged == [], f"{package}: {unpackaged}"


def test_the_env_example_holds_settings_and_no_secrets() -> None:
    for key, value in env_lines(ENV_EXAMPLE):
        assert key in SETTINGS | THIRD_PARTY | COMPOSE_VARIABLES, key
        if is_secret_key(key) or key == "AWS_ACCESS_KEY_ID":
            assert value == "", f"{key} must stay empty in the example"


def test_documented_docker_commands_use_real_services_and_entry_points() -> None:
    config = compose_config(None)
    commands = list(documented_commands())
    assert any(argv[:3] == ["docker", "compose", "up"] and "--scale" in argv for argv in commands)
    for argv in commands:
        if argv[0] == "cp":
            assert (REPO / argv[1]).is_file()
            continue
        assert argv[:2] == ["docker", "compose"], argv
        check_compose_command(argv[2:], config["services"])


# ------------------------------------------------------------------------------------------ helpers


def check_entry_point(argv: list[str]) -> int | None:
    """Fail unless ``argv`` runs one of our entry points in the image; the port it listens on, if any."""
    program, *args = argv
    if program == "python" and args[0] == "-m":
        assert has_main_block(module_path(args[1])), args[1]
    elif program == "python":
        assert args[0] in dockerfile_runtime_copies() and has_main_block(REPO / args[0]), args[0]
    elif program == "uvicorn":
        module, attribute = args[0].split(":")
        assert attribute in top_level_names(module_path(module)), args[0]
        return int(args[args.index("--port") + 1])
    elif program == "alembic":
        assert args == ["upgrade", "head"] and "alembic.ini" in dockerfile_runtime_copies()
        ini = configparser.ConfigParser()
        ini.read(REPO / "alembic.ini")
        package, folder = ini["alembic"]["script_location"].split(":")
        assert (module_path(package).parent / folder / "env.py").is_file()
    elif program == "mandala":
        result = subprocess.run(
            [str(Path(sys.executable).parent / "mandala"), *args], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
    else:
        raise AssertionError(f"not an entry point of ours: {argv}")
    return None


def check_compose_command(argv: list[str], services: dict[str, Any]) -> None:
    subcommand, *rest = argv
    if subcommand == "exec":  # docker compose exec [flags] SERVICE COMMAND...
        service_at = next(i for i, token in enumerate(rest) if not token.startswith("-"))
        assert rest[service_at] in services
        check_entry_point(rest[service_at + 1 :])
        return
    positional: list[str] = []
    tokens = iter(rest)
    for token in tokens:
        if token == "--scale":
            service, count = next(tokens).split("=")
            assert service in services and int(count) > 1
            assert all("-" in str(p["published"]) for p in services[service].get("ports", [])), service
        elif token == "--index":
            next(tokens)
        elif not token.startswith("-"):
            positional.append(token)
    if subcommand == "port":
        service, port = positional
        assert int(port) in [p["target"] for p in services[service]["ports"]]
    else:
        assert subcommand in {"up", "ps", "logs", "down"}, subcommand
        assert set(positional) <= set(services), positional


def documented_commands() -> Iterator[list[str]]:
    for doc in (REPO / "docs" / "deploy.md", REPO / "README.md"):
        for block in re.findall(r"```sh\n(.*?)```", doc.read_text(encoding="utf-8"), re.DOTALL):
            for line in block.replace("\\\n", " ").splitlines():
                # Every command of deploy.md; the README's other commands are checked elsewhere.
                if doc.name == "deploy.md" or line.startswith("docker compose"):
                    if argv := shlex.split(line, comments=True):
                        yield argv


def dockerfile_stages() -> list[list[str]]:
    text = (REPO / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = " ".join(line.split())
        if line.startswith("FROM "):
            stages.append([line])
        elif stages and line and not line.startswith("#"):
            stages[-1].append(line)
    return stages


def dockerfile_runtime_copies() -> set[str]:
    return {
        source
        for line in dockerfile_stages()[-1]
        if line.startswith("COPY") and "--from=" not in line
        for source in line.split()[1:-1]
    }


def module_path(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.origin is not None, name
    return Path(spec.origin)


def has_main_block(path: Path) -> bool:
    return 'if __name__ == "__main__":' in path.read_text(encoding="utf-8")


def top_level_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }


def env_lines(path: Path) -> Iterator[tuple[str, str]]:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            yield key, value
