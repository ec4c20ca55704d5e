"""`ingest SRC OUT`: an image folder becomes TFRecords plus a class map (ingest/dataset.py)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from cli.common import EXIT_OK
from cli.options import add_ingest_args, ingest_policy, span_number


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ingest", help="image folder -> sharded gzip TFRecords + class map",
                       description="Turn SRC/<split>/<class>/*.jpg or SRC/<class>/*.jpg into "
                                   "TFRecords of tf.Example{image: bytes, label: int64, "
                                   "source_path: bytes} (source_path: the file's path "
                                   "relative to SRC, which the run report shows for "
                                   "misclassified images).",
                       epilog="examples:\n  python -m pipeline ingest ~/flowers data/flowers\n"
                              "  python -m pipeline ingest ~/new-flowers data/flowers-spans "
                              "--span auto",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--workers", type=int, help="parallel writer processes (default: CPUs)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace OUT if ingest wrote it (a folder with its dataset.json, or a "
                        "root of such span-N folders); any other folder is refused")
    p.add_argument("--span", type=span_number, metavar="N|auto",
                   help="write a span of OUT: OUT/span-N/ (auto: the next number). `run "
                        "--data OUT` trains on the newest span")
    p.add_argument("--overwrite-span", action="store_true",
                   help="with --span N: replace that span if it exists (atomically)")
    p.add_argument("--json", action="store_true",
                   help="print what was written (counts per split and class, shape) as JSON")
    add_ingest_args(p)
    p.set_defaults(handler=execute)


def execute(args: argparse.Namespace) -> int:
    from ingest.dataset import QUARANTINE_FILE, ingest

    start = time.monotonic()
    options = {"eval_fraction": args.eval_fraction, "test_fraction": args.test_fraction,
               "workers": args.workers, **ingest_policy(args)}
    out = args.out
    if args.span is not None:
        from ingest.spans import ingest_span, span_dir

        number, info = ingest_span(args.src, args.out, args.span, args.overwrite_span,
                                   **options)
        out = span_dir(args.out.resolve(), number)
    else:
        info = ingest(args.src, args.out, overwrite=args.overwrite, **options)
    total = sum(info.split_counts.values())
    elapsed = time.monotonic() - start
    quarantine = out / QUARANTINE_FILE
    skipped = len(json.loads(quarantine.read_text())) if quarantine.is_file() else 0
    if args.json:
        print(json.dumps({"output": str(out), "class_names": list(info.class_names),
                          "image_shape": list(info.image_shape),
                          "split_counts": info.split_counts,
                          "per_class_counts": info.per_class_counts, "skipped_files": skipped,
                          "seconds": round(elapsed, 2)}, indent=2))
        return EXIT_OK
    print(f"wrote {total} images ({info.split_counts}) of {info.num_classes} classes, "
          f"shape {info.image_shape}, to {out} in {elapsed:.1f}s")
    if skipped:
        print(f"skipped {skipped} bad file(s), listed with the reason in {quarantine}")
    return EXIT_OK
