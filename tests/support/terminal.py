"""A command on a pseudo-terminal (so rich draws its live display), and pictures of terminal output."""

from __future__ import annotations

import fcntl
import html
import os
import pty
import struct
import subprocess
import termios
import time
from pathlib import Path

from rich.cells import cell_len
from rich.console import Console
from rich.text import Text

from tests.support.browser import chromium

# Every character gets a box of its own cell width (1ch or 2ch), so wide characters line up exactly as in a
# terminal whatever the fonts' own widths.
_PAGE = """<!doctype html><html><head><meta charset="utf-8"><style>
body {{ margin: 0; background: #1e1e1e; }}
pre {{ margin: 0; padding: 12px; color: #e0e0e0; background: #1e1e1e; display: inline-block;
       font: 14px/1.3 "DejaVu Sans Mono", "Noto Sans Mono CJK JP", monospace; }}
pre span {{ display: inline-block; text-align: center; overflow: visible; }}
</style></head><body><pre id="terminal">{lines}</pre></body></html>"""


def run_on_terminal(
    command: list[str], env: dict[str, str], cwd: Path, columns: int = 120, timeout: float = 180.0
) -> tuple[int, str]:
    """Exit code and everything the command wrote to its terminal (escape sequences included)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=env | {"TERM": "xterm-256color"},
        stdin=follower,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the command closed its terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    try:
        code = process.wait(max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    return code, b"".join(chunks).decode(errors="replace")


def screenshot_of_output(output: str, path: Path) -> None:
    """A PNG of ``output`` (text with ANSI colours) as a terminal shows it."""
    console = Console(color_system="truecolor")
    lines = []
    for line in Text.from_ansi(output).split("\n"):
        boxes = []
        for segment in line.render(console):
            style = segment.style
            color = style.color.get_truecolor().hex if style and style.color else "inherit"
            weight = "bold" if style and style.bold else "normal"
            for char in segment.text:
                boxes.append(
                    f'<span style="width:{cell_len(char)}ch;color:{color};font-weight:{weight}">'
                    f"{html.escape(char)}</span>"
                )
        lines.append("".join(boxes))
    path.parent.mkdir(parents=True, exist_ok=True)
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1800, "height": 1000})
        page.set_content(_PAGE.format(lines="\n".join(lines)))
        page.locator("#terminal").screenshot(path=str(path))
