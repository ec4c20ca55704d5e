"""Batch scoring (`infer`) against the model's own batch throughput, in one run.

    python bench/infer.py [--model-dir bench/.work/serving/cifar10] [--images DIR]
                          [--batch-size 64] [--name infer] [--timing-lock PATH]

For the newest version under --model-dir (default: the CIFAR-10 model `bench/cifar10.py`
pushed) and a folder of images (default: the CIFAR-10 test folder, bench.common.cifar10_folder):
  (a) the ceiling: serving_default called in this process at --batch-size on encoded images
      already in memory (up to --memory-images of the folder's files), for
      --throughput-seconds after a warm-up, as bench/serving.py measures it;
  (b) components/batch_inference.py `score_folder` end to end over the whole folder into a
      fresh JSON-lines file under bench/.work/infer/: the walk, parallel reads, batching,
      serving_default, the fsynced appends. Its rate is the summary's images per second once
      the model loaded (the load is recorded apart);
and records both, their ratio (target: at least TARGET_RATIO), the machine and its float32
matrix-product rate (bench/roofline.py) in bench/results/<name>.json. With --scoring-threads
1,2 it runs (b) once per thread count (serving_default called from that many threads).
For the 224 px transfer photo model, pass its model directory and photo folder and
`--name infer-<name>`; (a) is then that model's batch forward on the same photos.
Timings are taken holding `--timing-lock PATH` when given, so other work that takes the same
lock does not overlap them.
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
    held,
    machine_info,
    relative,
    write_result,
)

WORK = Path(__file__).resolve().parent / ".work"
TARGET_RATIO = 0.70





def in_memory_rate(version: Path, images: list[bytes], batch_size: int, seconds: float
                   ) -> float:
    """(a): images/s of serving_default on encoded images in memory, after a warm-up."""
    import tensorflow as tf

    from schema import features

    serve = tf.saved_model.load(str(version)).signatures[features.SERVING_SIGNATURE]

    def call(batch: list[bytes]) -> None:
        serve(**{features.SERVING_INPUT: tf.constant(batch)})[
            features.OUTPUT_PROBABILITIES].numpy()

    batches = [images[i:i + batch_size] for i in range(0, len(images), batch_size)]
    batches = [b for b in batches if len(b) == batch_size] or batches
    for batch in batches[:3]:  # warm-up: tracing, thread pools
        call(batch)
    done, start = 0, time.monotonic()
    while time.monotonic() - start < seconds:
        batch = batches[done % len(batches)]
        call(batch)
        done += 1
    elapsed = time.monotonic() - start
    return sum(len(batches[i % len(batches)]) for i in range(done)) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=WORK / "serving" / "cifar10")
    parser.add_argument("--images", type=Path,
                        help="folder of images (default: the CIFAR-10 test folder)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--memory-images", type=int, default=2000,
                        help="images held in memory for (a)")
    parser.add_argument("--throughput-seconds", type=float, default=20.0)
    parser.add_argument("--scoring-threads", default="1",
                        help="comma-separated thread counts to run (b) with")
    parser.add_argument("--name", default="infer", help="bench/results/<name>.json")
    parser.add_argument("--timing-lock", type=Path, help="a lock file held while timing")
    parser.add_argument("--roofline-tries", type=int, default=3)
    args = parser.parse_args()
    commit = git_commit()  # the tree as the measurement starts, not as it ends

    from bench.roofline import matmul_rate
    from components.batch_inference import score_folder
    from ingest.sources import walk
    from serving.predict import newest_version

    version = newest_version(args.model_dir)
    folder = args.images or cifar10_folder(WORK) / "test"
    files = walk(str(folder)).files
    step = max(1, len(files) // args.memory_images)
    images = [Path(p).read_bytes() for p in files[::step][:args.memory_images]]
    threads = [int(t) for t in args.scoring_threads.split(",")]
    with held(args.timing_lock):
        rate = matmul_rate("float32", tries=args.roofline_tries)
        ceiling = in_memory_rate(version, images, args.batch_size, args.throughput_seconds)
        print(f"(a) serving_default on {len(images)} images in memory, batch "
              f"{args.batch_size}: {ceiling:.1f} images/s", flush=True)
        runs = {}
        for count in threads:
            output = WORK / "infer" / f"{args.name}-{count}-threads.jsonl"
            start = time.monotonic()
            summary = score_folder(folder, args.model_dir, output, batch_size=args.batch_size,
                                   overwrite=True, scoring_threads=count)
            wall = time.monotonic() - start
            runs[str(count)] = {
                "images": summary.scored,
                "bad": len(summary.bad),
                "images_per_second": round(summary.images_per_second, 1),
                "ratio": round(summary.images_per_second / ceiling, 3),
                "wall_seconds": round(wall, 1),
                "load_seconds": round(summary.load_seconds, 2),
                "output": relative(output),
            }
            print(f"(b) score_folder, {count} scoring thread(s): {summary.scored} images, "
                  f"{summary.images_per_second:.1f} images/s, ratio "
                  f"{summary.images_per_second / ceiling:.2f} (target {TARGET_RATIO})",
                  flush=True)
    best = max(runs.values(), key=lambda r: r["images_per_second"])
    result = {
        "what": "infer (score_folder) end to end against serving_default on images in memory",
        "model": relative(version),
        "images": relative(folder),
        "files": len(files),
        "batch_size": args.batch_size,
        "in_memory_images": len(images),
        "in_memory_images_per_second": round(ceiling, 1),
        "score_folder": runs,
        "ratio": best["ratio"],
        "target_ratio": TARGET_RATIO,
        "meets_target": best["ratio"] >= TARGET_RATIO,
        "matmul_gflops": {"float32": round(rate / 1e9, 1)},
        "timing_lock": relative(args.timing_lock) if args.timing_lock else None,
        "machine": machine_info(),
        "commit": commit,
        "tree_clean": bool(commit) and not commit.endswith("-dirty"),
    }
    write_result(args.name, result)


if __name__ == "__main__":
    main()
