"""`run`: the pipeline on this machine (LocalDagRunner), one run per pipeline root at a time."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from cli import logs
from cli.common import EXIT_BUSY, EXIT_DATA_REJECTED, EXIT_FAILED, EXIT_OK, log, print_report_path
from cli.options import add_ingest_args, add_pipeline_args, add_span_args
from cli.progress import RunProgress
from cli.run_config import pipeline_config, refuse_overlaps


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ingest.builtin import DIGITS
    from pipeline.config import DEFAULT_LOCAL_BEAM, DEFAULT_ROOT, LOCAL_BEAM_PRESETS
    from trainer.config import ContinuityConfig

    warm_start_epochs = ContinuityConfig().warm_start_epochs

    p = sub.add_parser("run", help="run the pipeline locally (LocalDagRunner)",
                       description="Build and run the pipeline with LocalDagRunner and a SQLite "
                                   "ML Metadata store; re-runs reuse TFX caching.",
                       epilog="examples:\n  python -m pipeline run\n"
                              "  python -m pipeline run --data ~/flowers --flip --epochs 40",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group()
    source.add_argument("--dataset", default=DIGITS, help="built-in dataset (default %(default)s)")
    source.add_argument("--data", type=Path,
                        help="an image folder, or TFRecords written by `ingest`")
    p.add_argument("--root", type=Path, default=Path(DEFAULT_ROOT),
                   help="pipeline root, metadata, data and logs (default %(default)s)")
    p.add_argument("--serving-dir", type=Path, default=Path("serving_model"),
                   help="TF Serving base dir; models go to <dir>/<model-name>/<version>/")
    add_ingest_args(p)
    p.add_argument("--no-cache", action="store_true", help="re-execute every component")
    add_span_args(p, "with --data ROOT of spans: train on span N (default: the newest)",
                  "with --data ROOT of spans: fit the train images of the K newest spans up to "
                  "it (a rolling window; default %(default)s). Statistics, the data gate, early "
                  "stopping and the evaluation use the newest span alone")
    p.add_argument("--warm-start", action="store_true",
                   help="start from the served model's weights when its class map and "
                        "architecture match (else from scratch, saying why), and train "
                        f"continuity.warm_start_epochs (default {warm_start_epochs:g}, "
                        "--set) of the epochs")
    p.add_argument("--beam", choices=tuple(LOCAL_BEAM_PRESETS), default=DEFAULT_LOCAL_BEAM,
                   help="where StatisticsGen, Transform and the Evaluator run: in this process "
                        "(default; fastest on 2 cores) or Beam worker processes, one "
                        "per core (direct-multi; with --tune, trials then also run side by "
                        "side, each in its own process)")
    p.add_argument("--json", action="store_true", help="print the run summary as JSON")
    add_pipeline_args(p)
    p.set_defaults(handler=execute)


def execute(args: argparse.Namespace) -> int:
    from cli.main import explain  # here: cli.main imports this module
    from pipeline.lock import RunLockedError, run_lock
    from pipeline.workspace import Workspace

    logs.configure(None, args.verbose)
    refuse_overlaps(args)  # before the root gets its first file
    workspace = Workspace(args.root.resolve(), args.pipeline_name)
    log_file = workspace.new_log_file()
    logs.configure(log_file, args.verbose)
    try:
        with run_lock(workspace.lock_path, f"pipeline {args.pipeline_name!r} in {args.root}"):
            return _run_pipeline(args, workspace, log_file)
    except RunLockedError as e:
        log.error("%s", explain(e))
        return EXIT_BUSY


def _run_pipeline(args: argparse.Namespace, workspace, log_file: Path) -> int:
    from cli.main import explain, flag_name  # here: cli.main imports this module
    from components.data_gate import DataValidationError
    from pipeline.local_runner import run_local
    from report.summary import format_summary, summarize_run

    start = time.monotonic()  # ingest included: it is part of what `run` does
    config = pipeline_config(args, workspace, log_file)
    _say_if_new_model(config, args.model_name is None)

    try:
        with RunProgress(config.metadata_path, config.pipeline_name):
            run_local(config)
    except DataValidationError as e:
        log.error("%s\nfull log: %s", explain(e), log_file)
        print_report_path(_write_run_report(workspace))
        return EXIT_DATA_REJECTED
    except Exception as e:  # noqa: BLE001 - reported with the log location, then exit 1
        failed = _failed_components(config.metadata_path, config.pipeline_name)
        where = f" in {', '.join(failed)}" if failed else ""
        log.error("pipeline failed%s: %s: %s\nfull log: %s", where, e.__class__.__name__,
                  explain(e), log_file)
        logging.getLogger(logs.TRACE_LOGGER).info("traceback", exc_info=True)
        print_report_path(_write_run_report(workspace))
        return EXIT_FAILED
    summary = summarize_run(config.metadata_path, config.pipeline_name)
    report = _write_run_report(workspace)
    if report:
        summary.report_files["html"] = str(report)
    if args.json:
        print(summary.to_json())
        return EXIT_OK
    for line in format_summary(summary, flag_name):
        print(line)
    if summary.pushed:
        print(f"Serve it: tensorflow_model_server --model_name={config.model_name} "
              f"--model_base_path={config.push_base_directory} --rest_api_port=8501")
    print(f"Wall time: {time.monotonic() - start:.0f}s. Full log: {log_file}")
    print_report_path(report)
    return EXIT_OK


def _say_if_new_model(config, name_defaulted: bool) -> None:
    """Before training: a model directory without a served version starts a new model.

    The model name defaults to the data folder's, so a new folder of the same classes
    (pets-v2/ after pets/) silently starts a model without a baseline or a class-map check;
    the run names the models it might have meant.
    """
    from cli.main import flag_name  # here: cli.main imports this module
    from serving.model_dir import new_model

    note = new_model(config.push_base_directory, config.trainer.class_names)
    if note is None:
        return
    first, *others = note.lines(flag_name)
    if name_defaulted:
        first += " (the model name defaults to the data's name; --model-name sets it)"
    log.log(logging.WARNING if others else logging.INFO, "[pipeline] %s",
            "\n[pipeline] ".join([first, *others]))


def _write_run_report(workspace) -> Path | None:
    """The latest run's HTML report; a failure to write it is logged, never fatal to the run."""
    from report import collect, write_report

    start = time.monotonic()
    try:
        report = collect(str(workspace.metadata_path), workspace.pipeline_name)
        path = write_report(report, workspace.report_dir(report.run_id))
    except Exception as e:  # noqa: BLE001 - the run's outcome stands; the report is extra
        log.warning("could not write the run report: %s: %s", e.__class__.__name__, e)
        logging.getLogger(logs.TRACE_LOGGER).info("traceback", exc_info=True)
        return None
    log.info("[pipeline] report: written in %.1fs", time.monotonic() - start)
    return path


def _failed_components(metadata_path: str, pipeline_name: str) -> list[str]:
    """Components of the latest run that failed, for the error message; [] if none recorded."""
    from report.summary import summarize_run

    try:
        return summarize_run(metadata_path, pipeline_name).failed_components
    except Exception:  # noqa: BLE001 - the store may not even exist yet
        return []
