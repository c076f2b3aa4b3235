"""Every benchmark runs (issue 8): a smoke run of each at tiny sizes checks that it works and reports its
summary figures — never its speed, which only the benchmarks themselves measure (docs/benchmarks.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.__main__ import run_one
from bench.registry import BENCHMARKS, Benchmark

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_every_runnable_bench_module_is_registered() -> None:
    runnable = {
        path.stem
        for path in BENCH.glob("*.py")
        if path.stem != "__main__" and 'if __name__ == "__main__":' in path.read_text(encoding="utf-8")
    }
    assert runnable == {b.module for b in BENCHMARKS}


@pytest.mark.parametrize("benchmark", BENCHMARKS, ids=lambda b: b.module)
def test_benchmark_runs_at_smoke_size(benchmark: Benchmark) -> None:
    outcome = run_one(benchmark, smoke=True)
    assert outcome.code == 0, outcome.output
    assert outcome.figures, outcome.output
    assert {f.benchmark for f in outcome.figures} == {benchmark.module}
