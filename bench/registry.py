"""Every benchmark of bench/, with the arguments of its recorded run and of its CI smoke run.

A new scenario is a module ``bench/<name>.py`` runnable as ``python -m bench.<name>`` (argparse, prints its
own table, calls ``bench.report.record`` for its summary figures) plus one line below. ``python -m bench``
runs them all; ``tests/integration/test_benchmarks.py`` runs each with its ``smoke`` arguments (tiny sizes:
it checks that the benchmark works, not its speed) and fails when a module of bench/ is missing here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Benchmark:
    module: str  # bench/<module>.py
    args: tuple[str, ...]  # the recorded run
    smoke: tuple[str, ...]  # CI: tiny sizes, a few seconds
    smoke_env: Mapping[str, str] = field(default_factory=dict)

    @property
    def command(self) -> tuple[str, ...]:
        return ("-m", f"bench.{self.module}", *self.args)


BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark("job_latency", ("--jobs", "60", "--runs", "3"), ("--jobs", "2", "--runs", "1")),
    Benchmark("inflight", ("--jobs", "500", "--ai-ms", "2000"), ("--jobs", "4", "--ai-ms", "100")),
    Benchmark("status_reads", ("--seconds", "5", "--runs", "3"), ("--smoke",)),
    Benchmark(
        "start_latency", ("--rate", "50", "--seconds", "30", "--burst", "200", "--runs", "1"), ("--smoke",)
    ),
    Benchmark(
        "control_latency",
        ("--jobs", "20", "--ran-for", "15"),
        ("--jobs", "1", "--ran-for", "1", "--gap", "0"),
    ),
    Benchmark(
        "recovery",
        ("--jobs", "10", "--ai-seconds", "4", "--temporal-down", "10", "--db-down", "30"),
        ("--jobs", "1", "--ai-seconds", "1", "--temporal-down", "1", "--db-down", "1"),
        # A lost worker's call moves on after the heartbeat timeout: the smallest the settings allow.
        {"HEARTBEAT_TIMEOUT_SECONDS": "2", "HEARTBEAT_THROTTLE_SECONDS": "0.5"},
    ),
)
