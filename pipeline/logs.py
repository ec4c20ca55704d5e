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
_RUNNING, _FINISHED = " is running.", " is finished."


def quiet_third_party(verbose: bool = False) -> None:
    """Call before TensorFlow is imported: TF's C++ logs and FutureWarnings off."""
    if not verbose:
        # Level 3 also hides the harmless "Unable to register cuDNN factory" errors printed at
        # import on CPU machines; real failures still surface as Python exceptions.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings(
        "ignore", category=UserWarning, module="(tensorflow|keras|tfx|apache_beam).*"
    )


class _ConsoleFilter(logging.Filter):
    """Passes our own loggers, LocalDagRunner's component start/finish lines, and errors."""

    def __init__(self, verbose: bool) -> None:
        super().__init__()
        self._verbose = verbose

    def filter(self, record: logging.LogRecord) -> bool:
        if self._verbose or record.name.split(".")[0] in _OWN_LOGGERS:
            return True
        if record.levelno >= logging.ERROR:
            return True
        message = record.msg if isinstance(record.msg, str) else ""
        return message.startswith("Component ") and message.endswith((_RUNNING, _FINISHED))


class _ProgressFormatter(logging.Formatter):
    """Turns 'Component X is finished.' into '[pipeline] X: done in 12.3s (cached)'."""

    def __init__(self) -> None:
        super().__init__("%(message)s")
        self._started: dict[str, float] = {}

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.name.split(".")[0] == "absl" and message.startswith("Component "):
            name = message.removeprefix("Component ").removesuffix(_RUNNING).removesuffix(_FINISHED)
            if message.endswith(_RUNNING):
                self._started[name] = time.monotonic()
                return f"[pipeline] {name}: running"
            elapsed = time.monotonic() - self._started.pop(name, time.monotonic())
            return f"[pipeline] {name}: done in {elapsed:.1f}s"
        return super().format(record)


_HANDLER_MARK = "_tfx_image_handler"


def configure(log_file: Path | None = None, verbose: bool = False) -> None:
    # absl adds its own stderr handler to the root logger on import; import it first so it can
    # be removed below and its records flow through our handlers instead.
    from absl import logging as absl_logging

    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for handler in list(root.handlers):
        if getattr(handler, _HANDLER_MARK, False) or isinstance(handler, absl_logging.ABSLHandler):
            root.removeHandler(handler)
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(_ProgressFormatter())
    console.addFilter(_ConsoleFilter(verbose))
    handlers: list[logging.Handler] = [console]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(log_file)
        file_handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
        handlers.append(file_handler)
    for handler in handlers:
        setattr(handler, _HANDLER_MARK, True)
        root.addHandler(handler)
    absl_logging.set_verbosity(absl_logging.INFO)
