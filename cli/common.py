"""What every command shares: exit codes, the console logger, where `run` kept its metadata."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from schema.errors import MissingInput

# "pipeline": the console shows this logger's messages (cli/logs.py) under every command.
log = logging.getLogger("pipeline")

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_DATA_REJECTED, EXIT_BUSY = 0, 1, 2, 3, 4


def metadata_path(args: argparse.Namespace) -> str:
    from pipeline.workspace import Workspace

    metadata = Workspace(args.root.resolve(), args.pipeline_name).metadata_path
    if not metadata.is_file():
        raise MissingInput(f"{metadata}: no runs of {args.pipeline_name!r} under "
                           f"{args.root} (pass the --root and --pipeline-name of `run`)")
    return str(metadata)


def print_report_path(report: Path | None) -> None:
    if report:
        print(f"Report: {report}")
