"""`python -m cli.probe URL`: exit 0 if URL answers 200 within a few seconds, else 1 and the reason on stderr.

The container health checks of docker-compose.yml use it (the slim image has no curl).
"""

from __future__ import annotations

import sys

import httpx

PROBE_TIMEOUT_SECONDS = 4.0


def probe(url: str) -> str | None:
    """None when ``url`` answers 200, else why not."""
    try:
        response = httpx.get(url, timeout=PROBE_TIMEOUT_SECONDS)
    except httpx.HTTPError as exc:
        return f"{url}: {type(exc).__name__}: {exc}"
    if response.status_code != 200:
        return f"{url}: HTTP {response.status_code} {response.text[:200]}"
    return None


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m cli.probe URL", file=sys.stderr)
        return 2
    failure = probe(args[0])
    if failure is not None:
        print(failure, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
