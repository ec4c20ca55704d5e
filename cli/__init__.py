"""`python -m pipeline <command>` (or `tfx-image`): ingest, run, predict, infer, compile-kfp,
runs, lineage, report, schema. One module per command (add_parser + execute); cli/main.py assembles
them.

Heavy imports (TensorFlow, TFX) happen inside the commands, so `--help` and `ingest` start fast.
"""

from cli.common import EXIT_BAD_INPUT, EXIT_BUSY, EXIT_DATA_REJECTED, EXIT_FAILED, EXIT_OK
from cli.main import COMMANDS, build_parser, main

__all__ = ["COMMANDS", "EXIT_BAD_INPUT", "EXIT_BUSY", "EXIT_DATA_REJECTED", "EXIT_FAILED",
           "EXIT_OK", "build_parser", "main"]
