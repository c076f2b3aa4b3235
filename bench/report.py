"""Figures a benchmark hands to the runner (`python -m bench`) for the table in docs/benchmarks.md.

A benchmark prints its own table for people and calls ``record`` for each figure that belongs in the
summary. Run alone, ``record`` does nothing more; under the runner, which names a file in BENCH_RESULTS,
it appends the figure to that file as one JSON line.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

RESULTS_ENV = "BENCH_RESULTS"


@dataclass(frozen=True)
class Figure:
    """One summary figure: ``value`` of the service (with its ``floor`` from the same run, when it has one)
    against ``goal`` (free text); ``met`` says whether the goal held (None: no goal)."""

    benchmark: str
    name: str
    value: float
    unit: str
    floor: float | None = None
    goal: str | None = None
    met: bool | None = None


def record(figure: Figure) -> None:
    path = os.environ.get(RESULTS_ENV)
    if path:
        with Path(path).open("a", encoding="utf-8") as out:
            out.write(json.dumps(asdict(figure), ensure_ascii=False) + "\n")


def read(path: Path) -> list[Figure]:
    if not path.exists():
        return []
    return [Figure(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line]
