"""Ingestion throughput on the shared CIFAR-10 JPEG folders (60,000 images).

    python bench/ingest.py [--work-dir bench/.work] [--repeats 3]

Writes bench/results/ingest.json: images/s per repeat and the median, with machine info.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    cifar10_folder,
    git_commit,
    machine_info,
    relative,
    write_result,
)
from pipeline.ingest import ingest  # noqa: E402


def measure(src: Path, out: Path, repeats: int, workers: int | None) -> dict:
    runs = []
    for _ in range(repeats):
        shutil.rmtree(out, ignore_errors=True)
        start = time.monotonic()
        info = ingest(src, out, workers=workers)
        seconds = time.monotonic() - start
        total = sum(info.split_counts.values())
        runs.append({"images": total, "seconds": round(seconds, 3),
                     "images_per_second": round(total / seconds, 1)})
        print(f"ingested {total} images in {seconds:.2f}s: {total / seconds:,.0f} images/s")
    rates = [r["images_per_second"] for r in runs]
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {"runs": runs, "median_images_per_second": statistics.median(rates),
            "output_bytes": size, "split_counts": info.split_counts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, default=Path(__file__).parent / ".work")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, help="default: all CPUs")
    args = parser.parse_args()
    commit = git_commit()  # the tree as the measurement starts, not as it ends
    src = cifar10_folder(args.work_dir)
    result = measure(src, args.work_dir / "ingest-out", args.repeats, args.workers)
    result.update({"source": relative(src), "machine": machine_info(), "commit": commit,
                   "target_images_per_second": 20_000})
    write_result("ingest", result)


if __name__ == "__main__":
    main()
