"""The PyTorch side of bench/lite0_reference.py: EfficientNet-Lite0's logits by its reference code.

Runs in a separate virtual environment that has torch (never the product's .venv):

    /work/torchref/bin/python bench/lite0_torch_reference.py --weights FILE.pth \
        --images IMAGES.npy --out LOGITS.npy

IMAGES.npy holds float32 images (N, 224, 224, 3), already normalized to [-1, 1] as
(pixel - 127) / 128; they go to the network as NCHW. The reference is the PyPI package
`efficientnet-lite-pytorch` (lukemelas' EfficientNet-PyTorch with the lite variants):
`EfficientNet.from_name('efficientnet-lite0')` builds its "same" padding statically for the
global parameters' image size, so the model is built for 224 and the images must be 224 too.
The weights file is loaded with torch.load (weights only) and strict load_state_dict. Prints one
JSON line: the versions and the load report.
"""

from __future__ import annotations

import argparse
import json
from importlib import metadata

import numpy as np
import torch
from efficientnet_lite_pytorch import EfficientNet

IMAGE_SIZE = 224


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", required=True)
    parser.add_argument("--images", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    images = np.load(args.images)
    if images.ndim != 4 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE, 3):
        raise SystemExit(f"{args.images}: expected (N, {IMAGE_SIZE}, {IMAGE_SIZE}, 3) NHWC, "
                         f"got {images.shape}")
    model = EfficientNet.from_name("efficientnet-lite0", image_size=IMAGE_SIZE)
    state = torch.load(args.weights, map_location="cpu", weights_only=True)
    report = model.load_state_dict(state, strict=True)
    model.eval()
    nchw = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2), np.float32))
    with torch.inference_mode():
        logits = torch.cat([model(nchw[i : i + args.batch_size])
                            for i in range(0, len(nchw), args.batch_size)])
    np.save(args.out, logits.numpy().astype(np.float32))
    print(json.dumps({
        "torch": torch.__version__,
        "efficientnet_lite_pytorch": metadata.version("efficientnet-lite-pytorch"),
        "numpy": np.__version__,
        "threads": torch.get_num_threads(),
        "missing_keys": list(report.missing_keys),
        "unexpected_keys": list(report.unexpected_keys),
        "tensors": len(state),
        "padding": type(model._conv_stem).__name__,
    }))


if __name__ == "__main__":
    main()
