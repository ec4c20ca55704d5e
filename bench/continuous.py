"""Continuous training on MNIST spans: warm start from the served model against from scratch.

    python bench/continuous.py              # writes bench/results/continuous.json

MNIST's 60,000 training images (../shared/datasets) are dealt into 3 spans of 20,000, each
with MNIST's 10,000 test images as its test split, and ingested with `ingest --span auto`.
Every run is `run --data ROOT --spans 2` (`--recipe auto`): the Trainer fits the train images
of the newest span and the one before it, early-stops on the newest span's eval split, and
the Evaluator scores its test split. Tracks, each in its own pipeline root and serving dir:
  - scratch: every span trained from scratch;
  - warm: span 1's model is the scratch track's (its serving dir copied); spans 2 and 3
    with `--warm-start`, from the model the track served after the previous span.
The share of the epochs a warm start trains (`warm_start_epochs`) is chosen on span 2's eval
split, never on test: each of --warm-fractions runs as its own warm track, and the smallest
whose eval accuracy (the Trainer's, early stopping's split) is within 0.1 points of the
scratch run's goes on to span 3. Per span and track: test accuracy (the Evaluator's), eval
accuracy, Trainer and fit seconds, epochs, blessed, pushed, and what the warm start started
from. Target: warm start within 0.1 points of from-scratch test accuracy in at most
40 % of its Trainer seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    SHARED_DATASETS,
    SHARED_TARBALLS,
    git_commit,
    machine_info,
    relative,
    run_cli,
    shared_dataset,
    write_result,
)

RESULT_NAME = "continuous"
SPANS = 3
TARGET = {"max_accuracy_gap_points": 0.1, "max_trainer_time_share": 0.4}


def deal_spans(mnist: Path, work: Path) -> list[Path]:
    """SPANS folders of symlinks: train/ gets every SPANS-th image by path hash, test/ all."""
    folders = [work / f"mnist-span-{i + 1}" for i in range(SPANS)]
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
    for image in sorted((mnist / "train").glob("*/*")):
        digest = hashlib.sha256(str(image.relative_to(mnist)).encode()).digest()
        target = folders[digest[0] % SPANS] / "train" / image.parent.name / image.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(image.resolve())
    for folder in folders:
        (folder / "test").symlink_to((mnist / "test").resolve(), target_is_directory=True)
    return folders


def pipeline(args: list[str]) -> dict:
    seconds, output = run_cli(args)
    return {"seconds": seconds,
            "json": json.loads(output[output.index("{"):]) if "--json" in args else None}


def run_span(track: str, data: Path, work: Path, window: int, warm: float | None) -> dict:
    """One run of a track; warm: the warm_start_epochs share, None for from scratch."""
    root, serving = work / f"root-{track}", work / f"serving-{track}"
    flags = ["run", "--data", str(data), "--root", str(root), "--serving-dir", str(serving),
             "--pipeline-name", "continuous", "--model-name", "mnist", "--json",
             "--spans", str(window)]
    if warm is not None:
        flags += ["--warm-start", "--set", f"warm_start_epochs={warm}"]
    result = pipeline(flags)
    summary = result["json"]
    record = json.loads((Path(summary["tensorboard_dir"]) / "history.json").read_text())
    components = {c["name"]: round(c["seconds"], 1) for c in summary["components"]}
    warm_start = record.get("warm_start")
    if warm_start and warm_start.get("from"):
        warm_start = {**warm_start, "from": relative(warm_start["from"])}
    return {
        "spans": summary.get("spans"),
        "test_accuracy": summary["accuracy"],
        "eval_accuracy": record["final_eval_accuracy"],
        "warm_start_epochs": warm,
        "baseline_accuracy": summary["baseline_accuracy"],
        "trainer_seconds": components["Trainer"],
        "fit_seconds": record["fit_seconds"],
        "epochs": len(record["history"].get("loss", [])),
        "first_epoch_loss": (record["history"].get("loss") or [None])[0],
        "recipe": record["config"]["recipe"],
        "warm_start": warm_start,
        "blessed": summary["blessed"],
        "pushed": summary["pushed"],
        "wall_seconds": result["seconds"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, default=Path(__file__).parent / ".work")
    parser.add_argument("--spans", type=int, default=2, help="the rolling window (run --spans)")
    parser.add_argument("--warm-fractions", default="0.2,0.4",
                        help="warm_start_epochs values tried on span 2 (chosen on eval)")
    args = parser.parse_args()
    fractions = sorted(float(f) for f in args.warm_fractions.split(","))
    commit = git_commit()
    work = args.work_dir.resolve()
    mnist = shared_dataset(work, "mnist")
    scratch_work = work / "continuous"
    shutil.rmtree(scratch_work, ignore_errors=True)
    scratch_work.mkdir(parents=True)
    data = scratch_work / "data"
    spans = deal_spans(mnist, scratch_work)
    result = {
        "what": __doc__.split("\n\n")[0],
        "source": relative(SHARED_DATASETS / SHARED_TARBALLS["mnist"][0]),
        "commit": commit,
        "machine": machine_info(),
        "target": TARGET,
        "window": args.spans,
        "warm_fractions_tried": fractions,
        "spans": {},
    }
    chosen = None
    for number, folder in enumerate(spans, start=1):
        pipeline(["ingest", str(folder), str(data), "--span", "auto"])
        entry: dict = {"scratch": run_span("scratch", data, scratch_work, args.spans, None)}
        if number == 1:
            # Every warm track starts from the same first model: a copy of the serving dir
            # (its own pipeline root starts at span 2).
            for fraction in fractions:
                shutil.copytree(scratch_work / "serving-scratch",
                                scratch_work / f"serving-warm-{fraction}")
        else:
            scratch = entry["scratch"]
            tried = fractions if chosen is None else [chosen]
            for fraction in tried:
                entry[f"warm-{fraction}"] = run_span(f"warm-{fraction}", data, scratch_work,
                                                     args.spans, fraction)
            if chosen is None:
                # On the eval split only: the smallest share within 0.1 points of scratch.
                close = [f for f in fractions
                         if (scratch["eval_accuracy"] - entry[f"warm-{f}"]["eval_accuracy"]) * 100
                         <= TARGET["max_accuracy_gap_points"]]
                chosen = close[0] if close else fractions[-1]
                result["warm_start_epochs_chosen"] = {
                    "value": chosen, "on": "span 2 eval split",
                    "eval_gap_points": {str(f): round((scratch["eval_accuracy"] - entry[
                        f"warm-{f}"]["eval_accuracy"]) * 100, 3) for f in fractions}}
            warm = entry[f"warm-{chosen}"]
            gap = (scratch["test_accuracy"] - warm["test_accuracy"]) * 100
            share = warm["trainer_seconds"] / scratch["trainer_seconds"]
            entry["comparison"] = {
                "warm_start_epochs": chosen,
                "accuracy_gap_points": round(gap, 3),
                "trainer_time_share": round(share, 3),
                "met": gap <= TARGET["max_accuracy_gap_points"]
                and share <= TARGET["max_trainer_time_share"],
            }
        result["spans"][str(number)] = entry
        print(json.dumps(entry, indent=2), flush=True)
        write_result(RESULT_NAME, result)


if __name__ == "__main__":
    main()
