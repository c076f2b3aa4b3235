"""Fixtures of the end-to-end tests: a `mandala dev` launcher and its data directory, and the live stack
(API and worker processes) shared by the client and web page tests of one module.

The live stack is one per module, not per session: other modules truncate the tables, and a running API
keeps the users it has seen in its cache (spec 2.2), so a fixed subject such as the docs' demo-user would
point at a deleted row."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.support.live_stack import LiveStack, live_stack
from tests.support.mandala_dev import DevLauncher


@pytest.fixture(scope="module")
def stack(database_url: str, temporal_env: WorkflowEnvironment) -> Iterator[LiveStack]:
    address = temporal_env.client.service_client.config.target_host
    with live_stack(database_url, address, Path(tempfile.mkdtemp(prefix="mandala-live-"))) as running:
        yield running


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[DevLauncher]:
    dev_launcher = DevLauncher(tmp_path)
    yield dev_launcher
    dev_launcher.kill_leftovers()


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """Outside pytest's basetemp, which every starting pytest session resets to mode 0700: as root,
    PostgreSQL runs as another user that must be able to reach its data directory."""
    path = Path(tempfile.mkdtemp(prefix="mandala-e2e-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)
