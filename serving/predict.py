"""Offline prediction from a TF Serving model directory, loaded the way TF Serving loads it."""

from __future__ import annotations

import dataclasses
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from schema import features
from schema.errors import BadInput, Setting
from serving import tflite


class ModelDirError(BadInput):
    pass


@dataclasses.dataclass(frozen=True)
class Prediction:
    """One image's answer; an image the model could not take has `error` and no class."""

    path: str
    class_name: str | None
    class_id: int | None
    top: list[tuple[str, float]]
    error: str | None = None


# Larger than any image ingest accepts by default; a bound on what one request holds.
MAX_IMAGE_BYTES = 512 * 1024 * 1024


def _is_saved_model(path: Path) -> bool:
    return (path / "saved_model.pb").is_file()


def newest_version(model_dir: str | Path) -> Path:
    """The highest numeric version under <model_base_path>, as TF Serving picks by default.

    Also accepts a version folder itself, or a serving dir that holds exactly one model.
    """
    model_dir = Path(model_dir)
    if _is_saved_model(model_dir):
        return model_dir
    if not model_dir.is_dir():
        raise ModelDirError(f"{model_dir}: no such folder")
    versions = [p for p in model_dir.iterdir() if p.name.isdigit() and _is_saved_model(p)]
    if versions:
        return max(versions, key=lambda p: int(p.name))
    models = [p for p in model_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if len(models) == 1:
        return newest_version(models[0])
    raise ModelDirError(
        f"{model_dir}: no <version>/saved_model.pb found. Pass the model base path "
        "(<serving-dir>/<model-name>) that the Pusher wrote to."
    )


def image_problem(path: Path) -> str | None:
    """Why a path cannot be sent to the model as an image file, or None."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return "no such file"
    except OSError as e:
        return f"cannot be read ({e.strerror})"
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    if info.st_size == 0:
        return "an empty file"
    if info.st_size > MAX_IMAGE_BYTES:
        return f"{info.st_size:,} bytes, over the {MAX_IMAGE_BYTES:,} a request may hold"
    return None


def load_serving_signature(version: Path):
    """serving_default of a version, as TF Serving would load it; ModelDirError names the
    version when it does not load.
    """
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(version))
    except Exception as e:  # noqa: BLE001 - any load failure: the version is unusable
        first_line = (str(e).strip().splitlines() or [e.__class__.__name__])[0][:300]
        raise ModelDirError(
            f"{version}: the SavedModel does not load ({first_line}). TF Serving cannot serve "
            "it either: push a new version, or pass an earlier version folder as ",
            Setting("predict.model_dir"),
        ) from None
    if features.SERVING_SIGNATURE not in loaded.signatures:
        raise ModelDirError(f"{version}: no {features.SERVING_SIGNATURE!r} signature; it has "
                            f"{sorted(loaded.signatures)}")
    labels = version / "assets" / features.LABELS_ASSET
    if not labels.is_file():
        raise ModelDirError(f"{version}: {labels} is missing: not a model this pipeline pushed")
    return loaded.signatures[features.SERVING_SIGNATURE], labels.read_text(
        encoding="utf-8").splitlines()


# Lines of a TF error raised by a graph that say where, not what (a traced function's error
# lists the Python frames that defined the failing node).
_WHERE_LINES = ("Graph execution error", "Detected at node", "<stack traces unavailable>",
                'File "')


def decode_error(error: Exception) -> str:
    """TF's refusal of one image, as one line (error_line)."""
    return "the model cannot decode it: " + error_line(error)


def error_line(error: Exception) -> str:
    """An error as one line: the first that says what is wrong (a graph's error starts with
    where it happened), without the graph's node names; at most 300 characters.
    """
    lines = [line.strip() for line in str(error).strip().splitlines()]
    said = [line for line in lines if line and not line.startswith(("[[", *_WHERE_LINES))]
    first_line = (said or lines or [error.__class__.__name__])[0]
    return first_line.split(" [[")[0].strip()[:300]


def _read_images(image_paths: Sequence[str | Path]
                 ) -> tuple[dict[int, Prediction], list[tuple[int, bytes]]]:
    """(index -> the error of each image that cannot be read, (index, bytes) of the others)."""
    results: dict[int, Prediction] = {}
    good: list[tuple[int, bytes]] = []
    for i, path in enumerate(map(Path, image_paths)):
        problem = image_problem(path)
        if problem is None:
            try:
                good.append((i, path.read_bytes()))
            except OSError as e:
                problem = f"cannot be read ({e.strerror})"
        if problem is not None:
            results[i] = Prediction(str(path), None, None, [], problem)
    return results, good


def predict_files(
    model_dir: str | Path, image_paths: Sequence[str | Path], top_k: int = 3
) -> tuple[Path, list[Prediction]]:
    """Predictions for each image, in order; an image that cannot be read or decoded gets its
    own error, and the others are still predicted.
    """
    version = newest_version(model_dir)
    serve, labels = load_serving_signature(version)
    results, good = _read_images(image_paths)
    for i, answer in _predict_batches(serve, labels, good, top_k):
        results[i] = dataclasses.replace(answer, path=str(image_paths[i]))
    return version, [results[i] for i in range(len(image_paths))]


# How an app makes the TFLite model's input: (encoded images, height, width, channels,
# resize_mode) -> uint8 [n, H, W, C]. trainer/tflite.py app_pixels, passed in by the caller
# (serving does not import the Transform graph's decoder).
PixelMaker = Callable[[Sequence[bytes], int, int, int, str], Any]


@dataclasses.dataclass(frozen=True)
class TfliteVersion:
    """A version's TFLite model as `predict --tflite` runs it."""

    version: Path
    model: tflite.TfliteFolder


def load_tflite(model_dir: str | Path) -> TfliteVersion:
    """The TFLite model of the newest version under model_dir (or of that version folder);
    ModelDirError names the version and why when it holds none or an incomplete one.
    """
    version = newest_version(model_dir)
    path = Path(tflite.model_path(str(version)))
    if not path.is_file():
        raise ModelDirError(
            f"{version}: this version holds no TFLite model (no {tflite.TFLITE_DIR}/"
            f"{tflite.MODEL_FILE}). A version carries one only when its model was made with one "
            "and the Evaluator blessed it: at most ", Setting("thresholds.max_tflite_drop"),
            " below the SavedModel's accuracy; otherwise the Pusher pushes the SavedModel "
            f"alone. lineage of version {version.name}, or its run's report, says why this "
            "one has none. Without ", Setting("predict.tflite"), ", predict classifies with "
            "the version's SavedModel; or pass an earlier version folder that holds one.")
    try:
        model = tflite.read_folder(str(version))
    except BadInput as e:
        raise ModelDirError(f"{e}") from None
    return TfliteVersion(version, model)


def predict_files_tflite(
    model_dir: str | Path, image_paths: Sequence[str | Path], make_pixels: PixelMaker,
    top_k: int = 3,
) -> tuple[TfliteVersion, list[Prediction]]:
    """predict_files through the version's TFLite model in TFLite's interpreter: each image
    made into pixels as an app makes them (`make_pixels`, as tflite.json says), class names
    from the TFLite model's labels.txt. An image that cannot be read or decoded gets its own
    error, and the others are still predicted.
    """
    loaded = load_tflite(model_dir)
    model = loaded.model
    try:
        classifier = tflite.TfliteClassifier(model.content)
    except Exception as e:  # noqa: BLE001 - any load failure: the file is unusable
        first_line = (str(e).strip().splitlines() or [e.__class__.__name__])[0][:300]
        raise ModelDirError(f"{model.path}: the TFLite model does not load in TFLite's "
                            f"interpreter ({first_line})") from None
    info = model.info
    results, good = _read_images(image_paths)

    def pixels(images: list[bytes]):
        return make_pixels(images, info.height, info.width, info.channels, info.resize_mode)

    decoded: list[tuple[int, Any]] = []
    try:
        decoded = list(zip([i for i, _ in good], pixels([data for _, data in good]),
                           strict=True)) if good else []
    except Exception:  # noqa: BLE001 - find which images fail, and why
        for i, data in good:
            try:
                decoded.append((i, pixels([data])[0]))
            except Exception as e:  # noqa: BLE001 - TF raises several types for bad images
                results[i] = Prediction(str(image_paths[i]), None, None, [], decode_error(e))
    for i, image in decoded:
        probabilities = classifier.probabilities(image)
        order = probabilities.argsort()[::-1][:top_k]
        class_id = int(order[0])
        results[i] = Prediction(str(image_paths[i]), model.labels[class_id], class_id,
                                [(model.labels[j], float(probabilities[j])) for j in order])
    return loaded, [results[i] for i in range(len(image_paths))]


def _predict_batches(serve, labels: list[str], images: list[tuple[int, bytes]], top_k: int):
    """(index, prediction) for each image: all in one call, or one by one when that fails."""
    if not images:
        return []
    try:
        return list(zip([i for i, _ in images],
                        _predict(serve, labels, [data for _, data in images], top_k),
                        strict=True))
    except Exception:  # noqa: BLE001 - find which images fail, and why
        answers = []
        for i, data in images:
            try:
                answers.append((i, _predict(serve, labels, [data], top_k)[0]))
            except Exception as e:  # noqa: BLE001 - TF raises several types for bad images
                answers.append((i, Prediction("", None, None, [], decode_error(e))))
        return answers


def _predict(serve, labels: list[str], images: list[bytes], top_k: int) -> list[Prediction]:
    import tensorflow as tf

    outputs = serve(**{features.SERVING_INPUT: tf.constant(images)})
    probabilities = outputs[features.OUTPUT_PROBABILITIES].numpy()
    names = [n.decode() for n in outputs[features.OUTPUT_CLASS_NAMES].numpy()]
    ids = outputs[features.OUTPUT_CLASS_IDS].numpy()
    results = []
    for probs, class_id, name in zip(probabilities, ids, names, strict=True):
        order = probs.argsort()[::-1][:top_k]
        top = [(labels[i], float(probs[i])) for i in order]
        results.append(Prediction("", name, int(class_id), top))
    return results
