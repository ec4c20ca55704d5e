"""Quiet console, complete log file.

TensorFlow, absl and Beam log thousands of lines per run. The console shows our own messages,
one progress line per component and errors; everything at INFO goes to a log file.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from pathlib import Path

_OWN_LOGGERS = ("pipeline", "trainer", "components", "kubeflow")


def quiet_third_party() -> None:
    """Call before TensorFlow is imported: C++ INFO/WARNING logs and FutureWarnings off."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings(
        "ignore", category=UserWarning, module="(tensorflow|keras|tfx|apache_beam).*"
    )


class _ConsoleFilter(logging.Filter):
    """Own loggers at INFO, component start/finish as progress lines, everything else >= ERROR."""

    def __init__(self, verbose: bool) -> None:
        super().__init__()
        self._verbose = verbose
        self._started: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if self._verbose:
            return True
        if record.name.split(".")[0] in _OWN_LOGGERS:
            return True
        message = record.getMessage()
        if message.startswith("Component ") and message.endswith((" is running.", " is finished.")):
            name = message.split(" ")[1]
            if message.endswith("running."):
                self._started[name] = time.monotonic()
                record.msg, record.args = "[pipeline] %s: running", (name,)
            else:
                elapsed = time.monotonic() - self._started.get(name, time.monotonic())
                record.msg, record.args = "[pipeline] %s: done in %.1fs", (name, elapsed)
            return True
        return record.levelno >= logging.ERROR


def configure(log_file: Path | None = None, verbose: bool = False) -> None:
    # absl adds its own stderr handler to the root logger on import; import it first so the
    # handler reset below removes it, and its records flow through our handlers.
    from absl import logging as absl_logging

    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter("%(message)s"))
    console.addFilter(_ConsoleFilter(verbose))
    root.addHandler(console)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file)
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
        root.addHandler(handler)
    absl_logging.set_verbosity(absl_logging.INFO)
