"""Export ingest's splits as uint8 arrays, to train outside TFX on exactly our data.

This is how we compare our recipe with a reference implementation in another framework: the
same train/eval/test images, decoded by TensorFlow's decoder as the Transform graph decodes
them (docs/cifar10-accuracy.md). The .npz holds `<split>_images` (N, H, W, C) uint8,
`<split>_labels` int64 and `class_names`.

    python bench/export_splits.py bench/.work/cifar10-tfrecords /tmp/cifar10-splits.npz
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def read_split(files: list[Path], shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    import tensorflow as tf

    from schema import features
    from trainer.preprocessing import decode_images

    spec = features.raw_example_spec()
    records = tf.data.TFRecordDataset([str(f) for f in files], compression_type="GZIP")
    batches = records.batch(2048).map(lambda r: tf.io.parse_example(r, spec))
    images, labels = [], []
    for batch in batches:
        pixels = decode_images(batch[features.IMAGE_KEY], *shape)
        # decode_images scales 8-bit values by 1/255; rounding gets the decoder's bytes back.
        images.append(np.rint(pixels.numpy() * 255).clip(0, 255).astype(np.uint8))
        labels.append(batch[features.LABEL_KEY].numpy())
    return np.concatenate(images), np.concatenate(labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ingested", type=Path, help="an `ingest` output folder")
    parser.add_argument("output", type=Path, help="the .npz file to write")
    args = parser.parse_args()

    info_file = args.ingested / "dataset.json"
    if not info_file.is_file():
        sys.exit(f"error: {info_file} not found: pass a folder written by `ingest`")
    info = json.loads(info_file.read_text())
    shape = tuple(int(v) for v in info["image_shape"])
    arrays: dict[str, np.ndarray] = {"class_names": np.array(info["class_names"])}
    for split_dir in sorted(p for p in args.ingested.iterdir() if p.is_dir()):
        files = sorted(split_dir.glob("*.tfrecord.gz"))
        if not files:
            continue
        images, labels = read_split(files, shape)
        arrays[f"{split_dir.name}_images"], arrays[f"{split_dir.name}_labels"] = images, labels
        print(f"{split_dir.name}: {len(labels):,} images, per class {np.bincount(labels).tolist()}")
    partial = args.output.with_name(args.output.name + ".partial.npz")
    np.savez(partial, **arrays)
    partial.replace(args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
