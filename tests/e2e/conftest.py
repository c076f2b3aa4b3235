"""The live stack (API and worker processes) shared by the client and web page tests of a session."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.support.live_stack import LiveStack, live_stack


@pytest.fixture(scope="session")
def stack(database_url: str, temporal_env: WorkflowEnvironment) -> Iterator[LiveStack]:
    address = temporal_env.client.service_client.config.target_host
    with live_stack(database_url, address, Path(tempfile.mkdtemp(prefix="mandala-live-"))) as running:
        yield running
