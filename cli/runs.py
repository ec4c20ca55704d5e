"""`runs`: the pipeline's past runs, from ML Metadata."""

from __future__ import annotations

import argparse
import json

from cli.common import EXIT_OK, metadata_path
from cli.options import add_store_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("runs", help="list past runs from ML Metadata",
                       epilog="example: python -m pipeline runs --json")
    add_store_args(p)
    p.set_defaults(handler=execute)


def execute(args: argparse.Namespace) -> int:
    from report.summary import list_runs

    runs = list_runs(metadata_path(args), args.pipeline_name)
    if args.json:
        print(json.dumps([json.loads(r.to_json()) for r in runs], indent=2))
        return EXIT_OK
    # A transfer run's recipe shows its backbone: transfer/efficientnet_lite0; a tuned run's
    # ends in +tuned (its trials: `runs --json`, the summary, the report), or +tuned,skipped
    # when the Trainer handed on the served model (--skip-if-unchanged). The TFLite
    # column: its mode, accuracy on the same split, and whether it went out with the version.
    print(f"{'run':28} {'spans':6} {'accuracy':>8} {'on':5} {'recipe':9}  {'blessed':7}  "
          f"{'tflite':26}  {'scored':>6}  pushed")
    for run in runs:
        failed = run.failed_components
        accuracy = f"{run.accuracy:.4f}" if run.accuracy is not None else "-"
        split = run.evaluation_split or "-"
        recipe = run.recipe or "-"
        if run.backbone:
            recipe = f"{recipe}/{run.backbone.backbone}"
        if run.tuning:  # the Trainer trained the best of the Tuner's trials, or handed on
            skipped = run.skip_if_unchanged is not None and run.skip_if_unchanged.skip
            recipe = f"{recipe}+tuned" + (",skipped" if skipped else "")
        blessed = {True: "yes", False: "no", None: "-"}[run.blessed]
        if failed:
            pushed = f"failed in {', '.join(failed)}"
        elif run.pushed:
            version = (run.pushed_destination or "").rsplit("/", 1)[-1]
            pushed = f"version {version}" + (" (already served)" if run.already_served else "")
        else:
            pushed = "no"
        spans = ",".join(map(str, run.spans)) if run.spans else "-"
        # Images the BulkInferrer stage scored (run --infer-data); "-": the run had none.
        scored = str(run.inference.rows) if run.inference else "-"
        print(f"{run.run_id:28} {spans:6} {accuracy:>8} {split:5} {recipe:9}  {blessed:7}  "
              f"{run.tflite_outcome():26}  {scored:>6}  {pushed}")
    return EXIT_OK
