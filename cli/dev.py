"""`mandala dev`: PostgreSQL, migrations, the Temporal dev server, the worker and the API on one machine,
supervised (cli.supervisor) until Ctrl+C."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from contextlib import ExitStack, closing
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import httpx
from pydantic import ValidationError

from cli.argtypes import non_negative_int, port, positive_int
from cli.banner import AiSetup, Endpoints, banner
from cli.lock import data_dir_lock
from cli.processes import Command, ServiceStartError, announce, ensure_port_free, listening_socket
from cli.supervisor import Supervisor
from settings import DEFAULT_METRICS_PORTS, DEFAULT_TEMPORAL_NAMESPACE, AppEnv, Settings, get_settings

REPO_ROOT = Path(__file__).resolve().parents[1]
LOCALHOST = "127.0.0.1"
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_API_BACKLOG = 2048
_HEALTH_TIMEOUT_SECONDS = 60.0


def add_arguments(dev: argparse.ArgumentParser) -> None:
    dev.add_argument("--data-dir", type=Path, default=Path(".mandala"), help="default: ./.mandala")
    dev.add_argument("--api-port", type=port, default=8000)
    dev.add_argument("--temporal-port", type=port, default=7233)
    dev.add_argument("--ui-port", type=port, default=8233, help="the Temporal Web UI port")
    dev.add_argument("--pg-port", type=port, default=55432)
    dev.add_argument(
        "--api-workers",
        type=positive_int,
        default=1,
        metavar="N",
        help="API processes sharing the API port (default: 1)",
    )
    dev.add_argument(
        "--metrics-port",
        type=port,
        metavar="PORT",
        help="Prometheus port of the (first) API process; further API processes take the next ports and "
        f"the worker the one after them (default: METRICS_PORT, else {DEFAULT_METRICS_PORTS['api']})",
    )
    dev.add_argument(
        "--ai-latency-ms",
        type=non_negative_int,
        metavar="MS",
        help="delay of every offline AI call, to watch progress (default: AI_OFFLINE_LATENCY_MS, else 0)",
    )


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    ports = [args.api_port, args.temporal_port, args.ui_port, args.pg_port]
    if len(set(ports)) != len(ports):
        parser.error("--api-port, --temporal-port, --ui-port and --pg-port must all differ")
    if args.metrics_port is not None:
        metrics = range(args.metrics_port, args.metrics_port + args.api_workers + 1)
        if metrics.stop - 1 > 65535 or set(metrics) & set(ports):
            parser.error(
                f"--metrics-port needs {len(metrics)} free ports from {args.metrics_port} (API processes, "
                "then the worker), apart from the other ports"
            )


@dataclass(frozen=True, slots=True)
class _MetricsPlan:
    host: str
    api_ports: tuple[int, ...]
    worker_port: int

    def ports(self) -> list[tuple[str, int]]:
        count = len(self.api_ports)
        api = [(f"API process {i + 1}" if count > 1 else "API", p) for i, p in enumerate(self.api_ports)]
        return [*api, ("worker", self.worker_port)]

    def urls(self) -> tuple[tuple[str, str], ...]:
        host = LOCALHOST if self.host in ("0.0.0.0", "::", "") else self.host
        return tuple((what, f"http://{host}:{p}/metrics") for what, p in self.ports())


def run(args: argparse.Namespace) -> int:
    """Start everything, supervise it until a stop signal, stop it; the exit code."""
    supervisor = Supervisor()
    resources = ExitStack()
    _set_stop_signal_handlers(_interrupt)
    try:
        _start_all(args, get_settings(), supervisor, resources)
        while True:
            supervisor.check()
            time.sleep(0.5)
    except KeyboardInterrupt:
        code = 0
    except (ServiceStartError, ValidationError) as exc:
        announce(str(exc))
        code = 1
    except Exception:
        traceback.print_exc()
        code = 1
    _set_stop_signal_handlers(signal.SIG_IGN)
    announce("stopping")
    supervisor.stop_all()
    resources.close()
    return code


def _interrupt(signum: int, frame: FrameType | None) -> None:
    _set_stop_signal_handlers(signal.SIG_IGN)  # a second Ctrl+C must not cut the orderly stop short
    raise KeyboardInterrupt


def _set_stop_signal_handlers(handler: Callable[[int, FrameType | None], None] | signal.Handlers) -> None:
    for sig in _STOP_SIGNALS:
        signal.signal(sig, handler)


def _start_all(
    args: argparse.Namespace, settings: Settings, supervisor: Supervisor, resources: ExitStack
) -> None:
    # Imported here so that `mandala token` does not pay for loading temporalio and psycopg.
    from cli.postgres import EmbeddedPostgres
    from cli.temporal_server import DevTemporalServer
    from db.migrate import upgrade_head

    data_dir: Path = args.data_dir.resolve()
    resources.enter_context(data_dir_lock(data_dir))
    api_socket = resources.enter_context(
        closing(listening_socket(LOCALHOST, args.api_port, "the API", backlog=_API_BACKLOG))
    )
    metrics = _metrics_plan(args, settings)
    if metrics is not None:
        for what, metrics_port in metrics.ports():
            ensure_port_free(metrics.host, metrics_port, f"the metrics of the {what}")

    if os.environ.get("DATABASE_URL"):
        database_url = settings.database_url
    else:
        postgres = EmbeddedPostgres(data_dir / "postgres", args.pg_port, LOCALHOST)
        supervisor.start(postgres)
        database_url = postgres.url()
    upgrade_head(database_url)

    namespace = settings.temporal_namespace or DEFAULT_TEMPORAL_NAMESPACE
    temporal_address = os.environ.get("TEMPORAL_ADDRESS")
    ui_url = None
    if not temporal_address:
        temporal = DevTemporalServer(
            data_dir, args.temporal_port, args.ui_port, namespace=namespace, ip=LOCALHOST
        )
        supervisor.start(temporal)
        temporal_address, ui_url = temporal.address, temporal.ui_url

    ai = _ai_setup(args, settings)
    env = _with(
        os.environ,
        DATABASE_URL=database_url,
        TEMPORAL_ADDRESS=temporal_address,
        TEMPORAL_NAMESPACE=namespace,
        AI_OFFLINE_LATENCY_MS=str(ai.latency_ms),
        AI_OFFLINE_FAULTS=str(ai.faults).lower(),
        PYTHONUNBUFFERED="1",
    )
    worker_env = _with(env, METRICS_PORT=str(metrics.worker_port)) if metrics else env
    supervisor.start(Command("the worker", [sys.executable, "worker.py"], cwd=REPO_ROOT, env=worker_env))
    for index in range(args.api_workers):
        supervisor.start(_api_process(api_socket, index, args.api_workers, env, metrics))

    api_url = f"http://{LOCALHOST}:{args.api_port}"
    metrics_urls = [url for _, url in metrics.urls()] if metrics else []
    _wait_until_serving([f"{api_url}/health", *metrics_urls], supervisor)
    endpoints = Endpoints(
        api_url=api_url,
        api_processes=args.api_workers,
        temporal_address=temporal_address,
        temporal_namespace=namespace,
        ui_url=ui_url,
        metrics=metrics.urls() if metrics else (),
        metrics_note=_metrics_note(settings),
    )
    print(banner(endpoints, ai, data_dir), flush=True)


def _api_process(
    api_socket: socket.socket, index: int, count: int, env: Mapping[str, str], metrics: _MetricsPlan | None
) -> Command:
    fd = api_socket.fileno()
    if metrics is not None:
        env = _with(env, METRICS_PORT=str(metrics.api_ports[index]))
    return Command(
        f"the API (process {index + 1} of {count})" if count > 1 else "the API",
        [sys.executable, "-m", "cli.api_server", "--fd", str(fd)],
        cwd=REPO_ROOT,
        env=env,
        pass_fds=(fd,),
    )


def _metrics_plan(args: argparse.Namespace, settings: Settings) -> _MetricsPlan | None:
    """The Prometheus ports of the API processes and the worker; None when no process serves them."""
    if not settings.metrics_enabled or settings.otel_exporter_otlp_endpoint:
        return None
    first = args.metrics_port or settings.metrics_port or DEFAULT_METRICS_PORTS["api"]
    api_ports = tuple(range(first, first + args.api_workers))
    return _MetricsPlan(settings.metrics_host, api_ports, first + args.api_workers)


def _metrics_note(settings: Settings) -> str:
    if not settings.metrics_enabled:
        return "off (METRICS_ENABLED=false)"
    return f"pushed over OTLP to {settings.otel_exporter_otlp_endpoint}"


def _ai_setup(args: argparse.Namespace, settings: Settings) -> AiSetup:
    """What the worker's provider will do. Fault directives are on by default here (a development run)
    unless AI_OFFLINE_FAULTS is set or APP_ENV is production."""
    latency = settings.ai_offline_latency_ms if args.ai_latency_ms is None else args.ai_latency_ms
    faults = settings.ai_offline_faults
    if "ai_offline_faults" not in settings.model_fields_set and settings.app_env is not AppEnv.PRODUCTION:
        faults = True
    return AiSetup(settings.ai_provider, latency, faults)


def _with(env: Mapping[str, str], **values: str) -> dict[str, str]:
    """`env` with `values` set, replacing any spelling of the same names (settings ignore case)."""
    names = {name.upper() for name in values}
    return {k: v for k, v in env.items() if k.upper() not in names} | values


def _wait_until_serving(urls: list[str], supervisor: Supervisor) -> None:
    """Wait until every URL answers 200: the API's /health and, when served, each process's /metrics
    (the only sign that a particular API process or the worker is up)."""
    deadline = time.monotonic() + _HEALTH_TIMEOUT_SECONDS
    for url in urls:
        while True:
            exited = supervisor.first_exit()
            if exited is not None:
                raise ServiceStartError(f"{exited} while starting")
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise ServiceStartError(f"{url} did not answer within {_HEALTH_TIMEOUT_SECONDS:g} s")
            time.sleep(0.2)
