"""`python -m cli.api_server --fd N`: one API process serving a listening socket it inherited.

`mandala dev` binds the API port once and hands the socket to each API process it starts, so that
`--api-workers N` processes share the port (the kernel spreads connections over them) and a restarted
process takes over at once: connections that arrive meanwhile wait in the socket's backlog instead of
being refused.
"""

from __future__ import annotations

import argparse
import socket
from collections.abc import Sequence

import uvicorn

# A bounded graceful shutdown, so that open event streams cannot hold up a stop.
GRACEFUL_SHUTDOWN_SECONDS = 5


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cli.api_server", description=__doc__)
    parser.add_argument("--fd", type=int, required=True, help="the inherited listening socket")
    args = parser.parse_args(argv)
    config = uvicorn.Config(
        "api.asgi:app", access_log=False, timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS
    )
    uvicorn.Server(config).run(sockets=[socket.socket(fileno=args.fd)])


if __name__ == "__main__":
    main()
