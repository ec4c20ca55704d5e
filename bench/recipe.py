"""Train a recipe on an image folder without TFX, with the trainer's own code paths.

For choosing recipes quickly; `bench/seeds.py` and `bench/cifar10.py` measure the real pipeline.
The splits are ingest's (`ingest.dataset.discover`: eval carved from train when the folder has
only train/ and test/), and the accuracy printed is on **eval**: recipe choices never look at
the test split. Decoding and standardization mirror trainer/preprocessing.py (decode_images +
per-channel mean/std over the training set).

    python bench/recipe.py --recipe fast --epochs 16               # the shared CIFAR-10
    python bench/recipe.py --data bench/.work/mnist --recipe fast-gray --set epochs=4
"""

from __future__ import annotations

import argparse
import json
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
    relative,
    tta_probabilities,
    write_result,
)


def main() -> None:
    from trainer.progress import log_to_stderr

    log_to_stderr()  # train()'s progress lines
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="image folder (default: the shared CIFAR-10)")
    parser.add_argument("--recipe", default="fast")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--learning-rate", type=float)
    parser.add_argument("--widths")
    parser.add_argument("--precision")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                        help="any other TrainerConfig field, e.g. --set tta_translate=0")
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).parent / ".work",
                        help="where the shared CIFAR-10 is unpacked")
    parser.add_argument("--name", default="recipe")
    parser.add_argument("--members", type=int, default=1,
                        help="train this many models (seeds seed, seed+1, ...) and also score "
                             "the average of their probabilities: what an ensemble would gain")
    args = parser.parse_args()
    commit = git_commit()  # the tree as the measurement starts, not as it ends

    import tensorflow as tf

    from ingest.dataset import EVAL, TRAIN, discover
    from ingest.imageinfo import image_shape
    from trainer.data import in_memory_inputs
    from trainer.recipes import from_recipe
    from trainer.train import train

    root = (args.data or cifar10_folder(args.out_dir)).resolve()
    class_names, splits, _ = discover(root)
    shape = image_shape(Path(splits[TRAIN][0][0]).read_bytes())
    config = from_recipe(
        args.recipe, shape, class_names, epochs=args.epochs, batch_size=args.batch_size,
        learning_rate=args.learning_rate, precision=args.precision,
        widths=tuple(int(w) for w in args.widths.split(",")) if args.widths else None,
        **{key: json.loads(value) for key, value in (item.split("=", 1) for item in args.set)},
    )
    start = time.monotonic()
    train_raw = load_split(splits[TRAIN], shape)
    mean, std = channel_statistics(train_raw, shape[2])

    def standardize(dataset):
        return dataset.map(lambda x, y: ((x - mean) / std, tf.cast(y, tf.int64))).cache()

    eval_data = standardize(load_split(splits[EVAL], shape))
    prep_seconds = time.monotonic() - start
    train_data = standardize(train_raw)
    model, record = train(config, in_memory_inputs(train_data, eval_data))
    # Test-time augmentation as the exported serving signature does it.
    probabilities, labels = tta_probabilities(model, eval_data, config)
    eval_accuracy = float((probabilities.argmax(-1) == labels).mean())
    record.pop("history", None)
    total_seconds = round(time.monotonic() - start, 1)  # the first model's, as without --members
    ensemble = members(args.members, config, probabilities, labels, train_data, eval_data)
    result = {
        # The folder trained on, or the tarball it was unpacked from, relative to the repository.
        "data": relative(args.data) if args.data else relative(CIFAR_TARBALL),
        "recipe": args.recipe,
        "eval_accuracy_tta": eval_accuracy,
        "train_images_per_second": round(
            record["num_train"] * max(1, config.optimizer.epochs) / record["fit_seconds"], 1),
        "prep_seconds": round(prep_seconds, 1),
        "total_seconds": total_seconds,
        **record,
        **({"ensemble": ensemble} if ensemble else {}),
        "machine": machine_info(),
        "commit": commit,
    }
    print(f"eval accuracy {eval_accuracy:.4f} (TTA flip={config.evaluation.tta_flip} "
          f"translate={config.evaluation.tta_translate}), fit {record['fit_seconds']:.0f}s, "
          f"{result['train_images_per_second']:.0f} images/s")
    if ensemble:
        print(f"members {ensemble['member_eval_accuracy_tta']}, their average "
              f"{ensemble['eval_accuracy_tta']:.4f}")
    write_result(args.name, result)


def members(count: int, config, probabilities, labels, train_data, eval_data) -> dict | None:
    """With count > 1: count - 1 more models of the config on seeds seed+1, ..., and the eval
    accuracy (with TTA) of each and of their averaged probabilities; `probabilities` are the
    first model's on the eval split's `labels`.
    """
    from trainer.data import in_memory_inputs
    from trainer.train import train

    if count <= 1:
        return None
    each = [float((probabilities.argmax(-1) == labels).mean())]
    fit_seconds = []
    for k in range(1, count):
        member = config.override({"runtime.seed": config.runtime.seed + k})
        model, record = train(member, in_memory_inputs(train_data, eval_data))
        fit_seconds.append(record["fit_seconds"])
        member_probabilities, _ = tta_probabilities(model, eval_data, member)
        each.append(float((member_probabilities.argmax(-1) == labels).mean()))
        probabilities = probabilities + member_probabilities
    return {"members": count,
            "seeds": [config.runtime.seed + k for k in range(count)],
            "member_eval_accuracy_tta": [round(a, 4) for a in each],
            "eval_accuracy_tta": float((probabilities.argmax(-1) == labels).mean()),
            "more_fit_seconds": fit_seconds}


if __name__ == "__main__":
    main()
