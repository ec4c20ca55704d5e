"""Train a recipe on the CIFAR-10 folder without TFX, with the trainer's own code paths.

For iterating on the model recipe quickly; `bench/cifar10.py` measures the real pipeline.
Decoding and standardization mirror trainer/preprocessing.py (decode_images + per-channel
mean/std over the training set).

    python bench/recipe.py --recipe fast --epochs 16 [--out-dir /tmp/bench]
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

from bench.common import cifar10_folder, git_commit, machine_info, write_result  # noqa: E402


def load_split(folder: Path, class_names: list[str]):
    import tensorflow as tf

    from trainer.preprocessing import decode_images

    files, labels = [], []
    for label, name in enumerate(class_names):
        for path in sorted((folder / name).iterdir()):
            files.append(path.read_bytes())
            labels.append(label)
    data = tf.data.Dataset.from_tensor_slices((files, labels)).batch(512)
    return data.map(lambda b, y: (decode_images(b, 32, 32, 3), y)).unbatch()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="fast")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--learning-rate", type=float)
    parser.add_argument("--widths")
    parser.add_argument("--ema", type=float)
    parser.add_argument("--precision")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                        help="any other TrainerConfig field, e.g. --set tta_translate=0")
    parser.add_argument("--out-dir", type=Path, default=Path("/tmp/bench"))
    parser.add_argument("--name", default="recipe")
    args = parser.parse_args()

    import tensorflow as tf

    from trainer.config import from_recipe
    from trainer.model import class_probabilities
    from trainer.train import train

    root = cifar10_folder(args.out_dir)
    class_names = sorted(p.name for p in (root / "train").iterdir())
    config = from_recipe(
        args.recipe, (32, 32, 3), class_names, epochs=args.epochs, batch_size=args.batch_size,
        learning_rate=args.learning_rate, ema_momentum=args.ema, precision=args.precision,
        widths=tuple(int(w) for w in args.widths.split(",")) if args.widths else None,
        **{key: json.loads(value) for key, value in (item.split("=", 1) for item in args.set)},
    )
    start = time.monotonic()
    train_raw = load_split(root / "train", class_names)
    # Per-channel statistics over the whole training set, as tft.mean computes them.
    sums = train_raw.batch(2048).reduce(
        (tf.zeros(3), tf.zeros(3), tf.constant(0.0)),
        lambda acc, b: (acc[0] + tf.reduce_sum(tf.reduce_mean(b[0], [1, 2]), 0),
                        acc[1] + tf.reduce_sum(tf.reduce_mean(tf.square(b[0]), [1, 2]), 0),
                        acc[2] + tf.cast(tf.shape(b[0])[0], tf.float32)),
    )
    mean = sums[0] / sums[2]
    std = tf.sqrt(tf.maximum(sums[1] / sums[2] - tf.square(mean), 1e-6))

    def standardize(dataset):
        return dataset.map(lambda x, y: ((x - mean) / std, tf.cast(y, tf.int64))).cache()

    prep_seconds = time.monotonic() - start
    model, record = train(config, standardize(train_raw),
                          standardize(load_split(root / "test", class_names)))
    # Flip test-time augmentation, as the exported serving signature does.
    test = standardize(load_split(root / "test", class_names)).batch(1000)
    correct = total = 0
    for images, labels in test:
        probs = class_probabilities(model, images, config.tta_flip, config.tta_translate)
        correct += int(tf.reduce_sum(tf.cast(tf.argmax(probs, -1) == labels, tf.int32)))
        total += int(labels.shape[0])
    record.pop("history", None)
    result = {
        "recipe": args.recipe,
        "test_accuracy_tta": correct / total,
        "prep_seconds": round(prep_seconds, 1),
        "total_seconds": round(time.monotonic() - start, 1),
        **record,
        "machine": machine_info(),
        "commit": git_commit(),
    }
    print(f"test accuracy {correct / total:.4f} (TTA flip={config.tta_flip} "
          f"translate={config.tta_translate}), "
          f"fit {record['fit_seconds']:.0f}s")
    write_result(args.name, result)


if __name__ == "__main__":
    main()
