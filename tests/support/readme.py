"""The shell commands a Markdown document shows, as a reader would type them."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

_FENCE = re.compile(r"```sh\n(.*?)```", re.DOTALL)


def section(path: Path, heading: str) -> str:
    text = path.read_text(encoding="utf-8")
    start = text.index(f"\n{heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else None]


def commands(markdown: str) -> list[str]:
    """Every command of the ``sh`` blocks: backslash continuations and quotes spanning lines joined,
    comment lines left out."""
    found: list[str] = []
    for block in _FENCE.findall(markdown):
        pending = ""
        for line in block.replace("\\\n", " ").splitlines():
            if not pending and (not line.strip() or line.startswith("#")):
                continue
            pending = f"{pending}\n{line}" if pending else line.strip()
            try:
                shlex.split(pending)
            except ValueError:  # a quote still open
                continue
            found.append(pending)
            pending = ""
    return found
