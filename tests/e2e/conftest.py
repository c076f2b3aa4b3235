"""Fixtures for the tests that drive a real `mandala dev`."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mandala_dev import DevLauncher


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
