"""docker-compose.yml, the Dockerfile, .env.example and docs/deploy.md stay in step with the code.

No Docker engine runs here, so the compose file is validated by `docker-compose config` (the Debian
`docker-compose` package; .ci/run installs it) and read: every command must be a real entry point,
every port what the process listens on, every variable a real `Settings` field. The checks are also
run on broken copies of the file, to show that each of them fails when it should.

Without `docker-compose` the tests that need it are skipped on a developer's machine, and fail in CI
(`CI=true`, which .ci/run sets).
"""

from __future__ import annotations

import ast
import configparser
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from sqlalchemy.engine import make_url

from cli.temporal_server import TRANSFER_TASK_LOADS_PER_SECOND
from observability.masking import is_secret_key
from settings import DEFAULT_METRICS_PORTS, Settings

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


def docker_compose() -> str:
    """The `docker-compose` program; skips the test when it is missing, except in CI."""
    found = shutil.which("docker-compose")
    if found is None:
        message = "docker-compose is not installed (Debian package `docker-compose`; .ci/run installs it)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return found


@dataclass(frozen=True)
class ComposeFile:
    """docker-compose.yml, or a broken copy of it (resolved against the repository all the same)."""

    path: Path = COMPOSE

    def text(self) -> str:
        return self.path.read_text(encoding="utf-8")

    def raw(self) -> dict[str, Any]:
        """The file as written (anchors and merge keys resolved by YAML, `${...}` left as they are)."""
        loaded: dict[str, Any] = yaml.safe_load(self.text())
        return loaded

    def config(self, env_file: Path | None = None) -> dict[str, Any]:
        """`docker-compose config`: the file as Compose understands it, interpolated with ``env_file``
        only (none: an empty one, not the developer's own .env)."""
        return _docker_compose_config(self.path, env_file)


@cache
def _docker_compose_config(path: Path, env_file: Path | None) -> dict[str, Any]:
    if env_file is None:
        handle, name = tempfile.mkstemp(suffix=".env")
        os.close(handle)
        env_file = Path(name)
    args = [docker_compose(), "--env-file", str(env_file), "-f", str(path), "--project-directory", str(REPO)]
    clean_env = {key: os.environ[key] for key in ("PATH", "HOME") if key in os.environ}
    result = subprocess.run(
        [*args, "config"], cwd=REPO, env=clean_env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


THE_FILE = ComposeFile()
ENV_FILES = [None, ENV_EXAMPLE]


@pytest.mark.parametrize("env_file", ENV_FILES, ids=["no .env", ".env.example"])
def test_docker_compose_config_accepts_the_file(env_file: Path | None) -> None:
    services = THE_FILE.config(env_file)["services"]
    assert set(services) == {"postgres", "temporal", "temporal-ui", *APP_SERVICES}
    assert all("container_name" not in service for service in services.values())  # replicas need none


def test_docker_compose_config_refuses_an_invalid_file(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(THE_FILE.text().replace("    depends_on:\n", "    depends_onn:\n", 1))
    with pytest.raises(AssertionError, match="depends_onn"):
        ComposeFile(broken).config()


def check_settings(compose: ComposeFile) -> None:
    services = compose.raw()["services"]
    for name in APP_SERVICES:
        environment = services[name]["environment"]
        missing = sorted((SETTINGS | THIRD_PARTY) - set(environment))
        unknown = sorted(set(environment) - SETTINGS - THIRD_PARTY)
        assert not missing and not unknown, f"{name}: settings not passed {missing}, not settings {unknown}"
        for key, value in environment.items():
            if key not in PINNED:
                match = SUBSTITUTION.fullmatch(str(value))
                assert match and match.group(1) == key, f"{name}: {key} is not ${{{key}:-...}}: {value}"
    unknown = sorted(set(SUBSTITUTION.findall(compose.text())) - SETTINGS - THIRD_PARTY - COMPOSE_VARIABLES)
    assert not unknown, f"variables that are neither settings nor documented: {unknown}"


def test_every_setting_reaches_every_app_service_under_its_own_name() -> None:
    check_settings(THE_FILE)


@pytest.mark.parametrize("env_file", ENV_FILES, ids=["no .env", ".env.example"])
def test_each_app_service_environment_is_valid_settings_pointing_at_the_compose_services(
    env_file: Path | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = THE_FILE.config(env_file)
    for name in APP_SERVICES:
        for key in SETTINGS:
            monkeypatch.delenv(key, raising=False)
        for key, value in config["services"][name]["environment"].items():
            monkeypatch.setenv(key, "" if value is None else str(value))
        settings = Settings()
        assert settings.ai_provider == "offline" and settings.ai_offline_latency_ms == 2000
        assert settings.schedules_enabled is False  # temporal-setup owns the Schedules
        assert settings.metrics_host == "0.0.0.0"  # scraped through the compose network
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


def check_entry_points(compose: ComposeFile) -> None:
    services = compose.config()["services"]
    for name in APP_SERVICES:
        check_entry_point(services[name]["command"])
    for name in ("api",):
        check_entry_point(services[name]["healthcheck"]["test"][1:])


def test_service_commands_and_health_checks_are_real_entry_points() -> None:
    check_entry_points(THE_FILE)


def check_ports(compose: ComposeFile) -> None:
    services = compose.config()["services"]
    api = services["api"]
    listen = check_entry_point(api["command"])
    [published] = api["ports"]
    assert published["target"] == listen, f"api listens on {listen}, publishes {published['target']}"
    assert "-" in str(published["published"])  # a range: `--scale api=N` gives each replica a port
    health = urlsplit(api["healthcheck"]["test"][-1]).port
    assert health == listen, f"api listens on {listen}, its health check asks {health}"
    metrics = {name: services[name]["expose"] for name in ("api", "worker")}
    assert metrics == {name: [str(DEFAULT_METRICS_PORTS[name])] for name in metrics}, (
        f"metrics ports {metrics}"
    )
    assert "ports" not in services["worker"]
    ui = services["temporal-ui"]
    assert ui["ports"][0]["published"] == 8233 and ui["ports"][0]["target"] == int(
        ui["environment"]["TEMPORAL_UI_PORT"]
    )


def test_ports_are_those_the_processes_listen_on() -> None:
    check_ports(THE_FILE)


def check_start_order(compose: ComposeFile) -> None:
    services = compose.config()["services"]

    done = "service_completed_successfully"
    expected = {
        "api": {"migrate": done, "temporal-setup": done},
        "worker": {"migrate": done, "temporal-setup": done},
        "migrate": {"postgres": "service_healthy"},
        "temporal": {"postgres": "service_healthy"},
        "temporal-setup": {"temporal": "service_healthy"},
        "temporal-ui": {"temporal": "service_healthy"},
    }
    for name, conditions in expected.items():
        needs = {dep: spec["condition"] for dep, spec in services[name]["depends_on"].items()}
        assert needs == conditions, f"{name} waits for {needs}, not {conditions}"
    for name in ("postgres", "temporal", "api"):
        assert services[name]["healthcheck"]["test"], name


def test_services_start_in_order_without_retries_by_hand() -> None:
    check_start_order(THE_FILE)


BREAKAGES = [
    pytest.param(
        check_entry_points, '"python", "worker.py"', '"python", "workers.py"', "workers.py", id="script"
    ),
    pytest.param(check_entry_points, '"cli.temporal_setup"', '"cli.setup"', "cli.setup", id="module"),
    pytest.param(check_entry_points, '"cli.probe"', '"cli.probes"', "cli.probes", id="health-check-module"),
    pytest.param(
        check_entry_points, '"api.asgi:app"', '"api.asgi:application"', "api.asgi:application", id="asgi-app"
    ),
    pytest.param(
        check_settings,
        "AI_OFFLINE_LATENCY_MS: ${AI_OFFLINE_LATENCY_MS:-2000}",
        "AI_OFFLINE_LATENCY: ${AI_OFFLINE_LATENCY:-2000}",
        r"not passed \['AI_OFFLINE_LATENCY_MS'\], not settings \['AI_OFFLINE_LATENCY'\]",
        id="renamed-setting",
    ),
    pytest.param(
        check_settings,
        "  RETENTION_DAYS: ${RETENTION_DAYS:-}\n",
        "",
        r"not passed \['RETENTION_DAYS'\]",
        id="missing-setting",
    ),
    pytest.param(
        check_settings,
        "JWT_ISSUER: ${JWT_ISSUER:-}",
        "JWT_ISSUER: ${JWT_ISSUERS:-}",
        "JWT_ISSUER is not",
        id="wrong-variable",
    ),
    pytest.param(
        check_ports, '"--port", "8000"', '"--port", "8080"', "listens on 8080, publishes 8000", id="api-port"
    ),
    pytest.param(
        check_ports,
        "127.0.0.1:8000/health",
        "127.0.0.1:8080/health",
        "health check asks 8080",
        id="health-port",
    ),
    pytest.param(check_ports, '- "9465"', '- "9466"', "metrics ports", id="metrics-port"),
    pytest.param(
        check_start_order,
        "condition: service_completed_successfully",
        "condition: service_started",
        "api waits for {'migrate': 'service_started'",
        id="order",
    ),
]


@pytest.mark.parametrize(("check", "old", "new", "complaint"), BREAKAGES)
def test_each_check_fails_on_a_broken_copy_of_the_file(
    check: Callable[[ComposeFile], None], old: str, new: str, complaint: str, tmp_path: Path
) -> None:
    text = THE_FILE.text()
    assert old in text
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(AssertionError, match=complaint):
        check(ComposeFile(broken))


def test_the_worker_is_given_longer_than_its_shutdown_grace() -> None:
    stop_grace = THE_FILE.config()["services"]["worker"]["stop_grace_period"]
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
    config = THE_FILE.config()
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


def test_the_compose_temporal_server_gets_the_dev_servers_dynamic_config() -> None:
    temporal = THE_FILE.raw()["services"]["temporal"]
    mounted = {}
    for volume in temporal["volumes"]:
        source, target, _mode = volume.split(":")
        mounted[target] = REPO / source
    path = "/etc/temporal/" + temporal["environment"]["DYNAMIC_CONFIG_FILE_PATH"]
    config = yaml.safe_load(mounted[path].read_text(encoding="utf-8"))
    assert config == {
        "history.transferProcessorMaxPollRPS": [{"value": TRANSFER_TASK_LOADS_PER_SECOND}],
    }
