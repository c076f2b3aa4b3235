"""`python -m cli.temporal_setup`: prepare the Temporal namespace the service uses, then exit.

docker compose runs it once per `up`, before the API and the workers; it is idempotent.

1. Registers the search attributes of `domain.workflow_io.SEARCH_ATTRIBUTES` with the `temporal` CLI
   (`temporal operator search-attribute create`, one call each), connected exactly like the service:
   the CLI reads the same TEMPORAL_* variables and TOML profile as `temporalio.envconfig`.
2. Creates or updates the housekeeping Schedules, so that the workers can run with
   SCHEDULES_ENABLED=false and no replica rewrites them at start-up.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from cli.processes import exit_now
from cli.temporal_server import cli_type, find_temporal_cli
from domain.workflow_io import SEARCH_ATTRIBUTES
from settings import Settings, get_settings
from temporal_client import connect_temporal, temporal_env

CLI_TIMEOUT_SECONDS = 60.0


def registration_commands(binary: Path) -> list[list[str]]:
    """One `temporal operator search-attribute create` per attribute: given several `--name`s and one
    `--type`, CLI 1.9 registers only the first name."""
    create = [str(binary), "operator", "search-attribute", "create"]
    return [[*create, "--name", key.name, "--type", cli_type(key)] for key in SEARCH_ATTRIBUTES]


def cli_env(settings: Settings) -> dict[str, str]:
    """This process's environment with the TEMPORAL_* variables replaced by the settings' ones."""
    inherited = {k: v for k, v in os.environ.items() if not k.upper().startswith("TEMPORAL_")}
    return {**inherited, **temporal_env(settings)}


def register_search_attributes(settings: Settings) -> None:
    for command in registration_commands(find_temporal_cli()):
        subprocess.run(command, env=cli_env(settings), check=True, timeout=CLI_TIMEOUT_SECONDS)
    print("search attributes registered:", ", ".join(key.name for key in SEARCH_ATTRIBUTES), flush=True)


async def create_schedules(settings: Settings) -> None:
    from worker import upsert_schedules  # the worker's modules load only for this step

    client = await connect_temporal(settings)
    await upsert_schedules(client, settings)
    print(f"schedules created or updated in namespace {client.namespace}", flush=True)


def main() -> int:
    try:
        settings = get_settings()
        register_search_attributes(settings)
        asyncio.run(create_schedules(settings))
    except Exception as exc:  # any failure is one line on stderr and exit code 1
        print(f"temporal setup failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    exit_now(main())
