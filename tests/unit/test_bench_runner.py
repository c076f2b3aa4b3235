"""The benchmark runner's document handling: each run goes first between its markers, older runs stay."""

from __future__ import annotations

from pathlib import Path

from bench.__main__ import END_MARK, RUNS_HEADING, START_MARK, Outcome, table, write
from bench.registry import BENCHMARKS
from bench.report import Figure


def test_runs_are_added_newest_first_and_the_rest_of_the_page_stays(tmp_path: Path) -> None:
    page = tmp_path / "benchmarks.md"
    page.write_text("# Benchmarks\n\nhand-written notes\n", encoding="utf-8")
    write(page, "### run one\n")
    write(page, "### run two\n")
    text = page.read_text(encoding="utf-8")
    assert text.startswith("# Benchmarks\n\nhand-written notes\n")
    assert RUNS_HEADING in text
    assert text.index(START_MARK) < text.index("run two") < text.index("run one") < text.index(END_MARK)


def test_table_rows_give_floor_ratio_and_goal_and_say_when_a_benchmark_failed() -> None:
    ok = Outcome(
        BENCHMARKS[0],
        ("-m", "bench.x"),
        1.0,
        0,
        "",
        [Figure("x", "p50", 40.0, "ms", 20.0, "≤ floor + 20 ms", True)],
    )
    failed = Outcome(BENCHMARKS[1], ("-m", "bench.y"), 1.0, 2, "boom", [])
    rows = table([ok, failed])
    assert rows[2] == "| x | p50 (ms) | 20.0 | 40.0 | ×2.00 | ≤ floor + 20 ms | yes |"
    assert "**failed** (exit 2)" in rows[3]
