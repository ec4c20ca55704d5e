"""Starts the multi-worker training process from run_fn and makes its failure run_fn's failure.

The process (trainer/multi_worker.py) inherits the environment, TF_CONFIG included. Its stderr
carries the progress lines: they are logged here as they come (the CLI shows them and keeps
them in its log file), and the last ones go into the
error when it fails, so the Trainer's log says why without digging for the child's.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

WORKER_MODULE = "trainer.multi_worker"
_TAIL_LINES = 40
# The directory holding the `trainer` package, whatever put it on this process's sys.path.
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)

log = logging.getLogger(__name__)


class WorkerFailed(RuntimeError):
    """The training process exited non-zero; the message has its exit code and last lines."""


def worker_command(args: Sequence[str], module: str = WORKER_MODULE) -> list[str]:
    return [sys.executable, "-m", module, *args]


def worker_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """`env` (default: ours) with the `trainer` package's root first on PYTHONPATH.

    TFX may have imported run_fn from a path only its own sys.path knows; the child must import
    the same code.
    """
    env = dict(os.environ if env is None else env)
    paths = [_PACKAGE_ROOT, *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


def _describe(returncode: int) -> str:
    if returncode < 0:
        try:
            name = f" ({signal.Signals(-returncode).name})"
        except ValueError:
            name = ""
        return f"was killed by signal {-returncode}{name}"
    return f"exited with code {returncode}"


def run_worker(args: Sequence[str], env: Mapping[str, str] | None = None,
               module: str = WORKER_MODULE, what: str = "multi-worker training process",
               on_start: Callable[[subprocess.Popen], None] | None = None,
               on_end: Callable[[subprocess.Popen], None] | None = None) -> None:
    """Runs `python -m trainer.multi_worker ARGS` (or `module`) to the end; raises WorkerFailed
    if it fails. `on_start` and `on_end` get the process (to end it from another thread).
    """
    tail: deque[str] = deque(maxlen=_TAIL_LINES)
    with subprocess.Popen(
        worker_command(args, module), env=worker_env(env), stderr=subprocess.PIPE, text=True,
        errors="replace", bufsize=1,
    ) as process:
        if on_start is not None:
            on_start(process)
        try:
            assert process.stderr is not None
            for line in process.stderr:
                log.info("%s", line.rstrip("\n"))
                tail.append(line)
            returncode = process.wait()
        finally:
            if process.poll() is None:  # we are being interrupted: do not leave it training
                process.kill()
            if on_end is not None:
                on_end(process)
    if returncode != 0:
        raise WorkerFailed(
            f"{what} (python -m {module}) {_describe(returncode)}; "
            f"last {len(tail)} lines of its stderr:\n{''.join(tail)}"
        )
