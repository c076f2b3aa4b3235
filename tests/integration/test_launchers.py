"""The embedded PostgreSQL and Temporal dev server launchers that `mandala dev` uses."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import psycopg
import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client

from cli.leftovers import PidRecord, read_pid_record, write_pid_record
from cli.postgres import EmbeddedPostgres
from cli.processes import ManagedProcess, PortInUseError
from cli.temporal_server import DevTemporalServer
from domain.workflow_io import SEARCH_ATTRIBUTES
from tests.support.processes import process_tree, still_running
from tests.support.servers import free_ports


def conninfo(server: EmbeddedPostgres) -> str:
    return server.url().replace("postgresql+psycopg://", "postgresql://")


@pytest.fixture
def scratch_dir() -> Iterator[Path]:
    """A directory outside pytest's basetemp: every pytest session that starts resets that to mode 0700,
    and as root PostgreSQL runs as another user that must be able to reach its data directory."""
    path = Path(tempfile.mkdtemp(prefix="mandala-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def postgres(scratch_dir: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(scratch_dir / "pg", port=free_ports(1)[0])
    yield server
    server.stop()


def test_postgres_keeps_data_across_restarts_and_stops_its_whole_tree(postgres: EmbeddedPostgres) -> None:
    postgres.start()
    assert postgres.url() == f"postgresql+psycopg://postgres@127.0.0.1:{postgres.port}/mandala"
    with psycopg.connect(conninfo(postgres), autocommit=True) as conn:
        conn.execute("CREATE TABLE notes (body text)")
        conn.execute("INSERT INTO notes VALUES ('目標を達成する')")
    assert postgres.pid is not None
    tree = process_tree(postgres.pid)
    assert len(tree) > 1

    postgres.stop()

    assert postgres.pid is None
    assert still_running(tree) == []
    postgres.start()
    with psycopg.connect(conninfo(postgres)) as conn:
        assert conn.execute("SELECT body FROM notes").fetchall() == [("目標を達成する",)]


def test_postgres_restarts_over_a_crashed_server_and_a_stale_pid_file(postgres: EmbeddedPostgres) -> None:
    postgres.start()
    with psycopg.connect(conninfo(postgres), autocommit=True) as conn:
        conn.execute("CREATE TABLE notes (body text)")
        conn.execute("INSERT INTO notes VALUES ('kept')")
    assert postgres.pid is not None
    tree = process_tree(postgres.pid)

    tree[0].send_signal(signal.SIGKILL)
    psutil.wait_procs(tree, timeout=10)
    assert still_running(tree) == []
    pid_file = postgres.data_dir / "postmaster.pid"
    # After a container restart the recorded pid often belongs to an unrelated live process.
    lines = pid_file.read_text().split("\n")
    pid_file.write_text("\n".join([str(psutil.Process().pid), *lines[1:]]))

    postgres.start()

    with psycopg.connect(conninfo(postgres)) as conn:
        assert conn.execute("SELECT body FROM notes").fetchall() == [("kept",)]


def test_an_unrelated_postgres_whose_pid_is_in_the_pid_file_is_left_alone(
    postgres: EmbeddedPostgres, scratch_dir: Path
) -> None:
    postgres.start()
    postgres.stop()
    with EmbeddedPostgres(scratch_dir / "other", port=free_ports(1)[0]) as other:
        # The other server's own lock file: its pid, its start time, its port. Only the directory it serves
        # tells it apart from a server of ours.
        shutil.copy(other.data_dir / "postmaster.pid", postgres.data_dir / "postmaster.pid")
        assert other.pid is not None
        bystander = psutil.Process(other.pid)

        postgres.start()

        assert still_running([bystander]) == [bystander]
        for server in (postgres, other):
            with psycopg.connect(conninfo(server)) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)


def test_postgres_creates_and_drops_databases(postgres: EmbeddedPostgres) -> None:
    postgres.start()

    postgres.create_database("scratch")
    postgres.create_database("scratch")
    with psycopg.connect(conninfo(postgres).replace("/mandala", "/scratch")) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("scratch",)
    postgres.drop_database("scratch")
    postgres.drop_database("scratch")

    with psycopg.connect(conninfo(postgres)) as conn:
        names = [row[0] for row in conn.execute("SELECT datname FROM pg_database").fetchall()]
    assert "scratch" not in names
    assert "mandala" in names


def test_postgres_reports_a_busy_port(scratch_dir: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = int(busy.getsockname()[1])

        with pytest.raises(PortInUseError, match=f"127.0.0.1:{port}.*already in use"):
            EmbeddedPostgres(scratch_dir / "pg", port=port).start()


@pytest.fixture
def temporal(tmp_path: Path) -> Iterator[DevTemporalServer]:
    port, ui_port = free_ports(2)
    server = DevTemporalServer(tmp_path / "temporal", port=port, ui_port=ui_port)
    server.start()
    yield server
    server.stop()


async def test_temporal_registers_search_attributes_serves_the_ui_and_stops(
    temporal: DevTemporalServer,
) -> None:
    client = await Client.connect(temporal.address)
    response = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace="default")
    )
    assert {key.name: response.custom_attributes.get(key.name) for key in SEARCH_ATTRIBUTES} == {
        key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for key in SEARCH_ATTRIBUTES
    }
    assert temporal.ui_url is not None
    async with httpx.AsyncClient() as http:
        assert (await http.get(temporal.ui_url)).status_code == 200
    assert temporal.pid is not None
    tree = process_tree(temporal.pid)

    temporal.stop()

    assert temporal.pid is None
    assert still_running(tree) == []


def test_temporal_stops_a_server_an_earlier_run_left_and_leaves_an_unrelated_pid_alone(
    tmp_path: Path,
) -> None:
    first = DevTemporalServer(tmp_path / "temporal", *free_ports(2), headless=True)
    second = DevTemporalServer(tmp_path / "temporal", *free_ports(2), headless=True)
    try:
        first.start()
        assert first.pid is not None
        leftover = psutil.Process(first.pid)

        second.start()  # over the same data directory, as the next run after a lost supervisor would

        assert still_running([leftover]) == []
        assert second.pid is not None
        second.stop()
        assert not second.pid_file.exists()

        write_pid_record(second.pid_file, os.getpid())  # a live process that is not a Temporal server
        second.start()

        assert second.pid is not None
        assert read_pid_record(second.pid_file, started_at_line=1) == PidRecord(
            second.pid, psutil.Process(second.pid).create_time()
        )
    finally:
        second.stop()
        first.stop()


def test_temporal_reports_a_busy_port(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = int(busy.getsockname()[1])

        with pytest.raises(PortInUseError, match="already in use"):
            DevTemporalServer(tmp_path / "temporal", port=port, ui_port=free_ports(1)[0]).start()


def wait_for_line(path: Path, text: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text():
            return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} never appeared in {path}")


def test_stop_kills_a_child_that_ignores_its_stop_signal(tmp_path: Path) -> None:
    log_path = tmp_path / "stubborn.log"
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)"
    )
    child = ManagedProcess("stubborn", [sys.executable, "-c", code], log_path=log_path)
    wait_for_line(log_path, "ready")

    child.stop(timeout=0.5)

    assert child.poll() == -signal.SIGKILL


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux-only")
def test_children_die_with_a_parent_killed_outright() -> None:
    parent_code = (
        "import time; from cli.processes import ManagedProcess; "
        "child = ManagedProcess('sleeper', ['sleep', '60']); print(child.pid, flush=True); time.sleep(60)"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", parent_code],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    child = psutil.Process(int(parent.stdout.readline()))

    parent.kill()
    parent.wait()

    psutil.wait_procs([child], timeout=5)
    assert still_running([child]) == []
