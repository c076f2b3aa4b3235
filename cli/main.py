"""The `mandala` command: `mandala dev` runs the whole system locally, `mandala token` prints a dev JWT;
the client commands (generate, jobs, show, all) live in cli/client/."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Protocol

import httpx
from pydantic import ValidationError

from api.dev_tokens import dev_token_for
from cli.client import commands as client
from cli.processes import ManagedProcess, ServiceStartError, ensure_port_free, exit_now
from settings import DEFAULT_TEMPORAL_NAMESPACE, get_settings

REPO_ROOT = Path(__file__).resolve().parents[1]
LOCALHOST = "127.0.0.1"
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_MAX_SUBJECT_LENGTH = 255  # users.subject is varchar(255)


class _Service(Protocol):
    @property
    def name(self) -> str: ...

    def poll(self) -> int | None: ...

    def stop(self) -> None: ...


class _ChildExited(Exception):
    pass


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "token":
        return _token(args)
    if args.command in client.COMMANDS:
        return client.run(args)
    ports = [args.api_port, args.temporal_port, args.ui_port, args.pg_port]
    if len(set(ports)) != len(ports):
        parser.error("--api-port, --temporal-port, --ui-port and --pg-port must all differ")
    exit_now(_dev(args))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mandala", description="Goal-mandala generation service tools.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    token = commands.add_parser(
        "token",
        help="print a development JWT (AUTH_MODE=hs256)",
        description="Print an HS256 JWT signed with JWT_SECRET, and nothing else, on stdout.",
    )
    token.add_argument("--sub", required=True, type=_subject, help="the user id (JWT `sub` claim)")
    token.add_argument("--expires-in", type=_positive_int, default=3600, metavar="SECONDS")

    dev = commands.add_parser(
        "dev",
        help="run PostgreSQL, Temporal, the worker and the API locally",
        description="Run the whole system; DATABASE_URL / TEMPORAL_ADDRESS, when set, replace the embedded "
        "PostgreSQL / Temporal dev server. Data persists in --data-dir. Ctrl+C stops everything.",
    )
    dev.add_argument("--data-dir", type=Path, default=Path(".mandala"), help="default: ./.mandala")
    dev.add_argument("--api-port", type=_port, default=8000)
    dev.add_argument("--temporal-port", type=_port, default=7233)
    dev.add_argument("--ui-port", type=_port, default=8233, help="the Temporal Web UI port")
    dev.add_argument("--pg-port", type=_port, default=55432)
    client.register(commands)
    return parser


def _subject(value: str) -> str:
    value = value.strip()
    if not value or len(value) > _MAX_SUBJECT_LENGTH:
        raise argparse.ArgumentTypeError(f"must be 1 to {_MAX_SUBJECT_LENGTH} characters")
    return value


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value!r}")
    return number


def _port(value: str) -> int:
    port = _positive_int(value)
    if port > 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port (1-65535), got {value!r}")
    return port


def _token(args: argparse.Namespace) -> int:
    try:
        settings = get_settings()
    except ValidationError as exc:
        print(f"mandala token: invalid configuration: {exc}", file=sys.stderr)
        return 1
    if settings.auth_mode != "hs256":
        print("mandala token: development tokens need AUTH_MODE=hs256", file=sys.stderr)
        return 1
    print(dev_token_for(settings, args.sub, args.expires_in))
    return 0


def _dev(args: argparse.Namespace) -> int:
    services: list[_Service] = []  # in start order; stopped in reverse
    _set_stop_signal_handlers(_interrupt)
    try:
        _start_all(args, services)
        while True:
            _check_alive(services)
            time.sleep(0.5)
    except KeyboardInterrupt:
        code = 0
    except (ServiceStartError, ValidationError, _ChildExited) as exc:
        print(f"mandala dev: {exc}", file=sys.stderr)
        code = 1
    except Exception:
        traceback.print_exc()
        code = 1
    _set_stop_signal_handlers(signal.SIG_IGN)
    print("mandala dev: stopping", file=sys.stderr, flush=True)
    for service in reversed(services):
        service.stop()
    return code


def _interrupt(signum: int, frame: FrameType | None) -> None:
    _set_stop_signal_handlers(signal.SIG_IGN)  # a second Ctrl+C must not cut the orderly stop short
    raise KeyboardInterrupt


def _set_stop_signal_handlers(handler: Callable[[int, FrameType | None], None] | signal.Handlers) -> None:
    for sig in _STOP_SIGNALS:
        signal.signal(sig, handler)


def _start_all(args: argparse.Namespace, services: list[_Service]) -> None:
    # Imported here so that `mandala token` does not pay for loading temporalio and psycopg.
    from cli.postgres import EmbeddedPostgres
    from cli.temporal_server import DevTemporalServer

    settings = get_settings()
    data_dir: Path = args.data_dir.resolve()
    ensure_port_free(LOCALHOST, args.api_port, "the API")

    if os.environ.get("DATABASE_URL"):
        database_url = settings.database_url
    else:
        postgres = EmbeddedPostgres(data_dir / "postgres", args.pg_port, LOCALHOST)
        services.append(postgres)
        postgres.start()
        database_url = postgres.url()
    _migrate(database_url)

    namespace = settings.temporal_namespace or DEFAULT_TEMPORAL_NAMESPACE
    temporal_address = os.environ.get("TEMPORAL_ADDRESS")
    ui_url = None
    if not temporal_address:
        temporal = DevTemporalServer(
            data_dir, args.temporal_port, args.ui_port, namespace=namespace, ip=LOCALHOST
        )
        services.append(temporal)
        temporal.start()
        temporal_address, ui_url = temporal.address, temporal.ui_url

    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "TEMPORAL_ADDRESS": temporal_address,
        "TEMPORAL_NAMESPACE": namespace,
        "PYTHONUNBUFFERED": "1",
    }
    services.append(ManagedProcess("the worker", [sys.executable, "worker.py"], cwd=REPO_ROOT, env=env))
    api_args = ["api.asgi:app", "--no-access-log", "--host", LOCALHOST, "--port", str(args.api_port)]
    services.append(
        ManagedProcess(
            "the API",
            # A bounded graceful shutdown, so that open event streams cannot hold up the stop.
            [sys.executable, "-m", "uvicorn", *api_args, "--timeout-graceful-shutdown", "5"],
            cwd=REPO_ROOT,
            env=env,
        )
    )
    api_url = f"http://{LOCALHOST}:{args.api_port}"
    _wait_for_health(api_url, services, timeout=60.0)
    _print_banner(api_url, temporal_address, ui_url, data_dir)


def _migrate(database_url: str) -> None:
    from db.migrate import upgrade_head

    upgrade_head(database_url)


def _check_alive(services: list[_Service]) -> None:
    for service in services:
        code = service.poll()
        if code is not None:
            raise _ChildExited(f"{service.name} exited unexpectedly with code {code}")


def _wait_for_health(api_url: str, services: list[_Service], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        _check_alive(services)
        try:
            if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise ServiceStartError(f"the API did not answer {api_url}/health within {timeout:g} s")
        time.sleep(0.2)


def _token_command() -> str:
    """How to run `mandala token` from here: the bare name when it is on PATH, else the script's path."""
    script = Path(sys.argv[0])
    if script.name == "mandala" and shutil.which("mandala") != str(script.resolve()):
        return f"{os.path.relpath(script)} token --sub demo-user"
    return "mandala token --sub demo-user"


def _print_banner(api_url: str, temporal_address: str, ui_url: str | None, data_dir: Path) -> None:
    command = _token_command()
    token = f"$({command})"
    lines = [
        f"mandala dev is running (data in {data_dir})",
        f"  API:          {api_url}",
        f"  API docs:     {api_url}/docs",
        f"  Temporal:     {temporal_address}",
        f"  Temporal UI:  {ui_url or '(the external server has its own)'}",
        f"  Get a token:  {command}",
        f'  Try:          curl -H "Authorization: Bearer {token}" {api_url}/api/ai/async/history',
        "Press Ctrl+C to stop.",
    ]
    print("\n" + "\n".join(lines) + "\n", flush=True)


if __name__ == "__main__":
    sys.exit(main())
