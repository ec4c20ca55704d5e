"""Quiet console, complete log file.

TensorFlow, absl and Beam log thousands of lines per run. The console shows our own messages,
one progress line per component and errors; everything at INFO goes to a log file.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path

_OWN_LOGGERS = ("cli", "pipeline", "report", "kubeflow", "components", "trainer", "ingest",
                "serving", "schema")


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


# Tracebacks for the log file only (cli/run.py logs each failure's here).
TRACE_LOGGER = "pipeline.trace"


def _own(record: logging.LogRecord) -> bool:
    return record.name.split(".")[0] in _OWN_LOGGERS


class _ConsoleFilter(logging.Filter):
    """Passes our own loggers (progress lines included, cli/progress.py) and errors."""

    def __init__(self, verbose: bool) -> None:
        super().__init__()
        self._verbose = verbose

    def filter(self, record: logging.LogRecord) -> bool:
        if self._verbose:
            return True
        if record.name == TRACE_LOGGER:
            return False
        return _own(record) or record.levelno >= logging.ERROR


class _ConsoleFormatter(logging.Formatter):
    """The message alone; without -v never a traceback, and one line of a library's error.

    TFX logs a failed component's whole traceback at ERROR ("Execution N failed"), and Beam
    quotes workers' tracebacks inside its messages: the log file keeps them, while the console
    shows their first line beside our own one-line error that says where the log is.
    """

    def __init__(self, verbose: bool) -> None:
        super().__init__("%(message)s")
        self._verbose = verbose

    def format(self, record: logging.LogRecord) -> str:
        if self._verbose:
            return super().format(record)
        message = record.getMessage()
        if _own(record):
            return message
        return (message.strip().splitlines() or [""])[0][:500]


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
    console.setFormatter(_ConsoleFormatter(verbose))
    console.addFilter(_ConsoleFilter(verbose))
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
    # TensorFlow gives its logger a stderr handler of its own when it is imported before the
    # root logger has one (a caller that imported it first): its records take our handlers.
    for handler in list(logging.getLogger("tensorflow").handlers):
        logging.getLogger("tensorflow").removeHandler(handler)
    absl_logging.set_verbosity(absl_logging.INFO)


def log_file() -> Path | None:
    """The file this command logs to (`run` keeps one per run), or None when it keeps none.

    The CLI names it in its one-line error for an unexpected failure, so the traceback the
    console leaves out can be found.
    """
    for handler in logging.getLogger().handlers:
        if getattr(handler, _HANDLER_MARK, False) and isinstance(handler, logging.FileHandler):
            return Path(handler.baseFilename)
    return None
