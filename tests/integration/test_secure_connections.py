"""TLS to Temporal and to PostgreSQL, configured by settings alone, through loopback TLS-terminating proxies.

The worker and the API are real processes; `cli.temporal_setup` is run as docker compose runs it.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.testing import WorkflowEnvironment

from cli.temporal_server import find_temporal_cli
from db.engine import make_engine
from db.migrate import upgrade_head
from domain.workflow_io import RECONCILER_SCHEDULE_ID, RETENTION_SCHEDULE_ID, SEARCH_ATTRIBUTES
from settings import AppEnv, Settings
from tests.support.servers import REPO_ROOT
from tests.support.services import Services, auth, child_env, start_job
from tests.support.tls_proxy import SERVER_NAME, TlsProxy, new_ca

START_ERROR_WITHIN = 30.0


def temporal_target(env: WorkflowEnvironment) -> str:
    return env.client.service_client.config.target_host


@pytest_asyncio.fixture
async def temporal_tls(temporal_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[TlsProxy]:
    proxy = TlsProxy(temporal_target(temporal_env), tmp_path / "temporal-tls")
    await proxy.start()
    yield proxy
    await proxy.stop()


@pytest_asyncio.fixture
async def postgres_tls(database_url: str, tmp_path: Path) -> AsyncIterator[TlsProxy]:
    url = make_url(database_url)
    proxy = TlsProxy(f"{url.host}:{url.port}", tmp_path / "postgres-tls", protocol="postgres")
    await proxy.start()
    yield proxy
    await proxy.stop()


def tls_database_url(database_url: str, proxy: TlsProxy, ca: Path) -> str:
    """The session database through ``proxy``, verified against ``ca`` (the form docs/deploy.md shows)."""
    host, port = proxy.address.rsplit(":", 1)
    url = make_url(database_url).set(
        host=host, port=int(port), query={"sslmode": "verify-full", "sslrootcert": str(ca)}
    )
    return url.render_as_string(hide_password=False)


def other_ca(directory: Path) -> Path:
    path = directory / "someone-elses-ca.pem"
    path.write_bytes(new_ca("someone else's CA").pem())
    return path


async def wait_completed(http: httpx.AsyncClient, api: str, headers: dict[str, str], process_id: str) -> None:
    for _ in range(600):
        response = await http.get(f"{api}/api/ai/async/status/{process_id}", headers=headers)
        status = response.json()["data"]["status"]
        if status not in ("PENDING", "PROCESSING"):
            assert status == "COMPLETED", response.text
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{process_id} did not finish")


async def test_worker_and_api_reach_temporal_and_postgres_over_tls_with_the_ca_from_settings(
    make_settings: Callable[..., Settings],
    database_url: str,
    temporal_tls: TlsProxy,
    postgres_tls: TlsProxy,
    tmp_path: Path,
) -> None:
    settings = make_settings(
        temporal_address=temporal_tls.address,
        temporal_tls_server_ca_cert_path=str(temporal_tls.ca_path),
        temporal_tls_server_name=SERVER_NAME,
        database_url=tls_database_url(database_url, postgres_tls, postgres_tls.ca_path),
    )
    with Services(tmp_path) as services:
        await services.worker("worker", settings)
        _, api = await services.api("api", settings)
        async with httpx.AsyncClient(timeout=10) as http:
            ready = await http.get(f"{api}/health/ready")
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"] == {"database": "ok", "temporal": "ok"}
            headers = auth("tls-user", settings)
            await wait_completed(http, api, headers, await start_job(http, api, headers))


async def test_a_wrong_temporal_ca_is_a_clear_start_up_error_not_a_hang(
    make_settings: Callable[..., Settings], temporal_tls: TlsProxy, tmp_path: Path
) -> None:
    settings = make_settings(
        temporal_address=temporal_tls.address, temporal_tls_server_ca_cert_path=str(other_ca(tmp_path))
    )
    with Services(tmp_path) as services:
        started = time.monotonic()
        worker = services.start_worker("worker", settings)
        assert await worker.exit_code(within=START_ERROR_WITHIN) == 1
        assert time.monotonic() - started < START_ERROR_WITHIN
        [failure] = worker.events("worker_failed")
        assert f"cannot connect to Temporal at {temporal_tls.address}" in failure["message"]
        assert "certificate is not trusted" in failure["message"]
        assert worker.events("worker_started") == []

        api_process, api = await services.api("api", settings)
        [warning] = api_process.events("temporal_unavailable")
        assert "certificate is not trusted" in warning["message"]
        async with httpx.AsyncClient(timeout=10) as http:
            ready = await http.get(f"{api}/health/ready")
        assert ready.status_code == 503
        assert ready.json()["status"] == "unavailable"
        assert ready.json()["checks"] == {"database": "ok", "temporal": "error"}
        probe = await run_module("cli.probe", f"{api}/health/ready")
        assert probe.returncode == 1 and "HTTP 503" in probe.stdout
        assert (await run_module("cli.probe", f"{api}/health")).returncode == 0


async def test_postgres_tls_comes_from_database_url_parameters(
    database_url: str, postgres_tls: TlsProxy, tmp_path: Path
) -> None:
    verified = tls_database_url(database_url, postgres_tls, postgres_tls.ca_path)
    await asyncio.to_thread(upgrade_head, verified)
    engine = make_engine(verified, pool_size=1)
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM users"))).scalar_one() >= 0
            raw = await conn.get_raw_connection()
            assert raw.driver_connection.pgconn.ssl_in_use
    finally:
        await engine.dispose()

    untrusted = make_engine(tls_database_url(database_url, postgres_tls, other_ca(tmp_path)), pool_size=1)
    try:
        with pytest.raises(OperationalError, match="certificate verify failed"):
            async with untrusted.connect():
                pass
    finally:
        await untrusted.dispose()


async def test_temporal_setup_registers_the_search_attributes_and_schedules_over_tls(tmp_path: Path) -> None:
    async with await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(find_temporal_cli()), dev_server_log_level="error"
    ) as bare:
        proxy = TlsProxy(temporal_target(bare), tmp_path / "tls")
        await proxy.start()
        try:
            settings = Settings(
                app_env=AppEnv.TEST,
                temporal_address=proxy.address,
                temporal_tls_server_ca_cert_path=str(proxy.ca_path),
                metrics_enabled=False,
            )
            for _ in range(2):  # idempotent: docker compose runs it on every `up`
                setup = await run_module("cli.temporal_setup", settings=settings)
                assert setup.returncode == 0, setup.stdout
            assert "search attributes registered" in setup.stdout
        finally:
            await proxy.stop()
        response = await bare.client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace="default")
        )
        registered = {key.name: response.custom_attributes.get(key.name) for key in SEARCH_ATTRIBUTES}
        assert registered == {
            key.name: IndexedValueType.ValueType(key.indexed_value_type.value) for key in SEARCH_ATTRIBUTES
        }
        for schedule_id in (RECONCILER_SCHEDULE_ID, RETENTION_SCHEDULE_ID):
            await bare.client.get_schedule_handle(schedule_id).describe()


async def run_module(module: str, *args: str, settings: Settings | None = None) -> Any:
    """``python -m module args`` without blocking the loop the proxies run on; stdout and stderr merged."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        *args,
        cwd=REPO_ROOT,
        env=child_env(settings or Settings()),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    return subprocess.CompletedProcess(module, process.returncode or 0, output.decode(), None)
