"""The shell commands a Markdown document shows, as a reader would type them."""

from __future__ import annotations

import re
from pathlib import Path

_FENCE = re.compile(r"```sh\n(.*?)```", re.DOTALL)


def section(path: Path, heading: str) -> str:
    text = path.read_text(encoding="utf-8")
    start = text.index(f"\n{heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else None]


def commands(markdown: str) -> list[str]:
    """Every command of the ``sh`` blocks, backslash continuations joined, comments left out."""
    found: list[str] = []
    for block in _FENCE.findall(markdown):
        joined = block.replace("\\\n", " ")
        found += [line.strip() for line in joined.splitlines() if line.strip() and not line.startswith("#")]
    return found
