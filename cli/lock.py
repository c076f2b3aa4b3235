"""One `mandala dev` per data directory.

The lock is an exclusive `flock` on `<data-dir>/mandala-dev.lock`, which the kernel releases when the
process ends, however it ends; the file holds the owner's pid for the message. Holding it is what makes
a server found running on the data directory a leftover that may be stopped (cli.leftovers).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cli.processes import ServiceStartError

LOCK_FILE = "mandala-dev.lock"


@contextmanager
def data_dir_lock(data_dir: Path) -> Iterator[None]:
    """Hold the lock of `data_dir` for the block; ServiceStartError if another process holds it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / LOCK_FILE).open("a+") as file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            owner = file.read().strip() or "?"
            raise ServiceStartError(
                f"another mandala dev (pid {owner}) is using {data_dir}; "
                "stop it first or choose another --data-dir"
            ) from None
        file.truncate(0)
        file.write(f"{os.getpid()}\n")
        file.flush()
        yield  # closing the file releases the lock
