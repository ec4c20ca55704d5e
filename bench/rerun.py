"""Runs when little changed, on the built-in digits: cached re-runs and --skip-if-unchanged.

    python bench/rerun.py                   # writes bench/results/rerun.json

The 1,797 scikit-learn digits, written as an image folder once, then:
  1. first: `run --data FOLDER` in a fresh root (everything executes);
  2. cached: the same command again (TFX's cache; the gate and the Evaluator always run);
  3. same images as spans: the folder ingested as span 1 of a data root, `run
     --skip-if-unchanged` (trains), then the same images as span 2 and the same command
     (every component executes on the new span; the Trainer hands on the served model).
Per run: wall seconds of the whole `run` process, per-component seconds, what the Trainer did.
Target: the cached re-run of an unchanged span < 30 s on the digits.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import git_commit, machine_info, relative, run_cli, write_result  # noqa: E402

RESULT_NAME = "rerun"
TARGET_SECONDS = 30


def timed_run(data: Path, root: Path, serving: Path, *extra: str) -> dict:
    seconds, output = run_cli(["run", "--data", str(data), "--root", str(root),
                                "--serving-dir", str(serving), "--model-name", "digits",
                                "--json", *extra])
    summary = json.loads(output[output.index("{"):])
    decision = summary.get("skip_if_unchanged")
    if decision and decision.get("from"):
        decision = {**decision, "from": relative(decision["from"])}
    return {
        "wall_seconds": seconds,
        "components": {c["name"]: [c["state"], round(c["seconds"], 1)]
                       for c in summary["components"]},
        "accuracy": summary["accuracy"],
        "already_served": summary["already_served"],
        "skip_if_unchanged": decision,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, default=Path(__file__).parent / ".work")
    args = parser.parse_args()
    commit = git_commit()
    work = args.work_dir.resolve() / "rerun"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    from ingest.builtin import write_digits_folder

    images = write_digits_folder(work / "images")
    result = {"what": __doc__.split("\n\n")[0], "commit": commit, "machine": machine_info(),
              "target_seconds": TARGET_SECONDS, "runs": {}}
    runs = result["runs"]
    folder = (images, work / "root-folder", work / "serving-folder")
    runs["first"] = timed_run(*folder)
    runs["cached"] = timed_run(*folder)

    spans = work / "spans"
    run_cli(["ingest", str(images), str(spans), "--span", "auto"])
    span_run = (spans, work / "root-spans", work / "serving-spans")
    runs["span 1, --skip-if-unchanged"] = timed_run(*span_run, "--skip-if-unchanged")
    run_cli(["ingest", str(images), str(spans), "--span", "auto"])
    runs["span 2 = span 1's images, --skip-if-unchanged"] = timed_run(
        *span_run, "--skip-if-unchanged")
    runs["span 2 again, cached"] = timed_run(*span_run, "--skip-if-unchanged")
    result["met"] = runs["cached"]["wall_seconds"] < TARGET_SECONDS
    for name, run in runs.items():
        print(f"{name:48} {run['wall_seconds']:6.1f} s", flush=True)
    write_result(RESULT_NAME, result)


if __name__ == "__main__":
    main()
