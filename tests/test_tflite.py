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

from trainer.ensemble import build_ensemble
from trainer.model import build_model
from trainer.recipes import from_recipe
from trainer.tflite import (
    MIN_CALIBRATION_IMAGES,
    Normalization,
    TfliteMode,
    convert,
    normalization_from_transform,
)

SHAPE = (12, 12, 3)


def tflite_probabilities(tflite: bytes, images: np.ndarray) -> np.ndarray:
    from serving.tflite import TfliteClassifier

    return TfliteClassifier(tflite).batch_probabilities(images)


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
    model = build_ensemble(config, normalized[:64])
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(normalized, labels, epochs=2, batch_size=32, verbose=0)
    return model, normalization, train


@pytest.fixture(scope="module", params=[
    ("classic", "auto", {"model.widths": (8, 16)}),
    ("fast", "float32", {"model.widths": (8, 16)}),
    ("fast", "float32", {"model.widths": (8, 16), "model.members": 2}),
], ids=["classic-auto", "fast-whitened-float32", "fast-ensemble-of-two"])
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


@pytest.mark.parametrize("mode", [TfliteMode.FLOAT32, TfliteMode.INT8])
def test_the_tflite_model_averages_servings_test_time_augmented_views(trained, mode) -> None:
    """Mirroring and shifting are TFLite builtins: the TFLite model answers as serving_default
    (trainer/model.py class_probabilities), int8 included.
    """
    from trainer.model import class_probabilities

    model, normalization, train, _ = trained
    held_out, _ = _pixels(100, 6)
    tflite = convert(model, normalization, SHAPE, mode, list(train[:120]), tta_flip=True,
                     tta_translate=1)
    reference = class_probabilities(model, normalization.apply(held_out), True, 1).numpy()
    probabilities = tflite_probabilities(tflite, held_out)
    assert (probabilities.argmax(1) == reference.argmax(1)).mean() >= AGREEMENT[mode]
    if mode == TfliteMode.FLOAT32:
        plain = tflite_probabilities(convert(model, normalization, SHAPE, mode), held_out)
        assert np.abs(probabilities - plain).max() > 1e-3  # the views changed the answer


def test_the_differences_from_serving_say_how_often_each_network_runs() -> None:
    from trainer.tflite import differences_from_serving

    gray = from_recipe("fast-gray", (28, 28, 1), CLASSES)  # two networks, three views
    assert "it runs each of its 2 networks 3 times per image" in differences_from_serving(gray)[0]
    one = gray.override({"model.members": 1})
    assert "it runs the network 3 times per image" in differences_from_serving(one)[0]
    pair = gray.override({"evaluation.tta_translate": 0})
    assert "runs each of its 2 networks once per image" in differences_from_serving(pair)[0]
    plain = one.override({"evaluation.tta_translate": 0})
    assert len(differences_from_serving(plain)) == 1  # the app's own decoding only


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


def test_the_trainer_writes_an_int8_model_calibrated_on_train_images(
        prepared, tmp_path, caplog) -> None:
    """What the Trainer's export writes (trainer/tflite.py write_tflite_model), on real
    TFRecords and their Transform graph: int8 reads its calibration sample from the train files.
    """
    import tensorflow_transform as tft

    import imagegen
    from serving import tflite as layout
    from serving.tflite import TfliteModelInfo
    from tiny_transform import SIZE
    from trainer.tflite import write_tflite_model

    shape = (SIZE, SIZE, 3)
    config = from_recipe("classic", shape, imagegen.CLASS_NAMES, {
        "export.tflite": "int8", "export.calibration_images": 30, "model.widths": (8, 16)})
    model = build_model(config, None)
    with caplog.at_level(logging.WARNING, logger="trainer.tflite"):
        info = write_tflite_model(model, tft.TFTransformOutput(prepared.transform_graph), config,
                                  str(tmp_path), prepared.train_files)
    assert "int8 calibration on 30 images" in caplog.text
    assert info == TfliteModelInfo.read(tmp_path / layout.TFLITE_DIR)
    assert (info.mode, info.calibration_images, info.num_classes) == ("int8", 30, 3)
    assert (info.height, info.width, info.channels, info.resize_mode) == (*shape, "stretch")
    content = (tmp_path / layout.TFLITE_DIR / layout.MODEL_FILE).read_bytes()
    assert info.size_bytes == len(content)
    assert (tmp_path / layout.TFLITE_DIR / layout.LABELS_FILE).read_text().splitlines() == list(
        imagegen.CLASS_NAMES)
    config = config.override({"export.tflite": "none"})
    assert write_tflite_model(model, None, config, str(tmp_path / "none"), []) is None
    assert not (tmp_path / "none").exists()


def _version_with_tflite(folder, mode: TfliteMode = TfliteMode.FLOAT32):
    """A model folder holding only the TFLite part of a version: what the Pusher checks."""
    from serving import tflite as layout
    from serving.tflite import TfliteModelInfo

    inputs = keras.Input(SHAPE)
    model = keras.Model(inputs, keras.layers.Dense(len(CLASSES))(
        keras.layers.GlobalAveragePooling2D()(inputs)))
    normalization = Normalization.fixed("minus_one_one", SHAPE[2])
    content = convert(model, normalization, SHAPE, mode)
    target = folder / layout.TFLITE_DIR
    target.mkdir(parents=True)
    (target / layout.MODEL_FILE).write_bytes(content)
    (target / layout.LABELS_FILE).write_text("".join(f"{c}\n" for c in CLASSES))
    TfliteModelInfo(mode=str(mode), height=SHAPE[0], width=SHAPE[1], channels=SHAPE[2],
                    resize_mode="stretch", scale=normalization.scale,
                    offset=normalization.offset, num_classes=len(CLASSES),
                    size_bytes=len(content)).write(target)
    return target


def test_the_pusher_runs_the_tflite_model_on_every_image_kind_and_refuses_a_broken_one(
        tmp_path) -> None:
    from components.pusher import PushVerificationError, verify_tflite
    from serving import tflite as layout

    target = _version_with_tflite(tmp_path / "good")
    verify_tflite(str(tmp_path / "good"))

    (target / layout.LABELS_FILE).write_text("red\ngreen\n")  # a class short
    with pytest.raises(PushVerificationError, match="2 class names for a TFLite model of 3"):
        verify_tflite(str(tmp_path / "good"))
    (target / layout.LABELS_FILE).write_text("red\ngreen\nblue\n")
    (target / layout.MODEL_FILE).write_bytes(b"not a flatbuffer")
    with pytest.raises(PushVerificationError, match="does not run in TFLite's interpreter"):
        verify_tflite(str(tmp_path / "good"))


def test_the_tflite_file_goes_with_the_version_only_on_the_evaluators_word(tmp_path) -> None:
    from components.pusher import tflite_push
    from serving import tflite as layout

    model, blessing = tmp_path / "model", tmp_path / "blessing"
    blessing.mkdir()
    model.mkdir()
    assert tflite_push(str(model), str(blessing)) == (False, (
        "the model holds no TFLite file (made with export.tflite none, or a served version "
        "without one handed on unchanged)"))
    _version_with_tflite(model)
    assert tflite_push(str(model), str(blessing))[0] is False  # no verdict: not pushed
    (blessing / layout.TFLITE_NOT_BLESSED_FILE).write_text("1.2 points below\n")
    assert tflite_push(str(model), str(blessing)) == (False, "1.2 points below")
    (blessing / layout.TFLITE_NOT_BLESSED_FILE).unlink()
    (blessing / layout.TFLITE_BLESSED_FILE).write_text("within 0.5 point\n")
    assert tflite_push(str(model), str(blessing)) == (True, "within 0.5 point")


@pytest.mark.parametrize(("tflite", "saved", "blessed", "phrase"), [
    (0.95, 0.95, True, "the same as the SavedModel's 95.0 %"),
    # TFMA's float32 sum: 1/3 as 0.33333334 is no drop.
    (1 / 3, 0.3333333432674408, True, "the same as the SavedModel's 33.3 %"),
    (0.960, 0.963, True, "0.3 points below the SavedModel's 96.3 %"),
    (0.950, 0.963, False, "1.3 points below the SavedModel's 96.3 %, more than the 0.5"),
    (0.970, 0.963, True, "0.7 points above"),
    (0.970, None, False, "accuracy was not found"),
])
def test_the_tflite_verdict_states_both_accuracies_and_the_allowed_drop(
        tflite, saved, blessed, phrase) -> None:
    from components.tflite_evaluation import verdict

    ok, why = verdict("int8", "test", 300, tflite, saved, 0.005)
    assert ok is blessed and phrase in why
    assert why.endswith("pushed with the version") if blessed else "not pushed" in why


def test_app_pixels_follow_the_resize_modes_the_docs_describe() -> None:
    """What docs/tflite.md tells an app to do: an image at the model's size is used as it is;
    `crop` keeps the centred box of the target's aspect ratio; `pad` fits it inside, centred,
    with black bars.
    """
    from trainer.tflite import app_pixels

    exact = np.random.default_rng(4).integers(0, 256, size=SHAPE, dtype=np.uint8)
    (same,) = app_pixels([tf.io.encode_png(exact).numpy()], *SHAPE, "stretch")
    np.testing.assert_array_equal(same, exact)

    wide = np.zeros((20, 60, 3), np.uint8)  # thirds: red, green, blue
    for third in range(3):
        wide[:, 20 * third:20 * (third + 1), third] = 255
    encoded = [tf.io.encode_png(wide).numpy()]
    (crop,) = app_pixels(encoded, *SHAPE, "crop")
    assert (crop[:, :, 1] > 250).all() and (crop[:, :, [0, 2]] < 5).all()  # the green centre
    (pad,) = app_pixels(encoded, *SHAPE, "pad")  # 60x20 -> 12x4, rows 4..7
    assert (pad[:4] == 0).all() and (pad[8:] == 0).all()
    assert pad[5, 0, 0] > 250 and pad[5, 6, 1] > 250 and pad[5, 11, 2] > 250


def test_a_reused_tflite_verdict_is_judged_again_under_this_runs_max_drop() -> None:
    from components.tflite_evaluation import rejudged
    from serving.tflite import TfliteEvaluation

    earlier = TfliteEvaluation(
        mode="int8", split="test", examples=300, accuracy=0.96, per_class=(),
        saved_model_accuracy=0.963, max_drop=0.005, blessed=True, why="...", size_bytes=1,
        saved_model_bytes=2, latency_ms_median=1.0, latency_ms_p99=2.0, latency_runs=200)
    strict = rejudged(earlier, 0.0)
    assert (strict.blessed, strict.max_drop, strict.accuracy) == (False, 0.0, 0.96)
    assert "more than the 0.0 points below it allowed" in strict.why
    assert rejudged(earlier, 0.005).blessed


@pytest.mark.parametrize(("recipe", "channels"), [("fast-gray", 1), ("fast-wide", 3)])
def test_the_other_scratch_recipes_convert_to_full_integer(recipe, channels) -> None:
    """The recipes `classic` and `fast` are trained and compared above; `fast-gray` (one
    channel) and `fast-wide` (Muon-trained, bfloat16 where the CPU has it) convert in the
    strictest mode too.
    """
    shape = (12, 12, channels)
    config = from_recipe(recipe, shape, CLASSES, {"model.widths": (8, 8, 8)})
    images = np.random.default_rng(5).integers(0, 256, size=(MIN_CALIBRATION_IMAGES, *shape),
                                               dtype=np.uint8)
    normalization = Normalization.standardize([0.5] * channels, [0.25] * channels)
    model = build_model(config, normalization.apply(images[:64]).numpy())
    tflite = convert(model, normalization, shape, TfliteMode.INT8, list(images))
    reference = tf.nn.softmax(tf.cast(model(normalization.apply(images[:50]), training=False),
                                      tf.float32)).numpy()
    assert (tflite_probabilities(tflite, images[:50]).argmax(1) == reference.argmax(1)).mean() \
        >= 0.8


def test_int8_survives_pooled_convs_whose_channels_differ_in_scale_by_far() -> None:
    """Scale-free BN after a max pool lets training grow a conv's channels apart (trained
    fast-gray on MNIST: std 0.7 to 23,000 in one tensor), which BN cancels; int8 quantizes the
    tensor before the BN with one range, and before the fix answered one class for every image.
    The same drift made here by hand leaves the Keras model's function as it was.
    """
    config = from_recipe("fast-gray", (12, 12, 1), CLASSES, {"model.widths": (8, 8, 8)})
    images = np.random.default_rng(6).integers(0, 256, size=(MIN_CALIBRATION_IMAGES, 12, 12, 1),
                                               dtype=np.uint8)
    normalization = Normalization.standardize([0.5], [0.25])
    model = build_model(config, normalization.apply(images[:64]).numpy())
    inputs = normalization.apply(images[:50])
    before = tf.nn.softmax(model(inputs, training=False)).numpy()
    layers = model.layers
    drifted = 0
    for conv, pool, norm in zip(layers, layers[1:], layers[2:], strict=False):
        if not (isinstance(conv, keras.layers.Conv2D)
                and isinstance(pool, keras.layers.MaxPooling2D)
                and isinstance(norm, keras.layers.BatchNormalization)):
            continue
        factor = np.logspace(0, 4, conv.filters).astype(np.float32)
        conv.kernel.assign(np.asarray(conv.kernel) * factor)
        norm.moving_mean.assign(np.asarray(norm.moving_mean) * factor)
        norm.moving_variance.assign(
            (np.asarray(norm.moving_variance) + norm.epsilon) * factor**2 - norm.epsilon)
        drifted += 1
    assert drifted == 2  # the two blocks of a 12x12 image
    reference = tf.nn.softmax(model(inputs, training=False)).numpy()
    np.testing.assert_allclose(reference, before, atol=1e-4)  # the same function
    weights = [np.array(w) for w in model.weights]
    tflite = convert(model, normalization, (12, 12, 1), TfliteMode.INT8, list(images))
    assert (tflite_probabilities(tflite, images[:50]).argmax(1) == reference.argmax(1)).mean() \
        >= 0.8
    # The Keras model is handed back with its own weights.
    assert all(np.array_equal(a, np.array(b))
               for a, b in zip(weights, model.weights, strict=True))


def test_the_tflite_scoring_runs_beside_tfma_and_hands_over_its_error() -> None:
    from components.tflite_evaluation import scoring_in_background

    def fails(stop):
        raise ValueError("the test split holds no examples")

    with scoring_in_background(fails) as scores, pytest.raises(ValueError, match="no examples"):
        scores()
    with scoring_in_background(None) as scores:
        assert scores() is None  # a reused evaluation: nothing scored


def test_a_failed_tfma_stops_the_tflite_scoring_instead_of_waiting_for_it() -> None:
    import threading

    from components.tflite_evaluation import scoring_in_background

    started, stopped = threading.Event(), []

    def score(stop):
        started.set()
        stopped.append(stop.wait(timeout=30))  # a batch boundary, waiting for the stop

    with pytest.raises(RuntimeError, match="TFMA"), scoring_in_background(score):
        assert started.wait(timeout=30)
        raise RuntimeError("TFMA failed")
    assert stopped == [True]


def test_an_image_app_pixels_cannot_decode_is_named_in_one_line() -> None:
    """app_pixels decodes in a traced graph, whose errors start with where they happened: the
    verdict ("could not be scored: ...") and the Pusher's check keep the line that says what.
    """
    from serving.predict import error_line
    from trainer.tflite import app_pixels

    with pytest.raises(tf.errors.InvalidArgumentError) as raised:
        app_pixels([b"not an image"], *SHAPE, "stretch")
    line = error_line(raised.value)
    assert "Graph execution error" not in line and "\n" not in line
    assert "image" in line.lower(), line
