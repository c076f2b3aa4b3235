"""The live stack (API and worker processes) shared by the client and web page tests of one module.

One per module, not per session: other modules truncate the tables, and a running API keeps the users it
has seen in its cache (spec 2.2), so a fixed subject such as the docs' demo-user would point at a deleted
row."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.support.live_stack import LiveStack, live_stack


@pytest.fixture(scope="module")
def stack(database_url: str, temporal_env: WorkflowEnvironment) -> Iterator[LiveStack]:
    address = temporal_env.client.service_client.config.target_host
    with live_stack(database_url, address, Path(tempfile.mkdtemp(prefix="mandala-live-"))) as running:
        yield running
