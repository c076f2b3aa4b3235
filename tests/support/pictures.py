"""Where a test's screenshot goes: the test's own output, or docs/images/ when the docs are being refreshed.

The pictures in docs/images/ are what these tests produce; a normal run leaves the checkout untouched;
with UPDATE_DOC_IMAGES=1 set, `.venv/bin/python -m pytest tests/e2e/test_web_page.py
tests/e2e/test_readme_walkthrough.py` rewrites them.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.servers import REPO_ROOT

DOC_IMAGES = REPO_ROOT / "docs" / "images"


def picture_path(name: str, test_output: Path) -> Path:
    folder = DOC_IMAGES if os.environ.get("UPDATE_DOC_IMAGES") == "1" else test_output
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name
