"""Offline prediction from a TF Serving model directory, loaded the way TF Serving loads it."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from schema import features


class ModelDirError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class Prediction:
    path: str
    class_name: str
    class_id: int
    top: list[tuple[str, float]]


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


def predict_files(
    model_dir: str | Path, image_paths: Sequence[str | Path], top_k: int = 3
) -> tuple[Path, list[Prediction]]:
    import tensorflow as tf

    version = newest_version(model_dir)
    missing = [str(p) for p in image_paths if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"image files not found: {missing}")
    serve = tf.saved_model.load(str(version)).signatures[features.SERVING_SIGNATURE]
    labels = (version / "assets" / features.LABELS_ASSET).read_text(encoding="utf-8").splitlines()
    images = [Path(p).read_bytes() for p in image_paths]
    outputs = serve(**{features.SERVING_INPUT: tf.constant(images)})
    probabilities = outputs[features.OUTPUT_PROBABILITIES].numpy()
    names = [n.decode() for n in outputs[features.OUTPUT_CLASS_NAMES].numpy()]
    ids = outputs[features.OUTPUT_CLASS_IDS].numpy()
    results = []
    for path, probs, class_id, name in zip(image_paths, probabilities, ids, names, strict=True):
        order = probs.argsort()[::-1][:top_k]
        top = [(labels[i], float(probs[i])) for i in order]
        results.append(Prediction(str(path), name, int(class_id), top))
    return version, results
