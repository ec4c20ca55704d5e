"""`report`: the HTML report of a run (report/), the latest one by default."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.common import EXIT_OK, metadata_path, print_report_path
from cli.options import add_store_args
from schema.errors import BadInput


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write the HTML report of a run (default: the latest)",
                       description="A self-contained HTML report of one run: dataset, data "
                                   "validation and drift, training curves, evaluation against "
                                   "the baseline with the blessing, the misclassified images "
                                   "of the evaluated split (test, or eval without one) with "
                                   "their files, and where the model was pushed. `run` writes "
                                   "it too. Artifacts deleted since the run are named, and the "
                                   "rest is shown.",
                       epilog="examples:\n  python -m pipeline report\n"
                              "  python -m pipeline report --run 2026-11-22T20:49:46.582627 "
                              "--output /tmp/report\n"
                              "  python -m pipeline report --json | jq .evaluation.accuracy",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", metavar="RUN_ID",
                   help="a run id as `runs` lists it (default: the latest run)")
    p.add_argument("--output", type=Path,
                   help="folder for report.html, report.json and the PNGs "
                        "(default <root>/reports/<pipeline-name>/<run>/)")
    p.add_argument("--max-eval-images", type=int, default=2000,
                   help="images of the evaluated split (test, or eval without one) searched "
                        "for misclassifications (default %(default)s)")
    add_store_args(p)
    p.set_defaults(handler=execute)


def execute(args: argparse.Namespace) -> int:
    from pipeline.workspace import Workspace
    from report import RunReport, collect, write_report

    try:
        report = collect(metadata_path(args), args.pipeline_name, args.run)
    except LookupError as e:
        raise BadInput(f"{e} (see `python -m pipeline runs`)") from e
    out_dir = args.output or Workspace(args.root.resolve(), args.pipeline_name).report_dir(
        report.run_id
    )
    path = write_report(report, out_dir, max_eval_images=args.max_eval_images)
    if args.json:
        print(RunReport.read(path.parent).to_json(), end="")
    else:
        print_report_path(path)
    return EXIT_OK
