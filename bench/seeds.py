"""The seeds' datasets through the whole pipeline, with the defaults a new user gets.

    python bench/seeds.py                          # MNIST and CIFAR-10 from ../shared/datasets
    python bench/seeds.py --datasets mnist         # one of them
    python bench/seeds.py --data fashion=DIR       # any image folder, e.g. Fashion-MNIST PNGs
    python bench/seeds.py --datasets '' --data fashion=DIR --flags fashion=--allow-duplicates
    python bench/seeds.py --name seeds-bf16        # another host class, in a file of its own

First, before any pipeline run, the host's float32 (and, where native, bfloat16) matrix-product
rate, as bench/roofline.py measures it (bench/common.py measure_host_rates). Then for each
dataset, on this machine:
  1. `python -m pipeline run --data FOLDER` and no other flag (ingest included, --recipe auto;
     `--flags NAME=...` adds flags a dataset needs, such as Fashion-MNIST's --allow-duplicates
     for the 12 images it has in both train and test, and the entry's command shows them)
     in a fresh pipeline root: its wall time and peak RSS; per-component seconds from ML
     Metadata; test accuracy (the Evaluator, on the test split nothing was chosen on) and eval
     accuracy (the Trainer's, on the split early stopping looks at); the recipe chosen and why;
     training images/s and the share of the Trainer's time that is not fit time; the share
     of the whole run that is not fit time; the training step's GFLOP/s as a share of the
     host's rate in the dtype the run computed in;
  2. the blog-tutorial CNN (bench/tutorial_cnn.py) trained on the same files for the same wall
     time as the whole run, scored on the same test images.
Merges each dataset's entry into bench/results/seeds.json (`--name` another file: figures of
different host classes are not comparable, so they belong in different files), with the commit,
the machine (CPU vendor, family, model) and the host's rates.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    REPO,
    RESULTS,
    SHARED_DATASETS,
    SHARED_TARBALLS,
    HostRates,
    git_commit,
    machine_info,
    measure_host_rates,
    relative,
    run_not_fit_share,
    shared_dataset,
    train_step_share,
    write_result,
)
from trainer.config import TrainerConfig  # noqa: E402

RESULT_NAME = "seeds"
# The targets for each seed dataset with the defaults, on CPUs only (no GPU).
TARGETS = {
    "mnist": {"min_test_accuracy": 0.996, "max_wall_seconds": 300},
    "fashion": {"min_test_accuracy": 0.93, "max_wall_seconds": 600},
    # Zalando's official 60,000/10,000 split (scripts/fashion_mnist_official.py): issue 38.
    "fashion-official": {"min_test_accuracy": 0.935, "max_wall_seconds": 600},
    "cifar10": {"min_test_accuracy": 0.91, "max_trainer_seconds": 1200},
}


def run_pipeline(name: str, folder: Path, work: Path, flags: list[str]) -> dict:
    """One `run --data FOLDER --json` in a fresh root; wall time and the child's peak RSS."""
    root, serving = work / f"{name}-root", work / f"{name}-serving"
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(serving, ignore_errors=True)
    command = [sys.executable, "-m", "pipeline", "run", "--data", str(folder), "--json",
               "--root", str(root), "--serving-dir", str(serving),
               "--pipeline-name", f"seeds-{name}", *flags]
    print("$", " ".join(command), flush=True)
    start = time.monotonic()
    # stderr (progress lines) streams through; stdout carries the JSON summary.
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
    stdout = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - start
    if process.returncode != 0:
        raise SystemExit(f"{name}: pipeline run failed with exit code {process.returncode}")
    summary = json.loads(stdout[stdout.index("{"):])
    history = Path(summary["tensorboard_dir"]) / "history.json"
    record = json.loads(history.read_text())
    return {"wall_seconds": round(seconds, 1), "peak_rss_mib": round(usage.ru_maxrss / 1024),
            "summary": summary, "trainer": record}


def measure(name: str, folder: Path, work: Path, source: str, baseline: bool,
            flags: list[str], rates: HostRates) -> dict:
    run = run_pipeline(name, folder, work, flags)
    summary, record = run["summary"], run["trainer"]
    components = {c["name"]: round(c["seconds"], 1) for c in summary["components"]}
    config = record["config"]
    trained = TrainerConfig.from_dict(config)
    epochs = len(record["history"].get("loss", []))  # per network
    members = max(1, len(record.get("members") or []))
    trainer_seconds = components["Trainer"]
    # The record's: every network's epochs over the whole fit (an ensemble's networks too).
    images_per_second = record["train_images_per_second"] or 0.0
    entry = {
        "source": source,
        "command": shlex.join(["python", "-m", "pipeline", "run", "--data", relative(folder),
                               *flags]),
        "split_counts": {"train": record["num_train"], "eval": record["num_eval"],
                         "test": summary["eval_examples"]},
        "image_shape": config["image_shape"],
        "recipe": config.get("recipe"),
        "recipe_reason": config.get("recipe_reason"),
        "test_accuracy": summary["accuracy"],
        "accuracy_split": summary["evaluation_split"],
        "eval_accuracy": record["final_eval_accuracy"],
        "eval_accuracy_note": "the Trainer's last accuracy on the eval split, without test-time "
                              "augmentation (the split early stopping looks at)",
        "per_class_test_accuracy": summary["per_class_accuracy"],
        "blessed": summary["blessed"],
        "wall_seconds": run["wall_seconds"],
        "component_seconds": components,
        "trainer": {
            "seconds": trainer_seconds,
            "fit_seconds": record["fit_seconds"],
            "decode_seconds": record["decode_seconds"],
            "epochs": epochs,
            "members": members,
            "batch_size": trained.optimizer.batch_size,
            "precision": str(trained.runtime.precision),
            "train_images_per_second": round(images_per_second, 1),
            "not_fit_share": round(1 - record["fit_seconds"] / trainer_seconds, 3),
            "run_not_fit_share": run_not_fit_share(record["fit_seconds"], run["wall_seconds"]),
            "train_step": train_step_share(config, images_per_second, rates),
        },
        "peak_rss_mib": run["peak_rss_mib"],
        # The Evaluator's score of the TFLite file (mode, accuracy, size, batch-1 latency).
        "tflite": {key: summary["tflite"][key] for key in (
            "mode", "accuracy", "saved_model_accuracy", "size_bytes", "latency_ms_median")
            if key in summary["tflite"]} if summary.get("tflite") else None,
        "host_rates": rates.to_dict(),
    }
    targets = TARGETS.get(name)
    if targets:
        entry["targets"] = {**targets, "met": _met(entry, targets)}
    if baseline:
        from bench.tutorial_cnn import run as run_tutorial

        print(f"{name}: the tutorial CNN for the same {run['wall_seconds']:.0f}s", flush=True)
        tutorial = run_tutorial(folder, run["wall_seconds"])
        entry["tutorial_baseline"] = tutorial
        entry["comparison"] = {
            "our_test_accuracy": entry["test_accuracy"],
            "tutorial_test_accuracy": tutorial["test_accuracy"],
            "same_wall_seconds": run["wall_seconds"],
        }
    entry["machine"] = machine_info()
    return entry


def _met(entry: dict, targets: dict) -> bool:
    ok = entry["test_accuracy"] >= targets["min_test_accuracy"]
    if "max_wall_seconds" in targets:
        ok = ok and entry["wall_seconds"] <= targets["max_wall_seconds"]
    if "max_trainer_seconds" in targets:
        ok = ok and entry["trainer"]["seconds"] <= targets["max_trainer_seconds"]
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="mnist,cifar10",
                        help=f"comma-separated names from {sorted(SHARED_TARBALLS)} "
                             "(default %(default)s; '' for none)")
    parser.add_argument("--data", action="append", default=[], metavar="NAME=DIR",
                        help="also measure an image folder (train/ + test/), e.g. "
                             "fashion=~/fashion-mnist")
    parser.add_argument("--flags", action="append", default=[], metavar="NAME=FLAGS",
                        help="extra `run` flags for one dataset, e.g. fashion=--allow-duplicates")
    parser.add_argument("--work-dir", type=Path, default=Path(__file__).parent / ".work")
    parser.add_argument("--name", default=RESULT_NAME,
                        help="results file under bench/results/ (default %(default)s.json)")
    parser.add_argument("--skip-baseline", action="store_true",
                        help="skip the tutorial-CNN comparison (halves the run time)")
    args = parser.parse_args()
    commit = git_commit()  # the tree as the measurement starts, not as it ends
    rates = measure_host_rates()  # before any pipeline run, in this process tree
    work = args.work_dir.resolve()
    todo: list[tuple[str, Path, str]] = []
    for name in filter(None, args.datasets.split(",")):
        if name not in SHARED_TARBALLS:
            parser.error(f"unknown dataset {name!r}; choose from {sorted(SHARED_TARBALLS)}")
        tarball = SHARED_DATASETS / SHARED_TARBALLS[name][0]
        todo.append((name, shared_dataset(work, name), relative(tarball)))
    for item in args.data:
        name, _, folder = item.partition("=")
        if not folder:
            parser.error(f"--data takes NAME=DIR, got {item!r}")
        path = Path(folder).expanduser()
        todo.append((name, path, f"a local folder named {path.name}"))

    flags: dict[str, list[str]] = {}
    for item in args.flags:
        name, _, text = item.partition("=")
        flags[name] = shlex.split(text)
    unknown = sorted(set(flags) - {name for name, _, _ in todo})
    if unknown:
        parser.error(f"--flags names datasets not measured: {unknown}")

    existing = RESULTS / f"{args.name}.json"
    result = json.loads(existing.read_text()) if existing.is_file() else {}
    result.setdefault("datasets", {})
    result["what"] = ("`python -m pipeline run --data FOLDER`, with no other flag unless the "
                      "entry's command shows one, per dataset; each entry names the commit and "
                      "the machine it was measured on")
    # The latest run's rates; each entry keeps those of the run that measured it.
    result["host_rates"] = rates.to_dict()
    for name, folder, source in todo:
        result["datasets"][name] = entry = measure(name, folder, work, source,
                                                   not args.skip_baseline, flags.get(name, []),
                                                   rates)
        entry["commit"] = commit
        print(json.dumps({k: entry[k] for k in ("recipe", "test_accuracy", "eval_accuracy",
                                                "wall_seconds", "trainer")}, indent=2),
              flush=True)
        write_result(args.name, result)


if __name__ == "__main__":
    main()
