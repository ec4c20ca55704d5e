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

_OWN_LOGGERS = ("cli", "pipeline", "report", "kubeflow", "components", "trainer", "ingest",
                "serving", "schema")
_RUNNING, _FINISHED = " is running.", " is finished."
_CACHED = "A cached execution "


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


class _Progress:
    """Component start times and whether LocalDagRunner reused a cached execution."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        self.cached: set[str] = set()
        self.current: str | None = None


class _ConsoleFilter(logging.Filter):
    """Passes our own loggers, LocalDagRunner's component start/finish lines, and errors."""

    def __init__(self, verbose: bool, progress: _Progress) -> None:
        super().__init__()
        self._verbose = verbose
        self._progress = progress

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.msg if isinstance(record.msg, str) else ""
        if message.startswith(_CACHED) and self._progress.current:
            # Components run one at a time: the cache hit belongs to the one running.
            self._progress.cached.add(self._progress.current)
        if self._verbose or record.name.split(".")[0] in _OWN_LOGGERS:
            return True
        if record.levelno >= logging.ERROR:
            return True
        return message.startswith("Component ") and message.endswith((_RUNNING, _FINISHED))


class _ProgressFormatter(logging.Formatter):
    """Turns 'Component X is finished.' into '[pipeline] X: done in 12.3s (cached)'."""

    def __init__(self, progress: _Progress) -> None:
        super().__init__("%(message)s")
        self._progress = progress

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.name.split(".")[0] == "absl" and message.startswith("Component "):
            name = message.removeprefix("Component ").removesuffix(_RUNNING).removesuffix(_FINISHED)
            progress = self._progress
            if message.endswith(_RUNNING):
                progress.started[name] = time.monotonic()
                progress.current = name
                return f"[pipeline] {name}: running"
            elapsed = time.monotonic() - progress.started.pop(name, time.monotonic())
            how = "cached" if name in progress.cached else "executed"
            return f"[pipeline] {name}: done in {elapsed:.1f}s ({how})"
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
    progress = _Progress()
    console.setFormatter(_ProgressFormatter(progress))
    console.addFilter(_ConsoleFilter(verbose, progress))
    handlers: list[logging.Handler] = [console]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        file_handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
        handlers.append(file_handler)
    for handler in handlers:
        setattr(handler, _HANDLER_MARK, True)
        root.addHandler(handler)
    absl_logging.set_verbosity(absl_logging.INFO)
