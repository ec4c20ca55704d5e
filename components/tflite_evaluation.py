"""The Evaluator's score of the TFLite model, and its verdict on pushing it with the version.

TFMA's `tf_lite` model type feeds a TFLite model tensors named like its inputs from the
examples; ours takes decoded pixels, which the examples do not hold (they hold the encoded
file). So the model is scored here, over TFLite's interpreter, on the same split as TFMA,
with its input made as an app makes it (trainer/tflite.py app_pixels: decode and resize as
the Transform graph does). It is blessed when its accuracy is at most `max_drop` below the
SavedModel's accuracy that TFMA measured through serving_default.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import logging
import statistics
import threading
from collections.abc import Callable, Iterator

import numpy as np
import tensorflow as tf
from tfx.dsl.io import fileio

from schema import features
from serving import tflite as layout
from serving.model_dir import join, relative_files
from serving.tflite import (
    ClassAccuracy,
    TfliteClassifier,
    TfliteEvaluation,
    TfliteFolder,
    comparison,
    points,
    read_folder,
)
from trainer.tflite import app_pixels

log = logging.getLogger(__name__)

ACCURACY_METRIC = "sparse_categorical_accuracy"

# Images decoded and scored at a time (a stop is seen between two), and between progress lines.
_CHUNK = 256
_PROGRESS_EVERY = 2000


def saved_model_accuracy(evaluation_uri: str) -> float | None:
    """The candidate's overall accuracy in TFMA's output; None if it holds none."""
    import tensorflow_model_analysis as tfma

    for metrics in tfma.load_metrics(evaluation_uri):
        if metrics.slice_key.single_slice_keys:
            continue
        for kv in metrics.metric_keys_and_values:
            if (kv.key.name == ACCURACY_METRIC and not kv.key.is_diff
                    and kv.key.model_name != "baseline"
                    and kv.value.HasField("double_value")):
                return kv.value.double_value.value
    return None


def split_batches(split_uri: str, size: int) -> Iterator[tuple[list[bytes], np.ndarray]]:
    """The encoded images and labels of one split of ExampleGen's output (gzip TFRecords),
    `size` at a time: a large split of photos is never held whole.
    """
    files = sorted(tf.io.gfile.glob(join(split_uri, "*")))
    spec = {features.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
            features.LABEL_KEY: tf.io.FixedLenFeature([], tf.int64)}
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(size)
    for records in dataset:
        parsed = tf.io.parse_example(records, spec)
        yield list(parsed[features.IMAGE_KEY].numpy()), parsed[features.LABEL_KEY].numpy()


def saved_model_bytes(model_dir: str) -> int:
    """The SavedModel's own files (graph and variables), without assets.extra/."""
    return sum(fileio.stat(join(model_dir, relative)).length
               for relative in relative_files(model_dir)
               if not relative.startswith("assets.extra/"))


@dataclasses.dataclass(frozen=True)
class TfliteScores:
    """The TFLite model's answers on a split, before the verdict that needs TFMA's accuracy."""

    model: TfliteFolder
    classifier: TfliteClassifier
    split: str
    labels: np.ndarray
    predicted: np.ndarray
    timing_images: np.ndarray  # the split's first images, for the batch-1 latency


def score_tflite(model_dir: str, split: str, split_uri: str,
                 stop: threading.Event | None = None) -> TfliteScores | None:
    """The TFLite model of model_dir run on every image of the split; None when the model has
    none, or when `stop` was set (the caller gave up on the scores).
    """
    model = read_folder(model_dir)
    if model is None:
        return None
    info = model.info
    classifier = TfliteClassifier(model.content)
    log.info("[evaluator] scoring the TFLite %s model on the %s split", info.mode, split)
    labels, predicted, timing_images = [], [], []
    scored = 0
    for encoded, batch_labels in split_batches(split_uri, _CHUNK):
        if stop is not None and stop.is_set():
            return None
        batch = app_pixels(encoded, info.height, info.width, info.channels, info.resize_mode)
        predicted.append(classifier.batch_probabilities(batch).argmax(axis=-1))
        labels.append(batch_labels)
        timing_images.extend(batch[:max(0, layout.LATENCY_RUNS - len(timing_images))])
        if (scored + len(batch)) // _PROGRESS_EVERY > scored // _PROGRESS_EVERY:
            log.info("[evaluator] TFLite: %d %s images scored", scored + len(batch), split)
        scored += len(batch)
    if not labels:
        raise ValueError(f"the {split} split ({split_uri}) holds no examples to score the "
                         "TFLite model on")
    return TfliteScores(model, classifier, split, np.concatenate(labels),
                        np.concatenate(predicted), np.asarray(timing_images))


@contextlib.contextmanager
def scoring_in_background(
        score: Callable[[threading.Event], TfliteScores | None] | None,
) -> Iterator[Callable[[], TfliteScores | None]]:
    """Runs `score` in a thread while the block runs TFMA, and yields the function that waits
    for its scores (raising its error). TFLite's interpreter and the decoding graph release the
    GIL, so on two cores the scoring costs the Evaluator little beyond TFMA's own time
    (docs/tflite.md has the figures). Leaving the block before the scores were taken (TFMA
    failed) stops the scoring at its next batch. `score` None: nothing to score.
    """
    if score is None:
        yield lambda: None
        return
    stop = threading.Event()
    taken = False

    def scores() -> TfliteScores | None:
        nonlocal taken
        taken = True
        return future.result()

    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="tflite-scoring") as pool:
        future = pool.submit(score, stop)
        try:
            yield scores
        finally:
            stop.set()
            if not taken:  # the block failed first: its error goes on, and this one is logged
                future.add_done_callback(_log_unread_failure)


def _log_unread_failure(future: concurrent.futures.Future) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("[evaluator] the TFLite scoring failed too: %s", future.exception())


def judged(scores: TfliteScores, model_dir: str, accuracy: float | None,
           max_drop: float) -> TfliteEvaluation:
    """The scored TFLite model's evaluation: its accuracy against the SavedModel's (TFMA's
    `accuracy`, None if not found), its size and batch-1 latency (timed here, after TFMA, with
    nothing else running), and the verdict.
    """
    model, labels_all = scores.model, scores.labels
    correct = scores.predicted == labels_all
    per_class = tuple(
        ClassAccuracy(name, int((labels_all == i).sum()), float(correct[labels_all == i].mean()))
        for i, name in enumerate(model.labels) if (labels_all == i).any())
    latency = scores.classifier.latency_ms(scores.timing_images)
    tflite_accuracy = float(correct.mean())
    info = model.info
    blessed, why = verdict(info.mode, scores.split, len(labels_all), tflite_accuracy, accuracy,
                           max_drop)
    log.info("[evaluator] %s", why)
    return TfliteEvaluation(
        mode=info.mode, split=scores.split, examples=len(labels_all), accuracy=tflite_accuracy,
        per_class=per_class, saved_model_accuracy=accuracy, max_drop=max_drop,
        blessed=blessed, why=why, size_bytes=info.size_bytes,
        saved_model_bytes=saved_model_bytes(model_dir),
        latency_ms_median=statistics.median(latency),
        latency_ms_p99=float(np.percentile(latency, 99)), latency_runs=len(latency),
        differs_from_serving=info.differs_from_serving)


def rejudged(evaluation: TfliteEvaluation, max_drop: float) -> TfliteEvaluation:
    """A reused evaluation's TFLite verdict under this run's max_drop (the scores stand)."""
    blessed, why = verdict(evaluation.mode, evaluation.split, evaluation.examples,
                           evaluation.accuracy, evaluation.saved_model_accuracy, max_drop)
    return dataclasses.replace(evaluation, max_drop=max_drop, blessed=blessed, why=why)


def verdict(mode: str, split: str, examples: int, tflite_accuracy: float,
            accuracy: float | None, max_drop: float) -> tuple[bool, str]:
    """Whether the TFLite model may be pushed, and the sentence that says why."""
    score = f"TFLite {mode}: {100 * tflite_accuracy:.1f} % on {examples} {split} images"
    if accuracy is None:
        return False, (f"{score}; the SavedModel's accuracy was not found in the evaluation, "
                       "so its drop cannot be checked: not pushed")
    compared = comparison(tflite_accuracy, accuracy)
    allowed = f"{points(max_drop)} below it allowed (thresholds.max_tflite_drop)"
    if round(accuracy - tflite_accuracy, 6) <= max_drop:
        return True, f"{score}, {compared}, at most {allowed}: pushed with the version"
    return False, (f"{score}, {compared}, more than the {allowed}: not pushed; the version "
                   "goes out without a TFLite file")


def unscored(why: str) -> str:
    """The verdict when the TFLite model could not be scored: the version goes without it."""
    return (f"the TFLite model could not be scored ({why}): not pushed; the version goes out "
            "without a TFLite file")


def write_verdict(blessing_uri: str, blessed: bool, why: str) -> None:
    """The marker the Pusher reads (TFLITE_BLESSED or TFLITE_NOT_BLESSED), in the blessing."""
    fileio.makedirs(blessing_uri)
    for name in (layout.TFLITE_BLESSED_FILE, layout.TFLITE_NOT_BLESSED_FILE):
        if fileio.exists(join(blessing_uri, name)):
            fileio.remove(join(blessing_uri, name))
    name = layout.TFLITE_BLESSED_FILE if blessed else layout.TFLITE_NOT_BLESSED_FILE
    with fileio.open(join(blessing_uri, name), "w") as f:
        f.write(why + "\n")
