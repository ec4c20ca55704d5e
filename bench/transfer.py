"""Real photos through the whole pipeline with the defaults: `run --data FOLDER`, no other flag.

    python bench/transfer.py                        # both photo sets in ../shared/datasets
    python bench/transfer.py --datasets hymenoptera
    python bench/transfer.py --data pets=DIR        # any folder of photos (train/ + test/)
    python bench/transfer.py --skip-scratch         # without the scratch comparison

The photo sets, split honestly (nothing is chosen on `test`):
  hymenoptera  ants and bees (245 train photos, one GIF among them), PyTorch's transfer-learning
               tutorial set. Its val/ becomes test/ here, so that it stays untouched: the run
               carves its eval split (early stopping) out of train/.
  sign-digits  2,062 hand photos of 10 digits (a few 3024x3024 among the 100x100), one folder
               per class: the run carves train/eval/test (70/10/20, stratified, deterministic).

Per dataset: test accuracy (the Evaluator, on test), eval accuracy (the Trainer's, on eval),
whole-run wall time, Trainer time, feature extraction and fine-tuning images/s, peak RSS, the
recipe and backbone chosen and why, the share of the whole run that is not fit time, and the
training step's GFLOP/s as a share of the host's matrix-product rate (null, with the reason,
for a pretrained backbone). For comparison, the scratch `classic` recipe on the same folder (at
the size the run picks for it), with its own wall time and the same two shares. The host's
float32 (and, where native, bfloat16) rate is measured first, as bench/roofline.py measures it,
before any run. Results go to bench/results/transfer.json with the commit (and whether the tree
was clean), the machine and the host's rates.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tarfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    SHARED_DATASETS,
    HostRates,
    git_commit,
    machine_info,
    measure_host_rates,
    relative,
    run_not_fit_share,
    train_step_share,
    write_result,
)
from bench.seeds import run_pipeline  # noqa: E402
from trainer.config import TrainerConfig  # noqa: E402

RESULT_NAME = "transfer"
TARBALLS = {"hymenoptera": "hymenoptera-jpg.tar.gz", "sign-digits": "sign-digits-jpg.tar.gz"}
TARGETS = {
    "hymenoptera": {"min_test_accuracy": 0.95, "max_wall_seconds": 180},
    "sign-digits": {"min_test_accuracy": 0.99, "max_wall_seconds": 240},
}


def prepare(name: str, work: Path) -> tuple[Path, str]:
    """The dataset's folder as the run gets it, and how it was split."""
    tarball = SHARED_DATASETS / TARBALLS[name]
    if not tarball.is_file():
        raise SystemExit(f"{tarball} not found: the benchmark needs ../shared/datasets beside "
                         "the repository")
    unpacked = work / "unpacked"
    if not (unpacked / name).is_dir():
        unpacked.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tarball) as tar:
            tar.extractall(unpacked, filter="data")
    folder = work / name
    if name == "hymenoptera":
        if not folder.is_dir():
            folder.mkdir()
            shutil.copytree(unpacked / name / "train", folder / "train")
            shutil.copytree(unpacked / name / "val", folder / "test")
        return folder, ("val/ renamed test/ (untouched); eval carved from train/ by the run "
                        "(10 %, stratified)")
    return unpacked / name, "one folder per class: train/eval/test carved by the run (70/10/20)"


def speed(run: dict, rates: HostRates) -> dict:
    """A run's share outside fit and its training step against the host's rate."""
    record = run["trainer"]
    return {"run_not_fit_share": run_not_fit_share(record.get("fit_seconds"),
                                                   run["wall_seconds"]),
            "train_step": train_step_share(record["config"],
                                           record.get("train_images_per_second"), rates)}


def measure(name: str, folder: Path, split: str, work: Path, scratch: bool,
            rates: HostRates) -> dict:
    run = run_pipeline(name, folder, work, [])
    summary, record = run["summary"], run["trainer"]
    config, transfer = record["config"], record.get("transfer") or {}
    components = {c["name"]: round(c["seconds"], 1) for c in summary["components"]}
    entry = {
        "command": f"python -m pipeline run --data {relative(folder)}",
        "split": split,
        "split_counts": {"train": record["num_train"], "eval": record["num_eval"],
                         "test": summary["eval_examples"]},
        "recipe": config["recipe"],
        "recipe_reason": config["recipe_reason"],
        "backbone": TrainerConfig.from_dict(config).model.backbone or None,
        "weights": (transfer.get("backbone") or {}).get("origin"),
        "image_shape": config["image_shape"],
        "test_accuracy": summary["accuracy"],
        "eval_accuracy": record["final_eval_accuracy"],
        "blessed": summary["blessed"],
        "wall_seconds": run["wall_seconds"],
        "trainer_seconds": components.get("Trainer"),
        "component_seconds": components,
        "feature_images_per_second": transfer.get("feature_images_per_second"),
        "feature_seconds": transfer.get("feature_seconds"),
        "fine_tune_images_per_second": record.get("train_images_per_second"),
        "head_epochs_run": transfer.get("head_epochs_run"),
        "fine_tune_epochs_run": transfer.get("fine_tune_epochs_run"),
        "head_only_eval_accuracy": transfer.get("head_only_eval_accuracy"),
        **speed(run, rates),
        "peak_rss_mib": run["peak_rss_mib"],
        "host_rates": rates.to_dict(),
    }
    targets = TARGETS.get(name)
    if targets:
        entry["targets"] = {**targets, "met": entry["test_accuracy"] >= targets[
            "min_test_accuracy"] and entry["wall_seconds"] <= targets["max_wall_seconds"]}
    if scratch:
        other = run_pipeline(f"{name}-classic", folder, work, ["--recipe", "classic"])
        entry["scratch"] = {
            "command": f"python -m pipeline run --data {relative(folder)} --recipe classic",
            "recipe_reason": other["trainer"]["config"]["recipe_reason"],
            "image_shape": other["trainer"]["config"]["image_shape"],
            "test_accuracy": other["summary"]["accuracy"],
            "eval_accuracy": other["trainer"]["final_eval_accuracy"],
            "wall_seconds": other["wall_seconds"],
            "epochs_run": len(other["trainer"]["history"].get("loss", [])),
            **speed(other, rates),
        }
    return entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default=",".join(TARBALLS),
                        help="comma-separated names from %(default)s ('' for none)")
    parser.add_argument("--data", action="append", default=[], metavar="NAME=DIR",
                        help="also measure a local folder of photos")
    parser.add_argument("--work-dir", type=Path, default=Path(__file__).parent / ".work")
    parser.add_argument("--skip-scratch", action="store_true")
    parser.add_argument("--name", default=RESULT_NAME)
    args = parser.parse_args()
    commit = git_commit()
    rates = measure_host_rates()  # before any run, in this process tree
    work = args.work_dir.resolve() / "transfer"
    work.mkdir(parents=True, exist_ok=True)
    todo = [(name, *prepare(name, work)) for name in filter(None, args.datasets.split(","))]
    for item in args.data:
        name, _, folder = item.partition("=")
        todo.append((name, Path(folder).expanduser().resolve(), "as the folder gives it"))
    result = {"what": "`python -m pipeline run --data FOLDER`, no other flag, per photo set",
              "commit": commit, "machine": machine_info(), "host_rates": rates.to_dict(),
              "datasets": {}}
    for name, folder, split in todo:
        entry = measure(name, folder, split, work, not args.skip_scratch, rates)
        result["datasets"][name] = entry
        print(json.dumps({k: entry.get(k) for k in (
            "recipe", "test_accuracy", "eval_accuracy", "wall_seconds", "trainer_seconds",
            "feature_images_per_second", "targets")}, indent=2), flush=True)
        write_result(args.name, result)


if __name__ == "__main__":
    main()
