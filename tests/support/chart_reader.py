"""Reading back the 9×9 chart that `mandala show` draws: the text of every cell, by row and column."""

from __future__ import annotations

import re
from typing import Any

from rich.cells import cell_len

_BORDERS = set("┏┓┗┛┣┫╋┳┻━┃─┼")
_CELL_SEPARATOR = re.compile("[┃│]")


def chart_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line[:1] in ("┏", "┃", "┣", "┗")]


def read_chart(output: str) -> list[list[str]]:
    """Cell texts with their wrapped lines joined and whitespace removed (titles wrap at any character)."""
    rows: list[list[str]] = []
    current: list[str] | None = None
    for line in chart_lines(output):
        if set(line) <= _BORDERS:
            if current is not None:
                rows.append(current)
            current = None
            continue
        pieces = _CELL_SEPARATOR.split(line)[1:-1]
        assert len(pieces) == 9, line
        current = [old + "".join(new.split()) for old, new in zip(current or [""] * 9, pieces, strict=True)]
    return rows


def chart_widths(output: str) -> set[int]:
    """The display widths of the chart's lines: one value when every border lines up."""
    return {cell_len(line) for line in chart_lines(output)}


def expected_cells(goal: dict[str, Any]) -> list[list[str]]:
    """Where the titles of a goal tree (GET /api/goals) belong: the layout of docs/cli.md, stated again."""
    slots = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1), (2, 2)]  # positions 0..7 in a block
    grid = [[""] * 9 for _ in range(9)]
    grid[4][4] = goal["title"]
    for sub in goal["subGoals"]:
        block_row, block_col = slots[sub["position"]]
        grid[3 + block_row][3 + block_col] = sub["title"]
        grid[block_row * 3 + 1][block_col * 3 + 1] = sub["title"]
        for action in sub["actions"]:
            row, col = slots[action["position"]]
            grid[block_row * 3 + row][block_col * 3 + col] = action["title"]
    return [["".join(title.split()) for title in row] for row in grid]


def matches(cell: str, title: str) -> bool:
    """A drawn cell shows the whole title, or its start elided with "…"."""
    return cell == title or (cell.endswith("…") and title.startswith(cell[:-1]) and len(cell) > 1)
