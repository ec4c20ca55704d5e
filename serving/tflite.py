"""The TFLite model that travels with a version: where it lives, what it records, how it runs.

The Trainer writes it into its model (trainer/tflite.py converts), the Evaluator scores it
(TfliteEvaluation), the Pusher pushes it with the version only when that evaluation blessed it,
and `predict --tflite` runs it. Layout inside a model or a pushed version (TF Serving ignores
assets.extra/ apart from its warm-up file):

    assets.extra/tflite/model.tflite   uint8 pixels [1, H, W, C] -> probabilities [1, classes]
    assets.extra/tflite/labels.txt     the class of output i on line i
    assets.extra/tflite/tflite.json    TfliteModelInfo: the input an app must make, the mode

TensorFlow is imported inside the functions that run a model: the report and `runs` read the
records without it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

from schema.errors import BadInput
from schema.records import Record

TFLITE_DIR = "assets.extra/tflite"
MODEL_FILE = "model.tflite"
LABELS_FILE = "labels.txt"
# The Evaluator's verdict on the TFLite model, beside the stock blessing's BLESSED marker: the
# Pusher reads it from the blessing folder (a file: any orchestrator passes folders).
TFLITE_BLESSED_FILE = "TFLITE_BLESSED"
TFLITE_NOT_BLESSED_FILE = "TFLITE_NOT_BLESSED"
# The TFLite model is pushed when its accuracy is at most this far below the SavedModel's
# (thresholds.max_tflite_drop, `run --max-tflite-drop`): 0.5 point.
DEFAULT_MAX_TFLITE_DROP = 0.005
# Batch-1 latency is the median and 99th percentile of at least this many invocations.
LATENCY_RUNS = 200


def model_path(model_dir: str) -> str:
    return f"{str(model_dir).rstrip('/')}/{TFLITE_DIR}/{MODEL_FILE}"


def folder(model_dir: str) -> str:
    return f"{str(model_dir).rstrip('/')}/{TFLITE_DIR}"


@dataclasses.dataclass(frozen=True)
class TfliteModelInfo(Record):
    """What the Trainer wrote (tflite.json beside model.tflite): enough for an app, and for
    our own Evaluator and `predict --tflite`, to make the model's input from an image file.
    """

    FILE = "tflite.json"

    mode: str  # trainer/config.py TfliteMode
    # The input: uint8 pixels [1, height, width, channels]; the app decodes the image to
    # `channels` (1 gray, 3 RGB) and gives it this size as `resize_mode` says
    # (trainer/preprocessing.py fit_to_size: stretch, crop or pad), then rounds to uint8.
    height: int
    width: int
    channels: int
    resize_mode: str
    # Inside the model: pixels / 255 * scale + offset per channel, the Transform graph's map.
    scale: tuple[float, ...]
    offset: tuple[float, ...]
    num_classes: int
    size_bytes: int
    # How its answers may differ from serving_default (test-time augmentation left out...).
    differs_from_serving: tuple[str, ...] = ()
    calibration_images: int = 0  # int8: the train images its ranges were set on


@dataclasses.dataclass(frozen=True)
class TfliteFolder:
    """A model's TFLite folder, read and checked: its info, class names and model bytes."""

    folder: str
    info: TfliteModelInfo
    labels: tuple[str, ...]
    content: bytes

    @property
    def path(self) -> str:
        return f"{self.folder}/{MODEL_FILE}"


def read_folder(model_dir: str) -> TfliteFolder | None:
    """The TFLite folder of a model or version (any filesystem TFX's fileio reads); None when
    it holds no model.tflite; BadInput naming the file when its tflite.json or labels.txt is
    missing or does not fit the model.
    """
    from tfx.dsl.io import fileio

    if not fileio.exists(model_path(model_dir)):
        return None
    where = folder(model_dir)
    info = TfliteModelInfo.read(where)
    labels_file = f"{where}/{LABELS_FILE}"
    if info is None or not fileio.exists(labels_file):
        raise BadInput(f"{where}: the TFLite model lacks its {TfliteModelInfo.FILE} or "
                       f"{LABELS_FILE}: not a model this pipeline wrote")
    with fileio.open(labels_file, "rb") as f:
        labels = tuple(f.read().decode("utf-8").splitlines())
    if len(labels) != info.num_classes:
        raise BadInput(f"{labels_file}: {len(labels)} class names for a TFLite model of "
                       f"{info.num_classes} classes ({where}/{TfliteModelInfo.FILE})")
    with fileio.open(model_path(model_dir), "rb") as f:
        return TfliteFolder(where, info, labels, f.read())


def points(fraction: float) -> str:
    """0.005 -> "0.5 points" (of accuracy, in percentage points)."""
    value = round(100 * fraction, 1)
    return f"{value:.1f} point{'' if value == 1 else 's'}"


def comparison(tflite_accuracy: float, saved_model_accuracy: float) -> str:
    """"0.3 points below the SavedModel's 97.4 %", or "the same as ..." (TFMA sums in
    float32: a difference of a millionth is none).
    """
    drop = round(saved_model_accuracy - tflite_accuracy, 6)
    saved = f"the SavedModel's {100 * saved_model_accuracy:.1f} %"
    if drop == 0:
        return f"the same as {saved}"
    return f"{points(abs(drop))} {'below' if drop > 0 else 'above'} {saved}"


@dataclasses.dataclass(frozen=True)
class ClassAccuracy:
    name: str
    examples: int
    accuracy: float


@dataclasses.dataclass(frozen=True)
class TfliteEvaluation(Record):
    """The Evaluator's score of the TFLite model (tflite_evaluation.json beside TFMA's output)
    and whether it may be pushed: within `max_drop` of the SavedModel's accuracy on the split.
    """

    FILE = "tflite_evaluation.json"

    mode: str
    split: str
    examples: int
    accuracy: float
    per_class: tuple[ClassAccuracy, ...]
    saved_model_accuracy: float | None  # TFMA's, through serving_default; None if not found
    max_drop: float
    blessed: bool
    why: str  # one sentence: the verdict with its figures
    size_bytes: int
    saved_model_bytes: int
    latency_ms_median: float
    latency_ms_p99: float
    latency_runs: int
    differs_from_serving: tuple[str, ...] = ()

    @property
    def drop(self) -> float | None:
        if self.saved_model_accuracy is None:
            return None
        return self.saved_model_accuracy - self.accuracy


class TfliteClassifier:
    """A .tflite model in TFLite's interpreter, one image at a time (its input is batch 1)."""

    def __init__(self, model_content: bytes) -> None:
        import tensorflow as tf

        self._interpreter = tf.lite.Interpreter(model_content=model_content)
        self._interpreter.allocate_tensors()
        (self._input,) = self._interpreter.get_input_details()
        (self._output,) = self._interpreter.get_output_details()

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(v) for v in self._input["shape"])

    def probabilities(self, pixels: Any) -> Any:
        """Probabilities [classes] of one uint8 image [H, W, C]; a quantized output is
        dequantized with its scale and zero point.
        """
        import numpy as np

        output = self._invoke(pixels)[0]
        if np.issubdtype(self._output["dtype"], np.integer):
            scale, zero_point = self._output["quantization"]
            output = (output.astype(np.float32) - zero_point) * scale
        return output.astype(np.float32)

    def batch_probabilities(self, images: Sequence[Any]) -> Any:
        """Probabilities [n, classes] of uint8 images [n, H, W, C]."""
        import numpy as np

        return np.stack([self.probabilities(image) for image in images])

    def latency_ms(self, images: Sequence[Any], runs: int = LATENCY_RUNS) -> list[float]:
        """Milliseconds of each of `runs` batch-1 invocations, cycling through the images."""
        import numpy as np

        batches = [np.asarray(image)[np.newaxis].astype(self._input["dtype"])
                   for image in images[:runs]]
        self._invoke(batches[0])  # the first invocation prepares the kernels: not timed
        times = []
        for i in range(runs):
            start = time.perf_counter()
            self._invoke(batches[i % len(batches)])
            times.append((time.perf_counter() - start) * 1000)
        return times

    def _invoke(self, pixels: Any) -> Any:
        """The raw output [1, classes] for uint8 pixels [H, W, C] or [1, H, W, C]."""
        import numpy as np

        batch = np.asarray(pixels)
        if batch.ndim == 3:
            batch = batch[np.newaxis]
        self._interpreter.set_tensor(self._input["index"], batch.astype(self._input["dtype"]))
        self._interpreter.invoke()
        return self._interpreter.get_tensor(self._output["index"])
