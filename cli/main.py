"""The `mandala` command: `mandala dev` runs the whole system locally, `mandala token` prints a dev JWT;
the client commands (generate, jobs, show, all) live in cli/client/."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from api.dev_tokens import dev_token_for
from cli import dev
from cli.argtypes import positive_int
from cli.client import commands as client
from cli.processes import exit_now
from settings import get_settings

_MAX_SUBJECT_LENGTH = 255  # users.subject is varchar(255)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "token":
        return _token(args)
    if args.command in client.COMMANDS:
        return client.run(args)
    dev.check_arguments(parser, args)
    exit_now(dev.run(args))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mandala", description="Goal-mandala generation service tools.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    token = commands.add_parser(
        "token",
        help="print a development JWT (AUTH_MODE=hs256)",
        description="Print an HS256 JWT signed with JWT_SECRET, and nothing else, on stdout.",
    )
    token.add_argument("--sub", required=True, type=_subject, help="the user id (JWT `sub` claim)")
    token.add_argument("--expires-in", type=positive_int, default=3600, metavar="SECONDS")

    dev.add_arguments(
        commands.add_parser(
            "dev",
            help="run PostgreSQL, Temporal, the worker and the API locally",
            description="Run the whole system and restart any part that dies; DATABASE_URL / "
            "TEMPORAL_ADDRESS, when set, replace the embedded PostgreSQL / Temporal dev server. Data "
            "persists in --data-dir. Ctrl+C stops everything.",
        )
    )
    client.register(commands)
    return parser


def _subject(value: str) -> str:
    value = value.strip()
    if not value or len(value) > _MAX_SUBJECT_LENGTH:
        raise argparse.ArgumentTypeError(f"must be 1 to {_MAX_SUBJECT_LENGTH} characters")
    return value


def _token(args: argparse.Namespace) -> int:
    try:
        settings = get_settings()
    except ValidationError as exc:
        print(f"mandala token: invalid configuration: {exc}", file=sys.stderr)
        return 1
    if settings.auth_mode != "hs256":
        print("mandala token: development tokens need AUTH_MODE=hs256", file=sys.stderr)
        return 1
    print(dev_token_for(settings, args.sub, args.expires_in))
    return 0


if __name__ == "__main__":
    sys.exit(main())
