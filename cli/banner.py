"""What `mandala dev` prints once everything answers: where each part is and what to try first."""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

# A directive that fails the first job of a retry chain, so that a manual retry visibly succeeds.
DEMO_FAULT = "#fault:subgoal:server_error:job1"


@dataclass(frozen=True, slots=True)
class AiSetup:
    provider: str
    latency_ms: int  # the offline provider's delay per call
    faults: bool  # whether the offline provider honours #fault directives


@dataclass(frozen=True, slots=True)
class Endpoints:
    api_url: str
    api_processes: int
    temporal_address: str
    temporal_namespace: str
    ui_url: str | None
    metrics: tuple[tuple[str, str], ...]  # (what, URL); empty when not served as Prometheus
    metrics_note: str  # said instead of URLs when empty


def command(name: str) -> str:
    """How to run one of this environment's scripts from here: the bare name when it is on PATH, else the
    path of the `mandala` script's sibling (e.g. `.venv/bin/temporal`)."""
    script = Path(sys.argv[0])
    sibling = script.resolve().parent / name
    if script.name != "mandala" or shutil.which(name) == str(sibling):
        return name
    return os.path.relpath(script.parent / name)


def banner(endpoints: Endpoints, ai: AiSetup, data_dir: Path) -> str:
    api_url = endpoints.api_url
    token_command = f"{command('mandala')} token --sub demo-user"
    processes = f" ({endpoints.api_processes} processes)" if endpoints.api_processes > 1 else ""
    metrics = [f"{url} ({what})" for what, url in endpoints.metrics] or [endpoints.metrics_note]
    lines = [
        f"mandala dev is running (data in {data_dir})",
        f"  API:          {api_url}{processes}",
        f"  API docs:     {api_url}/docs",
        f"  Temporal:     {endpoints.temporal_address}",
        f"  Temporal UI:  {endpoints.ui_url or '(the external server has its own)'}",
        *_block("Metrics:", metrics),
        *_block("AI provider:", _ai_lines(ai)),
        f"  Get a token:  {token_command}",
        f'  Try:          curl -H "Authorization: Bearer $({token_command})" {api_url}/api/ai/async/history',
        *_block("Operators:", _operator_lines(endpoints)),
        "A process that dies is restarted. Press Ctrl+C to stop.",
    ]
    return "\n" + "\n".join(lines) + "\n"


def _block(title: str, lines: list[str]) -> list[str]:
    return [f"  {title:<14}{line}" if i == 0 else f"  {'':<14}{line}" for i, line in enumerate(lines)]


def _ai_lines(ai: AiSetup) -> list[str]:
    if ai.provider != "offline":
        return [f"{ai.provider} (AI_PROVIDER)"]
    lines = [f"offline (deterministic, no network, no keys), {ai.latency_ms} ms a call"]
    lines.append(f"slower, to watch progress and cancel:  {command('mandala')} dev --ai-latency-ms 3000")
    if ai.faults:
        lines.append(f"fail a job, then retry it:  put {DEMO_FAULT} in a goal title")
    else:
        lines.append("fault directives are off (AI_OFFLINE_FAULTS=false)")
    lines.append("directives and more: docs/operations.md, section 'The offline AI provider'")
    return lines


def _operator_lines(endpoints: Endpoints) -> list[str]:
    exports = [f"export TEMPORAL_ADDRESS={endpoints.temporal_address}"]
    if endpoints.temporal_namespace != "default":
        exports.append(f"export TEMPORAL_NAMESPACE={endpoints.temporal_namespace}")
    return [*exports, f"{command('temporal')} workflow list -q 'ProcessingStatus=\"FAILED\"'"]
