"""Ingest's worker processes die with it, and a pid's liveness, for cleaning up after a kill.

A worker left behind by a killed ingest would block for ever (on a read, or on a result queue
no one reads); Linux's parent-death signal kills it with its parent instead. Ctrl-C reaches the
whole process group: workers ignore it, and the parent stops them, so the user sees one line,
not a traceback per worker.
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor

_PR_SET_PDEATHSIG = 1


@functools.cache
def libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def pid_running(pid: int) -> bool:
    """Whether a process with this pid exists on this machine (a recycled pid counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def init_worker(parent: int) -> None:
    """The pool initializer: ignore Ctrl-C, and get SIGKILL when the parent dies (Linux).

    A parent that died before prctl took effect is checked for afterwards.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform != "linux":
        return
    libc().prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent and not pid_running(parent):
        os._exit(1)


def new_pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=workers, initializer=init_worker,
                               initargs=(os.getpid(),))


def kill_workers(pool: ProcessPoolExecutor) -> None:
    """Cancels the jobs not started and kills the workers: shutting down would wait for each
    running job, for ever if one is blocked on a read. Python 3.11's pool has no public way to
    kill its workers (3.14 adds kill_workers), hence its private process table.
    """
    for process in list((pool._processes or {}).values()):
        process.kill()
    pool.shutdown(wait=True, cancel_futures=True)  # returns once it has seen them die
