"""One run at a time per pipeline: an exclusive lock next to the pipeline's MLMD store.

Two LocalDagRunner runs on one pipeline root would race on the SQLite store, the cache and the
serving directory. The second run is refused with the holder's pid and start time. The lock
is a kernel file lock (flock): it is released when its process ends, even when killed, so a
crashed run never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path


class RunLockedError(RuntimeError):
    pass


@contextlib.contextmanager
def run_lock(path: Path, description: str) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            try:
                holder = json.loads(handle.read() or "{}")
            except json.JSONDecodeError:
                holder = {}
            started = holder.get("started")
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if started else "?"
            raise RunLockedError(
                f"{description} is already running (pid {holder.get('pid', '?')}, started "
                f"{when}, lock {path}). Wait for it to finish, or use another --root."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "started": time.time(),
                                 "command": sys.argv}))
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)
