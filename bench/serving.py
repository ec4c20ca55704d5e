"""In-process serving speed of a pushed model, from raw JPEG bytes, as TF Serving would run it.

Loads the newest version under --model-dir (default: the CIFAR-10 model `bench/cifar10.py`
pushed) and calls its `serving_default` signature with encoded images from the CIFAR-10 test
split: latency at batch 1 (p50/p99 over --requests calls) and throughput at batch 64. Writes
`bench/results/serving.json`.

    python bench/serving.py [--model-dir bench/.work/serving/cifar10] [--requests 300]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from bench.common import (  # noqa: E402
    cifar10_folder,
    git_commit,
    machine_info,
    relative,
    write_result,
)

WORK = Path(__file__).resolve().parent / ".work"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=WORK / "serving" / "cifar10")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--throughput-seconds", type=float, default=20.0)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    commit = git_commit()  # the tree as the measurement starts, not as it ends

    import numpy as np
    import tensorflow as tf

    from schema import features
    from serving.predict import newest_version

    version = newest_version(args.model_dir)
    test = cifar10_folder(WORK) / "test"
    files = sorted(p for folder in sorted(test.iterdir()) for p in sorted(folder.iterdir()))
    images = [p.read_bytes() for p in files[:: max(1, len(files) // 2000)]]
    start = time.monotonic()
    serve = tf.saved_model.load(str(version)).signatures[features.SERVING_SIGNATURE]
    load_seconds = time.monotonic() - start

    def call(batch: list[bytes]) -> None:
        serve(**{features.SERVING_INPUT: tf.constant(batch)})[features.OUTPUT_CLASS_IDS].numpy()

    start = time.monotonic()
    call(images[:1])
    first_call_seconds = time.monotonic() - start
    for i in range(20):  # warm-up, as TF Serving does with the model's warm-up requests
        call(images[i : i + 1])
    latencies = []
    for i in range(args.requests):
        start = time.perf_counter()
        call([images[i % len(images)]])
        latencies.append((time.perf_counter() - start) * 1000)
    batches = 0
    start = time.monotonic()
    while time.monotonic() - start < args.throughput_seconds:
        offset = (batches * args.batch_size) % (len(images) - args.batch_size)
        call(images[offset : offset + args.batch_size])
        batches += 1
    elapsed = time.monotonic() - start
    result = {
        "model": relative(version),
        "load_seconds": round(load_seconds, 2),
        "first_call_ms": round(first_call_seconds * 1000, 1),
        "batch1_latency_ms": {
            "p50": round(float(np.percentile(latencies, 50)), 2),
            "p99": round(float(np.percentile(latencies, 99)), 2),
            "requests": args.requests,
        },
        f"batch{args.batch_size}_images_per_second": round(batches * args.batch_size / elapsed, 1),
        "input": "raw CIFAR-10 test JPEG bytes through serving_default (Transform graph + model "
                 "+ test-time augmentation)",
        "machine": machine_info(),
        "commit": commit,
    }
    print(f"batch 1: p50 {result['batch1_latency_ms']['p50']} ms, "
          f"p99 {result['batch1_latency_ms']['p99']} ms; batch {args.batch_size}: "
          f"{result[f'batch{args.batch_size}_images_per_second']} images/s; "
          f"first call {result['first_call_ms']} ms")
    write_result("serving", result)


if __name__ == "__main__":
    main()
