"""One run at a time per pipeline: an exclusive lock next to the pipeline's MLMD store.

Two LocalDagRunner runs on one pipeline root would race on the SQLite store, the cache and the
serving directory. The second run is refused with the holder's pid and start time. The lock
is a kernel file lock (flock): it is released when its process ends, even when killed, so a
crashed run never leaves a stale lock behind.

holder_record, read_holder and describe_holder are shared with the Pusher's lock on a model
directory (components/push_lock.py), so both name their holder the same way.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO


class RunLockedError(RuntimeError):
    pass


def holder_record() -> dict:
    """Who takes a lock: what a refused process needs to find the holder."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
            "command": sys.argv}


def read_holder(handle: IO[str]) -> dict:
    """The holder record in a lock file; {} when it is empty or half written."""
    handle.seek(0)
    try:
        holder = json.loads(handle.read() or "{}")
    except json.JSONDecodeError:
        return {}
    return holder if isinstance(holder, dict) else {}


def describe_holder(holder: dict) -> str:
    started = holder.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if started else "?"
    return f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, started {when}"


def write_holder(handle: IO[str], holder: dict) -> None:
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps(holder))
    handle.flush()


@contextlib.contextmanager
def run_lock(path: Path, description: str) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLockedError(
                f"{description} is already running ({describe_holder(read_holder(handle))}, "
                f"lock {path}). Wait for it to finish, or use another --root."
            ) from None
        write_holder(handle, holder_record())
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)
