"""Who holds a lock, written into the lock file: what a refused process tells its user.

Shared by the run lock (pipeline/lock.py), the Pusher's lock on a model directory
(components/push_lock.py) and ingest's lock on its output (ingest/output.py), so all name their
holder the same way; `exclusive` is the kernel file lock the first and the last take. It lives
in ingest/, the lowest package that takes a lock, so that every package above may import it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import filelock


def holder_record() -> dict:
    """Who takes a lock: what a refused process needs to find the holder."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
            "command": sys.argv}


def claim(fd: int) -> None:
    """The on_acquired hook of filelock: our record in the lock file, in place of the last one."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(holder_record()).encode(), 0)


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
def exclusive(path: Path, busy: Callable[[dict], Exception], timeout: float = 0,
              remove: bool = False) -> Iterator[None]:
    """Hold path with a kernel file lock (flock) that records its holder; raise busy(holder)
    when another process holds it for longer than timeout.

    filelock's FileLock without its soft fallback: a lock file that outlives a crash would
    block every later run, so a filesystem without flock gets an error instead. The lock dies
    with its process, even when killed. When done, the record is emptied, or with remove the
    file is deleted if it still is the one held (a contender that opened it meanwhile finds it
    unlinked once it gets the flock, and filelock starts over).
    """
    held: list[os.stat_result] = []

    def on_acquired(fd: int) -> None:
        claim(fd)
        held.append(os.fstat(fd))

    lock = filelock.FileLock(path, timeout=timeout, thread_local=False, fallback_to_soft=False,
                             preserve_lock_file=True, on_acquired=on_acquired)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise busy(_holder_at(path)) from None
    try:
        yield
    finally:
        if remove:
            _unlink_if_same(path, held[-1])
        else:
            os.truncate(path, 0)
        lock.release()


def _holder_at(path: Path) -> dict:
    """The holder record of the lock file at path; {} when it is gone or unreadable."""
    try:
        with open(path) as handle:
            return read_holder(handle)
    except OSError:
        return {}


def _unlink_if_same(path: Path, held: os.stat_result) -> None:
    with contextlib.suppress(FileNotFoundError):
        if os.path.samestat(os.stat(path), held):
            os.unlink(path)
