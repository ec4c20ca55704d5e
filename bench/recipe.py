"""Train a recipe on an image folder without TFX, with the trainer's own code paths.

For choosing recipes quickly; `bench/seeds.py` and `bench/cifar10.py` measure the real pipeline.
The splits are ingest's (`ingest.dataset.discover`: eval carved from train when the folder has
only train/ and test/), and the accuracy printed is on **eval**: recipe choices never look at
the test split. Decoding and standardization mirror trainer/preprocessing.py (decode_images +
per-channel mean/std over the training set).

    python bench/recipe.py --recipe fast --epochs 16               # the shared CIFAR-10
    python bench/recipe.py --data bench/.work/mnist --recipe fast-gray --set epochs=4

An ensemble (`--set members=N`, trainer/ensemble.py) is scored as exported (its members' mean
logits), and each member and the mean of their probabilities are scored beside it.
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
    total_seconds = round(time.monotonic() - start, 1)
    ensemble = members(model, config, probabilities, labels, eval_data)
    result = {
        # The folder trained on, or the tarball it was unpacked from, relative to the repository.
        "data": relative(args.data) if args.data else relative(CIFAR_TARBALL),
        "recipe": args.recipe,
        "eval_accuracy_tta": eval_accuracy,
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
        print(f"members alone {ensemble['member_eval_accuracy_tta']}; their mean logits "
              f"(exported) {ensemble['eval_accuracy_tta_mean_logits']:.4f}, mean probabilities "
              f"{ensemble['eval_accuracy_tta_mean_probabilities']:.4f}")
    write_result(args.name, result)


def members(model, config, probabilities, labels, eval_data) -> dict | None:
    """An ensemble's members scored alone and averaged two ways, on the eval split with TTA:
    `probabilities` are the exported model's (the members' mean logits).
    """
    from trainer.ensemble import networks_of

    if config.model.members <= 1:
        return None
    alone = [tta_probabilities(network, eval_data, config)[0]
             for network in networks_of(model, config.model.members)]
    mean_probabilities = sum(alone) / len(alone)
    return {"members": config.model.members,
            "member_eval_accuracy_tta": [
                round(float((p.argmax(-1) == labels).mean()), 4) for p in alone],
            "eval_accuracy_tta_mean_logits": float((probabilities.argmax(-1) == labels).mean()),
            "eval_accuracy_tta_mean_probabilities": float(
                (mean_probabilities.argmax(-1) == labels).mean())}


if __name__ == "__main__":
    main()
