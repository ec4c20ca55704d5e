"""Who holds a lock, written into the lock file: what a refused process tells its user.

Shared by the run lock (pipeline/lock.py), the Pusher's lock on a model directory
(components/push_lock.py) and ingest's lock on its output (ingest/output.py), so all name their
holder the same way. It lives in ingest/, the lowest package that takes a lock, so that every
package above may import it.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from typing import IO


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
