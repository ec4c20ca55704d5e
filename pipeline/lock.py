"""One run at a time per pipeline: an exclusive lock next to the pipeline's MLMD store.

Two LocalDagRunner runs on one pipeline root would race on the SQLite store, the cache and the
serving directory. The second run is refused with the holder's pid and start time.

The lock is filelock's FileLock, held as a kernel file lock (flock): it is released when its
process ends, even when killed, so a crashed run never leaves a stale lock behind. Where the
filesystem has no flock, filelock would fall back to a lock file that outlives a crash; that
is turned off (`fallback_to_soft=False`): such a filesystem gets an error, not a weaker lock.
The holder writes its record (ingest/lock_holder.py, shared with the Pusher's lock on a
model directory) into the lock file once it holds it; filelock never truncates it on a
contender's attempt, so a refused run can read it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import filelock

from ingest.lock_holder import claim, describe_holder, read_holder


class RunLockedError(RuntimeError):
    pass


@contextlib.contextmanager
def run_lock(path: Path, description: str) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(path, timeout=0, thread_local=False, fallback_to_soft=False,
                             preserve_lock_file=True, on_acquired=claim)
    try:
        lock.acquire()
    except filelock.Timeout:
        with open(path) as handle:
            holder = read_holder(handle)
        raise RunLockedError(
            f"{description} is already running ({describe_holder(holder)}, lock {path}). Wait "
            "for it to finish, or use another --root."
        ) from None
    try:
        yield
    finally:
        os.truncate(path, 0)
        lock.release()
