"""Batch scoring of a folder of images, or of an ingest output, with a pushed model version.

`score_folder` walks the source (ingest/sources.py's walk, one entry at a time: links followed,
hidden names left out, what cannot be read listed with its reason), reads files in a pool of
threads a bounded number of batches ahead, scores each batch through the version's
`serving_default` (serving/batch_scoring.py) and appends its rows to the output, flushed and
fsynced per batch. Memory is bounded by the batches in flight, the listing of one folder per
level and the set of paths already in the output (to skip them on resume).

A source folder holding ingest's `dataset.json` is an ingest output: its split folders'
TFRecords are scored, each row named by the example's `source_path` (the file's path relative
to the folder ingest was given, unique across splits), or `<split>/<shard>#<index>` for data
ingested before source paths were recorded.

One `score_folder` at a time per output file: a kernel file lock beside it
(`.<name>.lock`, ingest/lock_holder.py `exclusive`); a second is refused naming the holder.
Not a TFX component itself; a component calls it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ingest import sources
from ingest.imageinfo import BadImage
from ingest.lock_holder import describe_holder, exclusive
from ingest.manifest import DatasetManifest
from schema import features
from schema.errors import BadInput, Explained, MissingInput, Setting
from serving.batch_scoring import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_TOP_K,
    BadFile,
    OutputWriter,
    Row,
    Scorer,
    bad_path,
    open_output,
    output_format,
    read_bad,
    read_rows,
)
from serving.predict import MAX_IMAGE_BYTES

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_BATCH_SIZE", "DEFAULT_TOP_K", "BadFile", "Row", "ScoringBusyError",
           "ScoringProgress", "ScoringSummary", "read_bad", "read_rows", "score_folder"]

# Threads reading files, and batches read ahead of the one being scored.
READ_THREADS = 4
BATCHES_AHEAD = 2
# Threads calling serving_default at once. bench/infer.py measured 1 against 2 on 2 cores:
# as fast on 32 px images (0.98 and 0.96 of serving_default's own rate), 0.90 against 0.99 on
# 224 px photos, where one call leaves a core idle while it decodes and resizes.
SCORING_THREADS = 2


class ScoringBusyError(Explained, RuntimeError):
    """Another score_folder writes the same output (the CLI exits 4)."""


@dataclasses.dataclass(frozen=True)
class ScoringProgress:
    """After each batch: images handled so far this call (scored, skipped as already in the
    output or its sidecar, and bad), of `total` when known, and seconds since the start.
    """

    done: int
    total: int | None
    elapsed: float
    scored: int = 0
    already_scored: int = 0
    bad: int = 0


@dataclasses.dataclass(frozen=True)
class ScoringSummary:
    version: str  # the version folder's name
    version_path: str
    output: str
    scored: int  # rows added by this call
    already_scored: int  # images skipped as already in the output
    rows: int  # rows now in the output
    bad: tuple[tuple[str, str], ...]  # (relative path, reason) found by this call
    seconds: float  # the whole call, the model's load included
    images_per_second: float  # images scored by this call per second once the model loaded
    already_bad: int = 0  # images skipped as listed in the sidecar by an earlier call
    bad_file: str = ""  # the sidecar listing every bad image
    source_kind: str = "folder"  # "folder" or "ingest output"
    load_seconds: float = 0.0  # loading the version's SavedModel


@dataclasses.dataclass
class _Item:
    """One image to score: its row path, and its bytes or why there are none."""

    path: str
    data: bytes | None = None
    problem: str | None = None


# --- sources ------------------------------------------------------------------------------


def _relative(path: str, root: str) -> str:
    return sources.shown(os.path.relpath(path, root))


def _folder_entries(root: str) -> Iterator[tuple[str, str | None, str | None]]:
    """(row path, file path or None, problem or None) of every entry the walk finds."""
    for path, problem in sources.iter_walk(root):
        yield _relative(path, root), (path if problem is None else None), problem


def _count_folder(root: str) -> int:
    return sum(1 for _ in sources.iter_walk(root))


def _read(path: str) -> tuple[bytes | None, str | None]:
    try:
        return sources.read_file(path, MAX_IMAGE_BYTES), None
    except BadImage as e:
        return None, str(e)
    except OSError as e:
        return None, f"cannot be read ({e.strerror or e.__class__.__name__})"


# What a source's batches carry: the items to score, and how many images were skipped before
# them as already in the output (index 1) or in its sidecar (index 2), by `skip`'s answer.
Batch = tuple[list[_Item], list[int]]


def _folder_batches(root: str, skip: Callable[[str], int], batch_size: int,
                    pool: ThreadPoolExecutor, stop: threading.Event) -> Iterator[Batch]:
    """The entries of the walk in batches, their files read in the pool."""
    pending: list[tuple[str, str | None, str | None]] = []
    skipped = [0, 0, 0]

    def read_batch(entries: list[tuple[str, str | None, str | None]]) -> list[_Item]:
        reads = pool.map(lambda e: _read(e[1]) if e[2] is None else (None, e[2]), entries)
        return [_Item(rel, data, problem) for (rel, _, _), (data, problem)
                in zip(entries, reads, strict=True)]

    for entry in _folder_entries(root):
        if stop.is_set():
            return
        if kind := skip(entry[0]):
            skipped[kind] += 1
            continue
        pending.append(entry)
        if len(pending) == batch_size:
            yield read_batch(pending), skipped
            pending, skipped = [], [0, 0, 0]
    if pending or any(skipped):
        yield read_batch(pending), skipped


def _dataset_batches(root: Path, manifest: DatasetManifest, skip: Callable[[str], int],
                     batch_size: int, stop: threading.Event) -> Iterator[Batch]:
    """The examples of every split's TFRecords, by source_path, in batches."""
    import tensorflow as tf

    spec = {features.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
            features.SOURCE_PATH_KEY: tf.io.FixedLenFeature([], tf.string, default_value="")}
    pending: list[_Item] = []
    skipped = [0, 0, 0]
    for split in manifest.splits:
        for shard in sorted((root / split).glob("*.tfrecord.gz")):
            examples = tf.data.TFRecordDataset(str(shard), compression_type="GZIP").map(
                lambda record: tf.io.parse_single_example(record, spec),
                num_parallel_calls=tf.data.AUTOTUNE).prefetch(batch_size)
            for index, example in enumerate(examples.as_numpy_iterator()):
                if stop.is_set():
                    return
                source = example[features.SOURCE_PATH_KEY].decode("utf-8", "backslashreplace")
                path = source or f"{split}/{shard.name}#{index}"
                if kind := skip(path):
                    skipped[kind] += 1
                    continue
                pending.append(_Item(path, example[features.IMAGE_KEY]))
                if len(pending) == batch_size:
                    yield pending, skipped
                    pending, skipped = [], [0, 0, 0]
    if pending or any(skipped):
        yield pending, skipped


# --- checks -------------------------------------------------------------------------------


def _check_paths(source: Path, model_dir: Path, output: Path) -> None:
    if not source.exists():
        raise MissingInput(f"{source}: no such folder (the images to score, or an ingest "
                           "output)")
    if not source.is_dir():
        raise BadInput(f"{source} is not a folder: pass the folder holding the images")
    if not model_dir.exists():
        raise MissingInput(f"{model_dir}: no such model directory (<serving-dir>/<model-name>, "
                           "or a version folder in it), as ", Setting("infer.model_dir"))
    output_format(output)
    resolved_source, resolved_output = source.resolve(), output.resolve()
    for written in (resolved_output, bad_path(resolved_output)):
        if resolved_source == written or resolved_source in written.parents:
            raise BadInput(f"output {output} is inside the source folder {source}: it would be "
                           "scored as one of its files. Write it outside the source folder.")


def _lock_path(output: Path) -> Path:
    return output.with_name(f".{output.name}.lock")


# --- the loop -----------------------------------------------------------------------------


class _Run:
    """Counters and the writer, shared by the scoring threads under one lock."""

    def __init__(self, writer: OutputWriter, total: int | None, fail_on_bad: bool,
                 progress: Callable[[ScoringProgress], None] | None) -> None:
        self.writer = writer
        self.total = total
        self.fail_on_bad = fail_on_bad
        self.progress = progress
        self.lock = threading.Lock()
        self.start = time.monotonic()
        self.scored = 0
        self.skipped = 0
        self.skipped_bad = 0
        self.bad: list[tuple[str, str]] = []

    def finish_batch(self, rows: list[Row], bad: list[BadFile], skipped: list[int]) -> None:
        with self.lock:
            if bad and self.fail_on_bad:
                self.writer.write(rows)
                self.scored += len(rows)
                first = bad[0]
                raise BadInput(f"{first.path}: {first.reason}. Stopped at the first image that "
                               f"cannot be scored ({self.scored} scored by this call, kept in "
                               f"{self.writer.path}); without ", Setting("infer.fail_on_bad"),
                               " bad images are listed and skipped")
            self.writer.write(rows, bad)
            self.scored += len(rows)
            self.skipped += skipped[1]
            self.skipped_bad += skipped[2]
            for b in bad:
                log.warning("%s: %s", b.path, b.reason)
                self.bad.append((b.path, b.reason))
            if self.progress is not None:
                self.progress(ScoringProgress(
                    done=self.scored + self.skipped + self.skipped_bad + len(self.bad),
                    total=self.total,
                    elapsed=time.monotonic() - self.start, scored=self.scored,
                    already_scored=self.skipped, bad=len(self.bad) + self.skipped_bad))


def _score_batches(batches: Iterator[Batch], scorer: Scorer, run: _Run,
                   threads: int, stop: threading.Event) -> None:
    """Reads batches in one thread, scores them in `threads` (this one among them)."""
    handoff: queue.Queue = queue.Queue(maxsize=BATCHES_AHEAD)
    errors: list[BaseException] = []
    done = object()

    def put(item: object) -> bool:
        """Hands an item over, waiting for room; False once the run stops."""
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for batch in batches:
                if not put(batch):
                    return
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
            errors.append(e)
            stop.set()
        finally:
            for _ in range(threads):
                put(done)

    def consume() -> None:
        try:
            while not stop.is_set():
                try:
                    batch = handoff.get(timeout=0.1)
                except queue.Empty:
                    continue
                if batch is done:
                    return
                items, skipped = batch
                readable = [i for i in items if i.problem is None]
                rows, bad = scorer.score([i.path for i in readable],
                                         [i.data for i in readable])
                bad = [BadFile(i.path, i.problem) for i in items if i.problem is not None] + bad
                run.finish_batch(rows, bad, skipped)
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
            errors.append(e)
            stop.set()

    producer = threading.Thread(target=produce, name="infer-read", daemon=True)
    producer.start()
    workers = [threading.Thread(target=consume, name=f"infer-score-{n}", daemon=True)
               for n in range(1, threads)]
    for worker in workers:
        worker.start()
    try:
        consume()
        for worker in workers:
            worker.join()
    finally:
        stop.set()  # the producer stops at its next batch (finished, or a scorer failed)
        producer.join()
    if errors:
        raise errors[0]


def score_folder(source: str | Path, model_dir: str | Path, output: str | Path, *,
                 top_k: int = DEFAULT_TOP_K, batch_size: int = DEFAULT_BATCH_SIZE,
                 fail_on_bad: bool = False, overwrite: bool = False,
                 progress: Callable[[ScoringProgress], None] | None = None,
                 read_threads: int = READ_THREADS,
                 scoring_threads: int = SCORING_THREADS) -> ScoringSummary:
    """Scores every image under source (a folder, or an ingest output) with the newest complete
    version under model_dir (or that version folder) into output (.csv, .jsonl, .tfrecord).

    Resumes: images already in the output, or in its sidecar of bad images, are skipped; a torn
    last record is cut off first. Refuses (BadInput) an output of another version, of another
    model with the same version name or that infer did not write (unless overwrite), an output
    inside source, a source with no files, and with fail_on_bad stops at the first image that
    cannot be scored, the rows so far kept. An error of the model that is not an image's fault
    (out of memory, cancelled) propagates: the rows so far kept, that batch not written, no
    image listed as bad. ScoringBusyError when another call holds the output.
    """
    if top_k < 1:
        raise BadInput(f"top-k must be at least 1, not {top_k}: ", Setting("infer.top_k"))
    if batch_size < 1:
        raise BadInput(f"the batch size must be at least 1, not {batch_size}: ",
                       Setting("infer.batch_size"))
    started = time.monotonic()
    source, model_dir, output = Path(source), Path(model_dir), Path(output)
    _check_paths(source, model_dir, output)
    manifest = DatasetManifest.read(source)
    if manifest is not None:
        total = sum(manifest.split_counts.values())
    else:
        total = _count_folder(str(source))
    if total == 0:
        raise BadInput(f"{source}: no files found to score (hidden names are left out)")
    output.parent.mkdir(parents=True, exist_ok=True)
    lock = _lock_path(output)

    def busy(holder: dict) -> ScoringBusyError:
        return ScoringBusyError(f"{output} is being written by another infer "
                                f"({describe_holder(holder)}, lock {lock}). Wait for it to "
                                "finish, or pass another output file.")

    with exclusive(lock, busy, remove=True):
        loading = time.monotonic()
        scorer = Scorer.load(model_dir, top_k)
        load_seconds = time.monotonic() - loading
        writer, resumed = open_output(output, scorer.version, scorer.labels, top_k, overwrite,
                                      model=scorer.model)
        previous = len(resumed.scored)

        def skip(path: str) -> int:
            return 1 if path in resumed.scored else 2 if path in resumed.bad else 0

        stop = threading.Event()
        with writer, ThreadPoolExecutor(read_threads, thread_name_prefix="infer-read") as pool:
            run = _Run(writer, total, fail_on_bad, progress)
            if manifest is not None:
                batches = _dataset_batches(source, manifest, skip, batch_size, stop)
            else:
                batches = _folder_batches(str(source), skip, batch_size, pool, stop)
            _score_batches(batches, scorer, run, max(1, scoring_threads), stop)
    seconds = time.monotonic() - started
    scoring_seconds = seconds - load_seconds
    return ScoringSummary(
        version=scorer.version, version_path=str(scorer.version_path), output=str(output),
        scored=run.scored, already_scored=run.skipped, rows=previous + run.scored,
        bad=tuple(run.bad), seconds=seconds,
        images_per_second=run.scored / scoring_seconds if scoring_seconds > 0 else 0.0,
        already_bad=run.skipped_bad,
        bad_file=str(bad_path(output)),
        source_kind="ingest output" if manifest is not None else "folder",
        load_seconds=load_seconds)
