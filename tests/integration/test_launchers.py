"""The embedded PostgreSQL and Temporal dev server launchers that `mandala dev` uses."""

from __future__ import annotations

import signal
import socket
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import psutil
import psycopg
import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client

from cli.postgres import EmbeddedPostgres
from cli.processes import PortInUseError
from cli.temporal_server import DevTemporalServer
from domain.workflow_io import SEARCH_ATTRIBUTES


def free_ports(count: int) -> list[int]:
    """Distinct free ports: all sockets are held open together so the kernel cannot hand one out twice."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def process_tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def still_running(processes: list[psutil.Process]) -> list[psutil.Process]:
    running = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                running.append(process)
        except psutil.NoSuchProcess:
            pass
    return running


def conninfo(server: EmbeddedPostgres) -> str:
    return server.url().replace("postgresql+psycopg://", "postgresql://")


@pytest.fixture
def postgres(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path / "pg", port=free_ports(1)[0])
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


def test_postgres_reports_a_busy_port(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = int(busy.getsockname()[1])

        with pytest.raises(PortInUseError, match=f"127.0.0.1:{port}.*already in use"):
            EmbeddedPostgres(tmp_path / "pg", port=port).start()


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


def test_temporal_reports_a_busy_port(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = int(busy.getsockname()[1])

        with pytest.raises(PortInUseError, match="already in use"):
            DevTemporalServer(tmp_path / "temporal", port=port, ui_port=free_ports(1)[0]).start()
