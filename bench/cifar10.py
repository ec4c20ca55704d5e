"""The full pipeline on the shared CIFAR-10 (50,000 train / 10,000 test JPEGs), measured.

    python bench/cifar10.py [--work-dir bench/.work] [--epochs N] [--skip-baseline]
                            [--recipe fast-muon]

Steps, all in one run on this machine:
  0. the host's float32 (and, where native, bfloat16) matrix-product rate, as
     bench/roofline.py measures it, before anything else runs;
  1. ingest the JPEG folders to TFRecords (images/s);
  2. run the pipeline with the "fast" recipe, or `--recipe`'s (`python -m pipeline run
     --recipe fast`), in a fresh pipeline root: per-component wall time from ML Metadata,
     Trainer time, Evaluator accuracy; the share of the whole run (ingest included) that is
     not fit time, and the training step's GFLOP/s as a share of the host's rate in the dtype
     the run computed in;
  3. run it again unchanged: the cached re-run's wall time;
  4. train the blog-tutorial CNN (bench/tutorial_cnn.py) on the same files for the same wall
     time as our Trainer: its accuracy next to ours, and the time ratio.
Writes bench/results/cifar10.json for the default recipe and schedule; another recipe or an
`--epochs` override writes cifar10-<recipe>[-<N>ep].json, so it never replaces the default's.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    REPO,
    cifar10_folder,
    git_commit,
    machine_info,
    measure_host_rates,
    peak_rss_mib,
    relative,
    run_not_fit_share,
    train_step_share,
    write_result,
)

PIPELINE = "cifar10-bench"


def _run_pipeline(args: argparse.Namespace, data: Path, root: Path, serving: Path) -> dict:
    command = [
        sys.executable, "-m", "pipeline", "run", "--json", "--recipe", args.recipe,
        "--data", str(data), "--root", str(root), "--serving-dir", str(serving),
        "--pipeline-name", PIPELINE, "--model-name", "cifar10",
        "--min-accuracy", str(args.min_accuracy),
    ]
    if args.epochs:
        command += ["--epochs", str(args.epochs)]
    print("$", " ".join(command), flush=True)
    start = time.monotonic()
    # stderr (progress lines) streams through; stdout carries the JSON summary.
    result = subprocess.run(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
    seconds = time.monotonic() - start
    if result.returncode != 0:
        raise SystemExit(f"pipeline run failed with exit code {result.returncode}")
    # The summary is the last top-level JSON object on stdout.
    start_of_json = 0 if result.stdout.startswith("{") else result.stdout.rfind("\n{\n") + 1
    summary = json.loads(result.stdout[start_of_json:])
    return {"wall_seconds": round(seconds, 1), "summary": summary}


def result_name(recipe: str, epochs: int | None) -> str:
    """The default recipe's file stays the one bench/README.md quotes; variants get their own."""
    if recipe == "fast" and not epochs:
        return "cifar10"
    return f"cifar10-{recipe}" + (f"-{epochs}ep" if epochs else "")


def _trainer_record(summary: dict) -> dict:
    history = Path(summary["tensorboard_dir"]) / "history.json"
    record = json.loads(history.read_text()) if history.is_file() else {}
    record.pop("history", None)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, default=Path(__file__).parent / ".work")
    parser.add_argument("--recipe", default="fast", help="the recipe to measure")
    parser.add_argument("--epochs", type=int, help="override the recipe's epochs")
    parser.add_argument("--min-accuracy", type=float, default=0.5)
    parser.add_argument("--skip-baseline", action="store_true",
                        help="skip the tutorial-CNN comparison (halves the run time)")
    args = parser.parse_args()
    commit = git_commit()  # the tree as the measurement starts, not as it ends
    rates = measure_host_rates()  # before ingest and the pipeline, in this process tree
    work = args.work_dir.resolve()
    src = cifar10_folder(work)

    from ingest.dataset import ingest

    tfrecords = work / "cifar10-tfrecords"
    shutil.rmtree(tfrecords, ignore_errors=True)
    start = time.monotonic()
    info = ingest(src, tfrecords)
    ingest_seconds = time.monotonic() - start
    images = sum(info.split_counts.values())
    print(f"ingest: {images} images in {ingest_seconds:.2f}s "
          f"({images / ingest_seconds:,.0f} images/s)", flush=True)

    root, serving = work / "root", work / "serving"
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(serving, ignore_errors=True)
    first = _run_pipeline(args, tfrecords, root, serving)
    second = _run_pipeline(args, tfrecords, root, serving)

    components = {c["name"]: c for c in first["summary"]["components"]}
    component_total = sum(c["seconds"] for c in components.values())
    trainer_seconds = components["Trainer"]["seconds"]
    pipeline_seconds = first["wall_seconds"] + ingest_seconds
    non_training = pipeline_seconds - trainer_seconds
    trainer = _trainer_record(first["summary"])
    result = {
        "recipe": args.recipe,
        "epochs_override": args.epochs,
        "dataset": {"source": relative(src), "split_counts": info.split_counts,
                    "image_shape": list(info.image_shape)},
        "ingest": {"images": images, "seconds": round(ingest_seconds, 2),
                   "images_per_second": round(images / ingest_seconds, 1)},
        "pipeline": {
            "wall_seconds_including_ingest": round(pipeline_seconds, 1),
            "run_wall_seconds": first["wall_seconds"],
            "component_seconds": {n: round(c["seconds"], 1) for n, c in components.items()},
            "component_seconds_total": round(component_total, 1),
            "trainer_seconds": round(trainer_seconds, 1),
            "non_training_seconds": round(non_training, 1),
            "non_training_share": round(non_training / pipeline_seconds, 3),
            "run_not_fit_share": run_not_fit_share(trainer.get("fit_seconds"), pipeline_seconds),
            "test_accuracy": first["summary"]["accuracy"],
            "per_class_accuracy": first["summary"]["per_class_accuracy"],
            "blessed": first["summary"]["blessed"],
            "pushed_destination": relative(first["summary"]["pushed_destination"]),
        },
        "trainer": trainer,
        "train_step": (train_step_share(trainer["config"], trainer.get("train_images_per_second"),
                                        rates) if "config" in trainer else None),
        "host_rates": rates.to_dict(),
        "cached_rerun": {
            "wall_seconds": second["wall_seconds"],
            "component_states": {c["name"]: c["state"]
                                 for c in second["summary"]["components"]},
        },
        "gpu": "none: this machine has no GPU (see machine.gpus)",
    }
    if not args.skip_baseline:
        from bench.tutorial_cnn import run as run_tutorial

        print(f"tutorial CNN baseline, {trainer_seconds:.0f}s training budget", flush=True)
        baseline = run_tutorial(src, trainer_seconds)
        result["tutorial_baseline"] = baseline
        result["comparison"] = {
            "our_test_accuracy": first["summary"]["accuracy"],
            "tutorial_test_accuracy": baseline["test_accuracy"],
            "pipeline_to_tutorial_time_ratio": round(
                pipeline_seconds / baseline["total_seconds"], 2),
        }
    result.update({"peak_rss_mib": peak_rss_mib(), "machine": machine_info(),
                   "commit": commit})
    write_result(result_name(args.recipe, args.epochs), result)
    print(json.dumps({k: result[k] for k in ("ingest", "pipeline", "cached_rerun")}, indent=2))
    if "comparison" in result:
        print(json.dumps(result["comparison"], indent=2))


if __name__ == "__main__":
    main()
