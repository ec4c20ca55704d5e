"""Our progress lines on stderr in processes that no CLI set logging up for.

Library code logs through `logging` (one logger per module); `python -m pipeline` routes those
records (cli/logs.py). The multi-worker training process and the benchmarks that call `train`
directly have no such set-up, and Python's default would drop INFO records: this gives them the
lines `[trainer] epoch ...` as the CLI shows them.
"""

from __future__ import annotations

import logging
import sys

OWN_PACKAGES = ("trainer", "serving", "schema")


def log_to_stderr() -> None:
    """Our packages' records, message alone, on this process's stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    for name in OWN_PACKAGES:
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False  # not twice through absl's root handler
