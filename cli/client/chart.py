"""The 9×9 mandala in the terminal, drawn with rich.

Layout (docs/cli.md): the goal sits in the middle of the centre block with its 8 subgoals around it; each
subgoal also sits in the middle of its own outer block, surrounded by its 8 actions. Position p (0..7) of a
subgoal or an action fills the cells of a 3×3 block in reading order, skipping the middle: 0 1 2 / 3 · 4 /
5 6 7. Titles wrap inside their cell; what does not fit in ``MAX_LINES`` lines is elided with "…". Widths
are counted in terminal cells, so Japanese wide characters stay aligned.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from cli.client.text import t
from domain.enums import Language

GRID = 9
MAX_LINES = 3
MIN_CELL_WIDTH = 4
ELLIPSIS = "…"
# 9 cells plus 10 border characters (4 heavy block borders, 6 light cell borders) per line.
_BORDERS = GRID + 1
_GOAL_STYLE = "bold reverse"
_SUBGOAL_STYLE = "bold cyan"


def block_slot(position: int) -> int:
    """The cell (0..8, reading order) of a 3×3 block that holds the item at ``position`` (0..7)."""
    return position if position < 4 else position + 1


def mandala_cells(goal: dict[str, Any]) -> list[list[tuple[str, str]]]:
    """The 9×9 grid as (title, style) per cell, row by row; empty cells have an empty title."""
    grid = [[("", "")] * GRID for _ in range(GRID)]

    def put(block: int, slot: int, title: str, style: str) -> None:
        grid[block // 3 * 3 + slot // 3][block % 3 * 3 + slot % 3] = (title, style)

    centre = 4
    put(centre, centre, goal["title"], _GOAL_STYLE)
    for subgoal in goal["subGoals"]:
        block = block_slot(subgoal["position"])
        put(centre, block, subgoal["title"], _SUBGOAL_STYLE)
        put(block, centre, subgoal["title"], _SUBGOAL_STYLE)
        for action in subgoal["actions"]:
            put(block, block_slot(action["position"]), action["title"], "")
    return grid


def cell_width(console_width: int) -> int:
    return max(MIN_CELL_WIDTH, (console_width - _BORDERS) // GRID)


def fit(title: str, width: int, console: Console, style: str = "") -> Text:
    """``title`` wrapped to ``width`` cells in exactly MAX_LINES lines (so that every row of the 9×9 grid has
    one height across blocks), the rest elided with "…"."""
    lines = list(Text(title, style=style).wrap(console, width, overflow="fold"))
    if len(lines) > MAX_LINES:
        lines = lines[:MAX_LINES]
        lines[-1].append(ELLIPSIS)
        lines[-1].truncate(width, overflow="ellipsis")
    lines += [Text()] * (MAX_LINES - len(lines))
    return Text("\n", style=style).join(lines)


def mandala_table(goal: dict[str, Any], console: Console) -> Table:
    width = cell_width(console.width)
    cells = mandala_cells(goal)
    outer = Table(box=box.HEAVY, show_header=False, show_lines=True, padding=0)
    for _ in range(3):
        outer.add_column()
    for block_row in range(3):
        blocks: list[RenderableType] = []
        for block_col in range(3):
            inner = Table(box=box.SQUARE, show_header=False, show_lines=True, show_edge=False, padding=0)
            for _ in range(3):
                inner.add_column(width=width)
            for row in range(block_row * 3, block_row * 3 + 3):
                titles = cells[row][block_col * 3 : block_col * 3 + 3]
                inner.add_row(*(fit(title, width, console, style) for title, style in titles))
            blocks.append(inner)
        outer.add_row(*blocks)
    return outer


def task_tree(goal: dict[str, Any], lang: Language) -> Tree:
    """Tasks per action, under their subgoal and action."""
    tree = Tree(Text(goal["title"], style="bold"))
    for subgoal in goal["subGoals"]:
        branch = tree.add(Text(f"{subgoal['position'] + 1}. {subgoal['title']}", style=_SUBGOAL_STYLE))
        for action in subgoal["actions"]:
            leaf = branch.add(Text(f"{action['position'] + 1}. {action['title']} [{action['type']}]"))
            for task in action["tasks"]:
                minutes = t("minutes", lang, n=task["estimatedMinutes"])
                leaf.add(Text(f"{task['position'] + 1}. {task['title']} ({minutes}, {task['priority']})"))
    return tree
