"""The Evaluator's score of the TFLite model, and its verdict on pushing it with the version.

TFMA's `tf_lite` model type feeds a TFLite model tensors named like its inputs from the
examples; ours takes decoded pixels, which the examples do not hold (they hold the encoded
file). So the model is scored here, over TFLite's interpreter, on the same split as TFMA,
with its input made as an app makes it (trainer/tflite.py app_pixels: decode and resize as
the Transform graph does). It is blessed when its accuracy is at most `max_drop` below the
SavedModel's accuracy that TFMA measured through serving_default.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Sequence

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
    TfliteModelInfo,
)
from trainer.tflite import app_pixels

log = logging.getLogger(__name__)

ACCURACY_METRIC = "sparse_categorical_accuracy"

# Images decoded and scored between two progress lines.
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


def split_examples(split_uri: str) -> tuple[list[bytes], np.ndarray]:
    """The encoded images and labels of one split of ExampleGen's output (gzip TFRecords)."""
    files = sorted(tf.io.gfile.glob(join(split_uri, "*")))
    spec = {features.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
            features.LABEL_KEY: tf.io.FixedLenFeature([], tf.int64)}
    images, labels = [], []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        example = tf.io.parse_single_example(record, spec)
        images.append(example[features.IMAGE_KEY].numpy())
        labels.append(int(example[features.LABEL_KEY]))
    return images, np.asarray(labels, np.int64)


def saved_model_bytes(model_dir: str) -> int:
    """The SavedModel's own files (graph and variables), without assets.extra/."""
    return sum(fileio.stat(join(model_dir, relative)).length
               for relative in relative_files(model_dir)
               if not relative.startswith("assets.extra/"))


def predictions(classifier: TfliteClassifier, info: TfliteModelInfo,
                encoded: Sequence[bytes]) -> np.ndarray:
    """Class ids for the encoded images, decoded as an app decodes them, with progress."""
    found = []
    for start in range(0, len(encoded), _PROGRESS_EVERY):
        pixels = app_pixels(encoded[start:start + _PROGRESS_EVERY], info.height, info.width,
                            info.channels, info.resize_mode)
        found.append(np.argmax(classifier.batch_probabilities(pixels), axis=-1))
        if len(encoded) > _PROGRESS_EVERY:
            log.info("[evaluator] TFLite: %d of %d images scored",
                     min(start + _PROGRESS_EVERY, len(encoded)), len(encoded))
    return np.concatenate(found) if found else np.zeros([0], np.int64)


def evaluate_tflite(model_dir: str, split: str, split_uri: str, accuracy: float | None,
                    max_drop: float) -> TfliteEvaluation | None:
    """The TFLite model of model_dir scored on the split; None when the model has none."""
    path = layout.model_path(model_dir)
    if not fileio.exists(path):
        return None
    info = TfliteModelInfo.read(layout.folder(model_dir))
    if info is None:
        raise FileNotFoundError(f"{layout.folder(model_dir)} holds a TFLite model without its "
                                f"{TfliteModelInfo.FILE}")
    with fileio.open(join(layout.folder(model_dir), layout.LABELS_FILE), "rb") as f:
        class_names = f.read().decode("utf-8").splitlines()
    with fileio.open(path, "rb") as f:
        classifier = TfliteClassifier(f.read())
    encoded, labels = split_examples(split_uri)
    if not encoded:
        raise ValueError(f"the {split} split ({split_uri}) holds no examples to score the "
                         "TFLite model on")
    log.info("[evaluator] scoring the TFLite %s model on %d %s images", info.mode,
             len(encoded), split)
    predicted = predictions(classifier, info, encoded)
    correct = predicted == labels
    per_class = tuple(
        ClassAccuracy(name, int((labels == i).sum()), float(correct[labels == i].mean()))
        for i, name in enumerate(class_names) if (labels == i).any())
    latency = classifier.latency_ms(app_pixels(encoded[:layout.LATENCY_RUNS], info.height,
                                               info.width, info.channels, info.resize_mode))
    tflite_accuracy = float(correct.mean())
    blessed, why = verdict(info.mode, split, len(encoded), tflite_accuracy, accuracy, max_drop)
    log.info("[evaluator] %s", why)
    return TfliteEvaluation(
        mode=info.mode, split=split, examples=len(encoded), accuracy=tflite_accuracy,
        per_class=per_class, saved_model_accuracy=accuracy, max_drop=max_drop,
        blessed=blessed, why=why, size_bytes=info.size_bytes,
        saved_model_bytes=saved_model_bytes(model_dir),
        latency_ms_median=statistics.median(latency),
        latency_ms_p99=float(np.percentile(latency, 99)), latency_runs=len(latency),
        differs_from_serving=info.differs_from_serving)


def verdict(mode: str, split: str, examples: int, tflite_accuracy: float,
            accuracy: float | None, max_drop: float) -> tuple[bool, str]:
    """Whether the TFLite model may be pushed, and the sentence that says why."""
    score = f"TFLite {mode}: {100 * tflite_accuracy:.1f} % on {examples} {split} images"
    if accuracy is None:
        return False, (f"{score}; the SavedModel's accuracy was not found in the evaluation, "
                       "so its drop cannot be checked: not pushed")
    # TFMA sums in float32: a drop of a millionth is no drop.
    drop = round(accuracy - tflite_accuracy, 6)
    points = f"{100 * abs(drop):.1f} point{'' if round(100 * abs(drop), 1) == 1 else 's'}"
    if drop == 0:
        compared = f"the same as the SavedModel's {100 * accuracy:.1f} %"
    else:
        compared = (f"{points} {'below' if drop > 0 else 'above'} the SavedModel's "
                    f"{100 * accuracy:.1f} %")
    allowed = f"{100 * max_drop:.1f} point below it allowed (thresholds.max_tflite_drop)"
    if drop <= max_drop:
        return True, f"{score}, {compared}, at most {allowed}: pushed with the version"
    return False, (f"{score}, {compared}, more than the {allowed}: not pushed; the version "
                   "goes out without a TFLite file")


def write_verdict(blessing_uri: str, evaluation: TfliteEvaluation) -> None:
    """The marker the Pusher reads (TFLITE_BLESSED or TFLITE_NOT_BLESSED), in the blessing."""
    fileio.makedirs(blessing_uri)
    for name in (layout.TFLITE_BLESSED_FILE, layout.TFLITE_NOT_BLESSED_FILE):
        if fileio.exists(join(blessing_uri, name)):
            fileio.remove(join(blessing_uri, name))
    name = layout.TFLITE_BLESSED_FILE if evaluation.blessed else layout.TFLITE_NOT_BLESSED_FILE
    with fileio.open(join(blessing_uri, name), "w") as f:
        f.write(evaluation.why + "\n")
