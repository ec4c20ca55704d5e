"""Ingestion throughput on the shared CIFAR-10 JPEG folders (60,000 images), and our TFRecord
writer against TensorFlow's.

    python bench/ingest.py [--work-dir bench/.work] [--repeats 3] [--workers N]

1. `ingest` as the CLI runs it: worker processes decode every image and each writes its own
   shards with ingest/tfrecord.py (Example encoding and TFRecord framing by hand, no
   TensorFlow in the workers).
2. The same decode in the same worker processes, but the records written by one parent process
   with tf.train.Example + tf.io.TFRecordWriter(GZIP), the way TensorFlow users write them.
3. The writers alone, in one process, on the same 60,000 records: encode + frame + gzip.
4. What importing TensorFlow costs a fresh process (`python -m pipeline ingest` never does).

Writes bench/results/ingest.json: images/s per repeat and the median of each, with machine info.
ingest/tfrecord.py stays only while it is worth >= 20 % of ingest throughput against 2. in a
fresh process, which pays 4. first (`run` ingests in a process that has TensorFlow already;
`ours_over_tf_writer_imported` says how the two compare there).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    cifar10_folder,
    git_commit,
    machine_info,
    relative,
    write_result,
)
from ingest.dataset import discover, ingest, read_file  # noqa: E402
from ingest.decode import decode  # noqa: E402
from ingest.tfrecord import GzipTFRecordWriter, ImageExampleEncoder  # noqa: E402
from schema import features  # noqa: E402

# Images per task sent to a worker in the TensorFlow-writer variant: large enough that the
# pool's pickling overhead is small next to decoding.
_CHUNK = 512


def _rates(runs: list[dict]) -> dict:
    rates = [r["images_per_second"] for r in runs]
    return {"runs": runs, "median_images_per_second": statistics.median(rates)}


def _timed(label: str, images: int, seconds: float) -> dict:
    print(f"{label}: {images} images in {seconds:.2f}s: {images / seconds:,.0f} images/s",
          flush=True)
    return {"images": images, "seconds": round(seconds, 3),
            "images_per_second": round(images / seconds, 1)}


def measure_ingest(src: Path, out: Path, repeats: int, workers: int | None) -> dict:
    runs = []
    for _ in range(repeats):
        shutil.rmtree(out, ignore_errors=True)
        start = time.monotonic()
        info = ingest(src, out, workers=workers)
        runs.append(_timed("ingest", sum(info.split_counts.values()), time.monotonic() - start))
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {**_rates(runs), "output_bytes": size, "split_counts": info.split_counts}


def _decoded(chunk: list[tuple[str, int]]) -> list[tuple[bytes, int]]:
    """Worker: each image read and decoded in full (as ingest does), its bytes sent back."""
    return [(decode(read_file(path)).data, label) for path, label in chunk]


def _tf_example(tf, data: bytes, label: int) -> bytes:
    return tf.train.Example(features=tf.train.Features(feature={
        features.IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[data])),
        features.LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
    })).SerializeToString()


def measure_tf_writer(src: Path, out: Path, repeats: int, workers: int) -> dict:
    """Discover and decode as ingest does; one parent process writes with TensorFlow."""
    import tensorflow as tf

    runs = []
    for _ in range(repeats):
        shutil.rmtree(out, ignore_errors=True)
        start = time.monotonic()
        _, items, _ = discover(src)
        total = 0
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for split, split_items in items.items():
                (out / split).mkdir(parents=True)
                chunks = [split_items[i:i + _CHUNK] for i in range(0, len(split_items), _CHUNK)]
                path = str(out / split / "data-00000-of-00001.tfrecord.gz")
                with tf.io.TFRecordWriter(path, options="GZIP") as writer:
                    for records in pool.map(_decoded, chunks):
                        for data, label in records:
                            writer.write(_tf_example(tf, data, label))
                        total += len(records)
        runs.append(_timed("decode in workers, TFRecordWriter in the parent", total,
                           time.monotonic() - start))
    return _rates(runs)


def measure_writers(src: Path, work: Path, repeats: int) -> dict:
    """Encode + frame + gzip of the same records in one process: ours and TensorFlow's."""
    import tensorflow as tf

    _, items, _ = discover(src)
    records = [(read_file(path), label) for split in items.values() for path, label in split]
    encode = ImageExampleEncoder(features.IMAGE_KEY, features.LABEL_KEY).encode
    work.mkdir(parents=True, exist_ok=True)
    ours, theirs = [], []
    for _ in range(repeats):
        start = time.monotonic()
        with GzipTFRecordWriter(str(work / "ours.tfrecord.gz")) as writer:
            for data, label in records:
                writer.write(encode(data, label))
        ours.append(_timed("ingest/tfrecord.py writer", len(records), time.monotonic() - start))
        start = time.monotonic()
        with tf.io.TFRecordWriter(str(work / "tf.tfrecord.gz"), options="GZIP") as writer:
            for data, label in records:
                writer.write(_tf_example(tf, data, label))
        theirs.append(_timed("tf.train.Example + tf.io.TFRecordWriter", len(records),
                             time.monotonic() - start))
    return {"ours": _rates(ours), "tensorflow": _rates(theirs),
            "output_bytes": {"ours": (work / "ours.tfrecord.gz").stat().st_size,
                             "tensorflow": (work / "tf.tfrecord.gz").stat().st_size}}


def tf_import_seconds(repeats: int) -> float:
    """Median wall time of `import tensorflow` in a fresh interpreter."""
    runs = []
    for _ in range(repeats):
        start = time.monotonic()
        subprocess.run([sys.executable, "-c", "import tensorflow"], check=True,
                       capture_output=True)
        runs.append(time.monotonic() - start)
    print(f"import tensorflow in a fresh process: {statistics.median(runs):.2f}s", flush=True)
    return round(statistics.median(runs), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, default=Path(__file__).parent / ".work")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, help="default: all CPUs")
    args = parser.parse_args()
    commit = git_commit()  # the tree as the measurement starts, not as it ends
    src = cifar10_folder(args.work_dir)
    workers = args.workers or len(os.sched_getaffinity(0))
    result = measure_ingest(src, args.work_dir / "ingest-out", args.repeats, workers)
    tf_writer = measure_tf_writer(src, args.work_dir / "ingest-out-tf", args.repeats, workers)
    writers = measure_writers(src, args.work_dir / "ingest-writers", args.repeats)
    import_seconds = tf_import_seconds(args.repeats)
    images = sum(result["split_counts"].values())
    ours, theirs = result["median_images_per_second"], tf_writer["median_images_per_second"]
    theirs_fresh = images / (images / theirs + import_seconds)
    result.update({
        "tf_writer_in_parent": tf_writer,
        "writers_alone": writers,
        "tf_import_seconds": import_seconds,
        "tf_writer_fresh_process_images_per_second": round(theirs_fresh, 1),
        "ours_over_tf_writer_fresh_process": round(ours / theirs_fresh, 2),
        "ours_over_tf_writer_imported": round(ours / theirs, 2),
        "keep_ours": ours >= 1.2 * theirs_fresh,
        "source": relative(src), "machine": machine_info(), "commit": commit,
        "target_images_per_second": 20_000,
    })
    print(f"ingest with ingest/tfrecord.py: {ours:,.0f} images/s; with TFRecordWriter in the "
          f"parent: {theirs:,.0f} images/s with TensorFlow imported ({ours / theirs:.2f}x), "
          f"{theirs_fresh:,.0f} in a fresh process ({ours / theirs_fresh:.2f}x)")
    write_result("ingest", result)


if __name__ == "__main__":
    main()
