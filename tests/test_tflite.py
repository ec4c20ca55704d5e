"""TFLite models of small trained networks, through the real converter and interpreter.

Measured on 300 held-out images (classic at auto precision, bfloat16 compute on an AVX512-BF16
host; fast with patch whitening at float32; training seeded), argmax agreement with the Keras
model: classic 1.0 in every mode; fast 1.0 float32 and float16, 0.987 dynamic, 0.993 int8, the
Keras model itself 87 % right. The bars (AGREEMENT) leave room for other CPUs; a wrong
normalization inside the model drops agreement to 0.87 or lower (docs/tflite.md).
"""

from __future__ import annotations

import logging

import keras
import numpy as np
import pytest
import tensorflow as tf

from trainer.model import build_model
from trainer.recipes import from_recipe
from trainer.tflite import (
    MIN_CALIBRATION_IMAGES,
    Normalization,
    TfliteMode,
    convert,
    normalization_from_transform,
    tflite_probabilities,
)

SHAPE = (12, 12, 3)
CLASSES = ("red", "green", "blue")
# Argmax agreement with the Keras model that each mode must reach.
AGREEMENT = {TfliteMode.FLOAT32: 0.95, TfliteMode.FLOAT16: 0.95, TfliteMode.DYNAMIC: 0.95,
             TfliteMode.INT8: 0.90}


def _pixels(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images whose class is the brighter channel, noisy enough not to be trivial."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(CLASSES), n)
    pixels = rng.integers(0, 200, size=(n, *SHAPE)).astype(np.int64)
    pixels[np.arange(n), :, :, labels] += rng.integers(0, 50, size=(n, *SHAPE[:2]))
    return np.clip(pixels, 0, 255).astype(np.uint8), labels


def _trained(recipe: str, precision: str, changes: dict) -> tuple[keras.Model, Normalization,
                                                                    np.ndarray]:
    keras.utils.set_random_seed(0)
    train, labels = _pixels(400, 0)
    unit = train.reshape(-1, SHAPE[2]) / 255.0
    normalization = Normalization.standardize(unit.mean(axis=0), unit.std(axis=0))
    config = from_recipe(recipe, SHAPE, CLASSES, {"runtime.precision": precision, **changes})
    normalized = normalization.apply(train).numpy()
    model = build_model(config, normalized[:64])
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(normalized, labels, epochs=2, batch_size=32, verbose=0)
    return model, normalization, train


@pytest.fixture(scope="module", params=[
    ("classic", "auto", {"model.widths": (8, 16)}),
    ("fast", "float32", {"model.widths": (8, 16)}),
], ids=["classic-auto", "fast-whitened-float32"])
def trained(request) -> tuple[keras.Model, Normalization, np.ndarray, str]:
    recipe, precision, changes = request.param
    return (*_trained(recipe, precision, changes), precision)


def test_every_mode_agrees_with_keras_on_uint8_pixels(trained, caplog) -> None:
    model, normalization, train, precision = trained
    held_out, labels = _pixels(300, 1)
    reference = tf.nn.softmax(model(normalization.apply(held_out), training=False)).numpy()
    assert (reference.argmax(1) == labels).mean() > 0.7  # the model learned something
    policies = [layer.dtype_policy.name for layer in model.layers]
    sizes = {}
    for mode in AGREEMENT:
        with caplog.at_level(logging.WARNING, logger="trainer.tflite"):
            tflite = convert(model, normalization, SHAPE, mode, list(train[:120]))
        assert "calibration" not in caplog.text
        sizes[mode] = len(tflite)
        interpreter = tf.lite.Interpreter(model_content=tflite)
        (source,) = interpreter.get_input_details()
        assert source["dtype"] == np.uint8 and list(source["shape"]) == [1, *SHAPE]
        if mode == TfliteMode.INT8:  # raw pixels in: the input's quantization is the identity
            assert source["quantization"] == (1.0, 0)
        probabilities = tflite_probabilities(tflite, held_out)
        assert probabilities.shape == (300, len(CLASSES))
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-2)
        agreement = (probabilities.argmax(1) == reference.argmax(1)).mean()
        assert agreement >= AGREEMENT[mode], (mode, agreement)
        if mode == TfliteMode.FLOAT32:
            # The Keras reference computes in bfloat16 under mixed precision, TFLite in float32.
            tolerance = 1e-4 if precision == "float32" else 3e-2
            np.testing.assert_allclose(probabilities, reference, atol=tolerance)
    assert sizes[TfliteMode.INT8] < sizes[TfliteMode.FLOAT16] < sizes[TfliteMode.FLOAT32]
    assert sizes[TfliteMode.DYNAMIC] < sizes[TfliteMode.FLOAT32]
    # Converted computing in float32, the model is handed back with its own policies.
    assert [layer.dtype_policy.name for layer in model.layers] == policies


def test_int8_calibration_warns_under_its_minimum_and_needs_images(caplog) -> None:
    inputs = keras.Input(SHAPE)
    model = keras.Model(inputs, keras.layers.Dense(len(CLASSES))(
        keras.layers.GlobalAveragePooling2D()(inputs)))
    normalization = Normalization.fixed("minus_one_one", SHAPE[2])
    few, _ = _pixels(20, 2)
    with caplog.at_level(logging.WARNING, logger="trainer.tflite"):
        # An array, as calibration_sample gives them (not a list: no truth value).
        tflite = convert(model, normalization, SHAPE, TfliteMode.INT8, few)
    assert f"on 20 images (fewer than {MIN_CALIBRATION_IMAGES})" in caplog.text
    assert tflite_probabilities(tflite, few).shape == (20, len(CLASSES))
    with pytest.raises(ValueError, match="calibration images"):
        convert(model, normalization, SHAPE, TfliteMode.INT8, [])


def test_an_op_outside_the_builtins_fails_naming_it() -> None:
    inputs = keras.Input(SHAPE)
    # Antialiased resizing is ScaleAndTranslate, a TF op TFLite's builtins lack.
    resized = keras.layers.Lambda(
        lambda x: tf.image.resize(x, [6, 6], antialias=True))(inputs)
    model = keras.Model(inputs, keras.layers.Dense(len(CLASSES))(
        keras.layers.GlobalAveragePooling2D()(resized)))
    normalization = Normalization.fixed("raw255", SHAPE[2])
    with pytest.raises(RuntimeError, match="float32 conversion lacks tf.ScaleAndTranslate"):
        convert(model, normalization, SHAPE, TfliteMode.FLOAT32)


def test_int8_fails_naming_an_op_it_would_leave_in_float() -> None:
    inputs = keras.Input(SHAPE)
    # TFLite has SIN only in float: the converter would keep it there, between (de)quantizes.
    model = keras.Model(inputs, keras.layers.Dense(len(CLASSES))(
        keras.layers.GlobalAveragePooling2D()(keras.layers.Lambda(tf.math.sin)(inputs))))
    normalization = Normalization.fixed("raw255", SHAPE[2])
    images, _ = _pixels(MIN_CALIBRATION_IMAGES, 3)
    with pytest.raises(RuntimeError, match="int8 conversion left SIN in float"):
        convert(model, normalization, SHAPE, TfliteMode.INT8, list(images))
    assert len(convert(model, normalization, SHAPE, TfliteMode.DYNAMIC)) > 0


def test_normalizations_match_the_transform_graph() -> None:
    pixels = np.array([[[[0, 51, 255]]]], np.uint8)
    unit = pixels / 255.0
    mean, std = np.array([0.1, 0.2, 0.3]), np.array([0.5, 0.25, 2.0])
    np.testing.assert_allclose(Normalization.standardize(mean, std).apply(pixels),
                               (unit - mean) / std, rtol=1e-6)
    np.testing.assert_allclose(Normalization.fixed("minus_one_one", 3).apply(pixels),
                               unit * 2 - 1, rtol=1e-6)
    np.testing.assert_allclose(Normalization.fixed("raw255", 3).apply(pixels), pixels, rtol=1e-6)
    with pytest.raises(ValueError, match="no TFLite model"):
        convert(keras.Sequential(), Normalization.fixed("raw255", 3), SHAPE, TfliteMode.NONE)


def test_normalization_read_from_the_transform_graph_matches_it(prepared) -> None:
    """The standardization tf.Transform computed on real TFRecords, read back by probing."""
    import tensorflow_transform as tft

    import imagegen
    from schema import features
    from tiny_transform import SIZE

    output = tft.TFTransformOutput(prepared.transform_graph)
    shape = (SIZE, SIZE, 3)
    normalization = normalization_from_transform(output, shape)
    assert normalization.scale[0] > 1.0  # standardized: pixel std is well under 1
    rng = np.random.default_rng(5)
    encoded = [imagegen.image_bytes(name, rng, size=SIZE) for name in imagegen.CLASS_NAMES]
    pixels = np.stack([tf.io.decode_png(data, channels=3).numpy() for data in encoded])
    transformed = output.transform_features_layer()(
        {features.IMAGE_KEY: tf.reshape(tf.constant(encoded), [-1, 1])})[features.IMAGE_XF]
    np.testing.assert_allclose(normalization.apply(pixels), transformed, atol=1e-4)
