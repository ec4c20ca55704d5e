"""One run at a time per pipeline: an exclusive lock next to the pipeline's MLMD store.

Two LocalDagRunner runs on one pipeline root would race on the SQLite store, the cache and the
serving directory. The second run is refused with the holder's pid and start time. The lock is
ingest/lock_holder.py's `exclusive`: a kernel file lock (flock) that is released when its
process ends, even when killed, so a crashed run never leaves a stale lock behind, and that
records its holder for a refused run to read.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from ingest.lock_holder import describe_holder, exclusive
from schema.errors import Explained, Setting


class RunLockedError(Explained, RuntimeError):
    """Another run holds the pipeline's lock (the CLI exits 4); it names the run root setting."""


@contextlib.contextmanager
def run_lock(path: Path, description: str) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)

    def busy(holder: dict) -> RunLockedError:
        return RunLockedError(
            f"{description} is already running ({describe_holder(holder)}, lock {path}). Wait "
            "for it to finish, or use another ", Setting("run.root"), ".")

    with exclusive(path, busy):
        yield
