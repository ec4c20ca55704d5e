"""Score test-time augmentation variants of a trained model on the eval split.

The serving signature averages a fixed set of views (trainer.model.class_probabilities). This
asks whether other view sets would score better, without retraining: it restores the weights
of a finished pipeline's newest Trainer model, computes each view's logits on the **eval** split
once, and scores every variant from them. The test split is never read.

    python bench/tta.py                                   # bench/cifar10.py's pipeline root
    python bench/tta.py --pipeline-root bench/.work/root/pipelines/cifar10-bench --name tta
    python bench/tta.py --pipeline-root \
        bench/.work/fashion-official-root/pipelines/seeds-fashion-official --name tta-fashion
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from bench.common import git_commit, machine_info, relative, write_result  # noqa: E402

# A view is the image moved by (dy, dx) pixels (trainer.model.shift_images). A variant is a
# weighted set of views; with flip, each view is averaged with its mirror image first.
Views = tuple[tuple[float, int, int], ...]
_AXES = ((-1, 0), (1, 0), (0, -1), (0, 1))
_DIAGONALS = ((-1, -1), (1, 1), (-1, 1), (1, -1))
VARIANTS: dict[str, tuple[bool, Views]] = {
    "none": (False, ((1.0, 0, 0),)),
    "flip": (True, ((1.0, 0, 0),)),
    # What `fast` and `fast-wide` serve (tta_flip=True, tta_translate=1).
    "flip + 1px diagonal pair (fast serves it)": (
        True, ((0.5, 0, 0), (0.25, -1, -1), (0.25, 1, 1))),
    "flip + 1px both diagonals": (True, ((0.5, 0, 0), *((0.125, *d) for d in _DIAGONALS))),
    "flip + 1px along the axes": (True, ((0.5, 0, 0), *((0.125, *d) for d in _AXES))),
    "flip + 1px all 8 neighbours": (
        True, ((0.5, 0, 0), *((0.0625, *d) for d in _AXES + _DIAGONALS))),
    "flip + 2px diagonal pair": (True, ((0.5, 0, 0), (0.25, -2, -2), (0.25, 2, 2))),
    "flip + 1px and 2px diagonal pairs": (
        True, ((1 / 3, 0, 0), *((1 / 6, d, d) for d in (-1, 1, -2, 2)))),
    "flip + every shift up to 2px, uniform": (
        True, tuple((1 / 25, dy, dx) for dy in range(-2, 3) for dx in range(-2, 3))),
}
# The same shifts without the mirror image, for data where mirroring can change the class
# (`fast-gray`, for digits, serves the first: tta_flip=False, tta_translate=1).
VARIANTS.update({
    name.removeprefix("flip + ").replace(" (fast serves it)", " (fast-gray serves it)")
    + ", no flip": (False, views)
    for name, (flip, views) in list(VARIANTS.items()) if flip and name != "flip"})


def needed_views(variants: dict[str, tuple[bool, Views]]) -> list[tuple[int, int, bool]]:
    """(dy, dx, mirrored) of every view some variant uses, each once."""
    views = set()
    for flip, shifts in variants.values():
        for _, dy, dx in shifts:
            views.add((dy, dx, False))
            if flip:
                views.add((dy, dx, True))
    return sorted(views)


def view_logits(model, images: np.ndarray, views, batch_size: int = 500) -> dict:
    import tensorflow as tf

    from trainer.model import shift_images

    logits = {}
    for dy, dx, mirrored in views:
        out = []
        for start in range(0, len(images), batch_size):
            batch = tf.constant(images[start:start + batch_size])
            if dy or dx:
                batch = shift_images(batch, dy, dx)
            if mirrored:
                batch = tf.reverse(batch, axis=[2])
            out.append(model(batch, training=False).numpy())
        logits[(dy, dx, mirrored)] = np.concatenate(out)
    return logits


def combined_logits(logits: dict, variant: tuple[bool, Views]) -> np.ndarray:
    flip, shifts = variant
    total = 0.0
    for weight, dy, dx in shifts:
        view = logits[(dy, dx, False)]
        if flip:
            view = (view + logits[(dy, dx, True)]) / 2
        total = total + weight * view
    return total


def newest(pattern_dir: Path, glob: str) -> Path:
    """The newest execution's output under a TFX component's output folder."""
    found = sorted(pattern_dir.glob(glob), key=lambda p: int(p.relative_to(pattern_dir).parts[0]))
    if not found:
        raise SystemExit(f"nothing matches {pattern_dir / glob}: run bench/cifar10.py first, or "
                         "pass --pipeline-root of a finished pipeline")
    return found[-1]


def restore_model(serving_dir: Path, sample_images: np.ndarray):
    """The Keras model inside a Trainer's serving SavedModel, rebuilt from its own config."""
    import tensorflow as tf

    from trainer.config import TRAINING_CONFIG_FILE, TrainerConfig
    from trainer.ensemble import build_ensemble

    config = TrainerConfig.from_dict(json.loads((serving_dir / TRAINING_CONFIG_FILE).read_text()))
    model = build_ensemble(config, sample_images)  # one network, or an ensemble's networks
    tf.train.Checkpoint(model=model).read(
        str(serving_dir / "variables" / "variables")).assert_existing_objects_matched()
    return model, config


def eval_split(root: Path) -> tuple[np.ndarray, np.ndarray]:
    import tensorflow_transform as tft

    from trainer import data

    graph = newest(root / "Transform" / "transform_graph", "*")
    files = [str(f) for f in newest(root / "ImportExampleGen" / "examples", "*/Split-eval")
             .glob("*")]
    dataset = data.transformed_examples(files, data.tf_example_accessor(),
                                        tft.TFTransformOutput(str(graph)))
    batches = [(x.numpy(), y.numpy()) for x, y in dataset.batch(1000)]
    return (np.concatenate([x for x, _ in batches]),
            np.concatenate([y for _, y in batches]).astype(int))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipeline-root", type=Path,
                        default=Path(__file__).parent / ".work/root/pipelines/cifar10-bench")
    parser.add_argument("--name", default="tta")
    args = parser.parse_args()
    commit = git_commit()
    root = args.pipeline_root
    serving_dir = newest(root / "Trainer" / "model", "*/Format-Serving")
    images, labels = eval_split(root)
    model, config = restore_model(serving_dir, images)
    views = needed_views(VARIANTS)
    print(f"{len(labels)} eval images, {len(views)} views of {relative(serving_dir)}", flush=True)
    start = time.monotonic()
    logits = view_logits(model, images, views)
    seconds = round(time.monotonic() - start, 1)
    accuracy = {name: round(float((combined_logits(logits, v).argmax(1) == labels).mean()), 4)
                for name, v in VARIANTS.items()}
    for name, value in accuracy.items():
        views_used = len(VARIANTS[name][1]) * (2 if VARIANTS[name][0] else 1)
        print(f"{100 * value:6.2f} %  {views_used:3d} views  {name}")
    write_result(args.name, {
        "model": relative(serving_dir),
        "recipe": config.recipe,
        "epochs": config.optimizer.epochs,
        "widths": list(config.model.widths),
        "split": "eval",
        "num_images": int(len(labels)),
        "accuracy": accuracy,
        "views": {name: len(v[1]) * (2 if v[0] else 1) for name, v in VARIANTS.items()},
        "view_seconds": seconds,
        "machine": machine_info(),
        "commit": commit,
    })


if __name__ == "__main__":
    main()
