"""`infer`: batch scoring of a folder of images (or an ingest output) into a csv, JSON lines or
TFRecord file, resumable (components/batch_inference.py `score_folder`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from cli.common import EXIT_BAD_INPUT, EXIT_BUSY, EXIT_OK, log

# Seconds between progress lines when stderr is not a terminal.
LOG_INTERVAL_S = 10.0
BAR_WIDTH = 30


def add_parser(sub: argparse._SubParsersAction) -> None:
    from serving.batch_scoring import DEFAULT_BATCH_SIZE, DEFAULT_TOP_K

    p = sub.add_parser(
        "infer", help="score every image of a folder (or an ingest output) with a pushed model "
                      "into a .csv, .jsonl or .tfrecord file; re-running resumes",
        description="Batch scoring through the version's serving_default. SRC is a folder "
                    "searched recursively for images (links followed, hidden names left out), "
                    "or a folder `ingest` wrote (its dataset.json): then its TFRecords are "
                    "scored, each row named by the example's source_path. Rows are appended "
                    "and fsynced per batch; running again with the same output skips the "
                    "images already in it (and those listed as bad in OUTPUT.bad.jsonl).",
        epilog="examples:\n"
               "  python -m pipeline infer --model-dir serving_model/digits photos/ "
               "--output scores.csv\n"
               "  python -m pipeline infer --model-dir serving_model/digits/3 data/digits "
               "--output scores.tfrecord --top-k 5\n\n"
               "exit codes: 0 done (bad images, if any, listed and in OUTPUT.bad.jsonl), "
               "2 bad input\n(no files, a wrong suffix, an output of another version, "
               "--fail-on-bad at a bad image), 4 another infer writes OUTPUT",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", type=Path, required=True,
                   help="<serving-dir>/<model-name> (its newest complete version) or a version "
                        "folder")
    p.add_argument("src", type=Path, help="folder of images, or an ingest output folder")
    p.add_argument("--output", type=Path, required=True,
                   help="the scores: a file ending in .csv, .jsonl or .tfrecord (outside SRC)")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                   help="images per serving_default call and per fsynced append "
                        "(default %(default)s)")
    p.add_argument("--top-k", type=int, default=DEFAULT_TOP_K,
                   help="classes named per image (default %(default)s); every class's "
                        "probability is written as well")
    p.add_argument("--fail-on-bad", action="store_true",
                   help="stop with exit 2 at the first image that cannot be scored (the rows "
                        "so far are kept) instead of listing it and going on")
    p.add_argument("--overwrite", action="store_true",
                   help="start OUTPUT (and OUTPUT.bad.jsonl) afresh, e.g. for another model "
                        "or version; without it, an OUTPUT of another model or version, or one "
                        "infer did not write, is refused and left as it is")
    p.set_defaults(handler=execute)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class _Progress:
    """A bar with the rate and ETA on a terminal, else a log line every LOG_INTERVAL_S."""

    def __init__(self) -> None:
        self.terminal = sys.stderr.isatty()
        self._last = 0.0
        self._drawn = False

    def __call__(self, p) -> None:
        rate = p.done / p.elapsed if p.elapsed > 0 else 0.0
        counts = f"{p.scored} scored, {p.already_scored} already, {p.bad} bad"
        if self.terminal:
            if p.total:
                filled = min(BAR_WIDTH, BAR_WIDTH * p.done // p.total)
                left = (p.total - p.done) / rate if rate > 0 else 0.0
                line = (f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {p.done}/{p.total} "
                        f"{100 * p.done / p.total:.0f}%  {rate:.1f} img/s  ETA "
                        f"{_duration(left)}  ({counts})")
            else:
                line = f"\r{p.done} images  {rate:.1f} img/s  ({counts})"
            sys.stderr.write(line + "\033[K")
            sys.stderr.flush()
            self._drawn = True
        elif p.elapsed - self._last >= LOG_INTERVAL_S:
            self._last = p.elapsed
            of = f"/{p.total}" if p.total else ""
            log.info("[infer] %d%s images, %.1f img/s (%s)", p.done, of, rate, counts)

    def close(self) -> None:
        if self._drawn:
            sys.stderr.write("\n")
            sys.stderr.flush()


def execute(args: argparse.Namespace) -> int:
    from cli.main import explain
    from components.batch_inference import ScoringBusyError, score_folder

    progress = _Progress()
    start = time.monotonic()
    try:
        summary = score_folder(args.src, args.model_dir, args.output, top_k=args.top_k,
                               batch_size=args.batch_size, fail_on_bad=args.fail_on_bad,
                               overwrite=args.overwrite, progress=progress)
    except ScoringBusyError as e:
        log.error("error: %s", explain(e))
        return EXIT_BUSY
    finally:
        progress.close()
    bad_total = len(summary.bad) + summary.already_bad
    print(f"model: {summary.version_path} (version {summary.version})")
    if bad_total:
        print(f"{bad_total} image(s) could not be scored, listed with the reason in "
              f"{summary.bad_file}" + (f" ({summary.already_bad} by an earlier run, not retried)"
                                       if summary.already_bad else ""))
    print(f"scored {summary.scored} images, skipped {summary.already_scored} (already scored), "
          f"{len(summary.bad)} bad, in {time.monotonic() - start:.1f}s "
          f"({summary.images_per_second:.1f} images/s): {summary.output} "
          f"({summary.rows} rows)")
    if summary.rows == 0:
        log.error("error: no image under %s could be scored", args.src)
        return EXIT_BAD_INPUT
    return EXIT_OK
