"""What `--refit` gains: a recipe trained on train, then on train + eval, each scored on test.

    python bench/refit.py                                   # fast on the shared CIFAR-10 JPEGs
    python bench/refit.py --data bench/.work/fashion-official --recipe fast-gray

The recipe is one chosen on eval beforehand; here nothing is chosen. The same seed and
schedule train two models with the Trainer's own code (trainer.train.train, the refit examples
from trainer.data.refit_examples, as data.refit makes them):
  1. on the train split, scored on eval (what the choice looked at) and on test;
  2. on train + eval (data.refit), scored on test.
Both are scored with test-time augmentation as the exported serving signature applies it. The
splits are ingest's (eval carved from train when the folder has only train/ and test/);
standardization uses the train split's statistics in both, as Transform does. The host's
matrix-product rates are measured first (bench/common.py) and each fit's share of them
recorded. Writes bench/results/<name>.json with the commit and the machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from bench.common import (  # noqa: E402
    CIFAR_TARBALL,
    channel_statistics,
    cifar10_folder,
    git_commit,
    load_split,
    machine_info,
    measure_host_rates,
    relative,
    train_step_share,
    tta_accuracy,
    write_result,
)


def refit_inputs(inputs, seed: int):
    """The held-out inputs turned into data.refit's: train + eval as one training set."""
    from trainer.data import refit_examples, with_length

    both, plan = refit_examples(inputs.train, inputs.eval, inputs.num_train, inputs.num_eval,
                                inputs.plan, seed)
    total = inputs.num_train + inputs.num_eval
    return dataclasses.replace(inputs, train=with_length(both, total), num_train=total,
                               plan=plan, refit=True)


def main() -> None:
    from trainer.progress import log_to_stderr

    log_to_stderr()  # train()'s progress lines
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="image folder (default: the shared CIFAR-10)")
    parser.add_argument("--recipe", default="fast")
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).parent / ".work",
                        help="where the shared CIFAR-10 is unpacked")
    parser.add_argument("--name", default="refit")
    args = parser.parse_args()
    commit = git_commit()  # the tree as the measurement starts, not as it ends
    rates = measure_host_rates()

    import tensorflow as tf

    from ingest.dataset import EVAL, TEST, TRAIN, discover
    from ingest.imageinfo import image_shape
    from trainer.data import in_memory_inputs
    from trainer.recipes import from_recipe
    from trainer.train import train

    root = (args.data or cifar10_folder(args.out_dir)).resolve()
    class_names, splits, _ = discover(root)
    if TEST not in splits:
        raise SystemExit(f"{root} has no test split: refit needs one to be scored on")
    shape = image_shape(Path(splits[TRAIN][0][0]).read_bytes())
    config = from_recipe(args.recipe, shape, class_names)
    train_raw = load_split(splits[TRAIN], shape)
    mean, std = channel_statistics(train_raw, shape[2])

    def standardize(dataset):
        return dataset.map(lambda x, y: ((x - mean) / std, tf.cast(y, tf.int64))).cache()

    train_data = standardize(train_raw)
    eval_data = standardize(load_split(splits[EVAL], shape))
    test_data = standardize(load_split(splits[TEST], shape))
    held_out = in_memory_inputs(train_data, eval_data)
    runs = {}
    for name, inputs, run_config in (
            ("held_out", held_out, config),
            ("refit", refit_inputs(held_out, config.runtime.seed),
             config.override({"data.refit": True}))):
        print(f"{name}: {inputs.num_train:,} training images", flush=True)
        model, record = train(run_config, inputs)
        runs[name] = {
            "num_train": record["num_train"],
            "test_accuracy_tta": tta_accuracy(model, test_data, config),
            "fit_seconds": record["fit_seconds"],
            "train_images_per_second": record["train_images_per_second"],
            "train_step": train_step_share(record["config"], record["train_images_per_second"],
                                           rates),
        }
        if name == "held_out":
            runs[name]["eval_accuracy_tta"] = tta_accuracy(model, eval_data, config)
        print(f"{name}: test accuracy {runs[name]['test_accuracy_tta']:.4f}, fit "
              f"{record['fit_seconds']:.0f}s", flush=True)
    gain = runs["refit"]["test_accuracy_tta"] - runs["held_out"]["test_accuracy_tta"]
    result = {
        "data": relative(args.data) if args.data else relative(CIFAR_TARBALL),
        "recipe": args.recipe,
        "split_counts": {"train": held_out.num_train, "eval": held_out.num_eval,
                         "test": len(splits[TEST])},
        "runs": runs,
        "refit_test_gain_points": round(100 * gain, 2),
        "refit_fit_time_ratio": round(runs["refit"]["fit_seconds"]
                                      / runs["held_out"]["fit_seconds"], 3),
        "host_rates": rates.to_dict(),
        "config": config.to_dict(),
        "machine": machine_info(),
        "commit": commit,
    }
    print(f"refit gain on test: {100 * gain:+.2f} points, for "
          f"{result['refit_fit_time_ratio']:.2f}x the fit time")
    write_result(args.name, result)


if __name__ == "__main__":
    start = time.monotonic()
    main()
    print(f"done in {time.monotonic() - start:.0f}s")
