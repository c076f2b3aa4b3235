"""Figures a benchmark hands to the runner (`python -m bench`) for the table in docs/benchmarks.md.

A benchmark prints its own table for people and calls ``record`` for each figure that belongs in the
summary. Run alone, ``record`` does nothing more; under the runner, which names a file in BENCH_RESULTS,
it appends the figure to that file as one JSON line. A benchmark whose result is a ``Report`` does both
with ``publish``; ``parse_args`` gives its command line the ``--smoke`` flag of a CI run.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol, TypeVar

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


class Report(Protocol):
    def lines(self) -> list[str]: ...

    def record_figures(self) -> None: ...


ReportT = TypeVar("ReportT", bound=Report)


def publish(report: ReportT) -> ReportT:
    """Print the report's table and record its summary figures."""
    print("\n".join(report.lines()))
    report.record_figures()
    return report


def parse_args(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None, smoke_help: str, smoke: Mapping[str, object]
) -> argparse.Namespace:
    """``argv`` parsed, with a ``--smoke`` flag that sets the values of ``smoke`` (a CI-sized run)."""
    parser.add_argument("--smoke", action="store_true", help=smoke_help)
    args = parser.parse_args(argv)
    if args.smoke:
        vars(args).update(smoke)
    return args
