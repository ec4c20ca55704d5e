"""serving_default takes every image format and mode ingest accepts; the Pusher checks it does.

The models are exported the way trainer/export.py exports the pipeline's (ServingModule, the
real decode path of trainer/preprocessing.py), with a tiny Keras model and a stand-in for the
Transform output, so no pipeline run is needed.
"""

from __future__ import annotations

from pathlib import Path

import keras
import pytest
import tensorflow as tf

from components.pusher import PushVerificationError, verify_saved_model
from schema import features
from trainer.config import TrainerConfig
from trainer.export import export_serving_model
from trainer.image_kinds import GRAY_MODEL_REFUSES, JPEG_KINDS, PNG_KINDS, sample_images
from trainer.preprocessing import decode_images

CLASS_NAMES = ("blue", "green", "red")
SHAPE = (6, 6)


class _Transform(tf.Module):
    """The Transform layer's part that matters here: the decode, then a fixed standardization."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self._channels = channels

    def __call__(self, raw: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        images = decode_images(raw[features.IMAGE_KEY], *SHAPE, self._channels)
        return {features.IMAGE_XF: (images - 0.5) / 0.25}


class _TransformOutput:
    """What ServingModule uses of tft.TFTransformOutput."""

    def __init__(self, channels: int) -> None:
        self._layer = _Transform(channels)

    def transform_features_layer(self) -> _Transform:
        return self._layer

    def raw_feature_spec(self) -> dict:
        return features.raw_example_spec()


def _export(path: Path, channels: int) -> str:
    model = keras.Sequential([keras.Input((*SHAPE, channels)), keras.layers.Flatten(),
                              keras.layers.Dense(len(CLASS_NAMES))])
    config = TrainerConfig(class_names=CLASS_NAMES, image_shape=(*SHAPE, channels))
    export_serving_model(model, _TransformOutput(channels), config, str(path))
    (path / "assets").mkdir(exist_ok=True)
    (path / "assets" / features.LABELS_ASSET).write_text("\n".join(CLASS_NAMES) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[int, str]:
    root = tmp_path_factory.mktemp("serving-kinds")
    return {channels: _export(root / f"c{channels}", channels) for channels in (1, 3)}


def _probabilities(model_dir: str, images: list[bytes]):
    serve = tf.saved_model.load(model_dir).signatures[features.SERVING_SIGNATURE]
    return serve(**{features.SERVING_INPUT: tf.constant(images)})[
        features.OUTPUT_PROBABILITIES].numpy()


@pytest.mark.parametrize("channels", [1, 3])
def test_serving_default_takes_every_kind_ingest_accepts(models, channels: int) -> None:
    images = sample_images(channels)
    expected = set(JPEG_KINDS + PNG_KINDS) - (set(GRAY_MODEL_REFUSES) if channels == 1 else set())
    assert set(images) == expected
    probabilities = _probabilities(models[channels], list(images.values()))
    assert probabilities.shape == (len(images), len(CLASS_NAMES))
    assert abs(probabilities.sum(axis=-1) - 1).max() < 1e-4
    verify_saved_model(models[channels])  # the Pusher's check sends the same set


def test_a_gray_model_refuses_cmyk_jpegs_as_documented(models) -> None:
    cmyk = sample_images(3)["JPEG CMYK"]
    with pytest.raises(tf.errors.InvalidArgumentError):
        _probabilities(models[1], [cmyk])


class _FourChannels(tf.Module):
    """A model that decodes to RGBA: it takes PNGs but refuses every JPEG (JPEG has no alpha),
    which is why ingest never makes a 4-channel model and the Pusher must not publish one.
    """

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
        decoded = tf.map_fn(
            lambda b: tf.io.decode_image(b, channels=4, expand_animations=False), image,
            fn_output_signature=tf.TensorSpec([None, None, 4], tf.uint8))
        batch = tf.shape(decoded)[0]
        return {features.OUTPUT_PROBABILITIES: tf.fill([batch, len(CLASS_NAMES)], 1 / 3)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def from_examples(self, examples: tf.Tensor) -> dict[str, tf.Tensor]:
        return self.serve(examples)


def test_verification_names_the_kinds_a_model_refuses(tmp_path: Path) -> None:
    module = _FourChannels()
    tf.saved_model.save(module, str(tmp_path), signatures={
        features.SERVING_SIGNATURE: module.serve.get_concrete_function(),
        features.EXAMPLES_SIGNATURE: module.from_examples.get_concrete_function(),
    })
    with pytest.raises(PushVerificationError, match="JPEG RGB") as error:
        verify_saved_model(str(tmp_path))
    assert "JPEG L (" in str(error.value)
    assert "PNG RGB" not in str(error.value)
