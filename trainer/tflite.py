"""TFLite models of the trained network, for apps that classify on the device (issue 36).

The SavedModel takes encoded image bytes and runs the Transform graph; an app on a phone has
decoded pixels already and TFLite has no image decoder. So the TFLite model takes uint8
pixels [1, H, W, C] at the model's size and does the rest inside: cast to float, the same
per-channel normalization the Transform graph applies, the Keras model (no test-time
augmentation), softmax. Its output is float32 probabilities [1, num_classes] in every mode
(int8 included: the converter dequantizes the last op), so an app reads them the same way.

Only TFLite builtin ops are allowed (int8 builtins for int8): an op they lack fails the
conversion naming it, never falling back to select-TF ops silently.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import re
import time
from collections.abc import Iterable, Iterator, Sequence

import keras
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from schema import features
from serving import tflite as layout
from serving.tflite import TfliteModelInfo
from trainer.config import STANDARDIZE, TfliteMode, TrainerConfig
from trainer.model import class_probabilities
from trainer.preprocessing import decode_images, fixed_normalization

log = logging.getLogger(__name__)

# Under this many calibration images the int8 ranges are a guess: warn with the count.
MIN_CALIBRATION_IMAGES = 100


@dataclasses.dataclass(frozen=True)
class Normalization:
    """Per-channel affine map of pixels in [0, 1]: normalized = pixels * scale + offset.

    Both kinds the Transform graph applies are affine: standardizing ((x - mean) / std) and a
    backbone's fixed normalization.
    """

    scale: tuple[float, ...]
    offset: tuple[float, ...]

    @classmethod
    def standardize(cls, mean: Sequence[float], std: Sequence[float]) -> Normalization:
        return cls(tuple(1.0 / float(s) for s in std),
                   tuple(-float(m) / float(s) for m, s in zip(mean, std, strict=True)))

    @classmethod
    def fixed(cls, name: str, channels: int) -> Normalization:
        scale, offset = fixed_normalization(name)
        return cls((scale,) * channels, (offset,) * channels)

    def apply(self, pixels: tf.Tensor) -> tf.Tensor:
        """uint8 (or float 0..255) pixels, normalized as the Transform graph does."""
        unit = tf.cast(pixels, tf.float32) / 255.0
        return unit * tf.constant(self.scale, tf.float32) + tf.constant(self.offset, tf.float32)


def normalization_from_transform(tf_transform_output: tft.TFTransformOutput,
                                 image_shape: Sequence[int]) -> Normalization:
    """The Transform graph's normalization, read by sending it a black and a white image.

    The statistics are constants inside the graph (tf.Transform's analyzers baked them in), and
    every normalization it applies is affine per channel, so two probes determine it.
    """
    height, width, channels = image_shape
    probes = []
    for value in (0, 255):
        pixels = tf.fill([height, width, channels], tf.constant(value, tf.uint8))
        probes.append(tf.io.encode_png(pixels))
    layer = tf_transform_output.transform_features_layer()
    out = layer({features.IMAGE_KEY: tf.reshape(tf.stack(probes), [-1, 1])})[features.IMAGE_XF]
    black, white = (np.asarray(out[i]).reshape(-1, channels)[0] for i in range(2))
    return Normalization(tuple(float(v) for v in white - black), tuple(float(v) for v in black))


@contextlib.contextmanager
def _float32_compute(model: keras.Model) -> Iterator[None]:
    """The model computing in float32 while it is traced: TFLite has no bfloat16, and a model
    trained under mixed_bfloat16 keeps float32 weights, so only the compute dtype changes.
    """
    layers = list(model._flatten_layers(include_self=True, recursive=True))
    policies = [layer.dtype_policy for layer in layers]
    try:
        for layer in layers:
            layer.dtype_policy = "float32"
        yield
    finally:
        for layer, policy in zip(layers, policies, strict=True):
            layer.dtype_policy = policy


def _producer(layer: keras.layers.Layer) -> keras.layers.Layer | None:
    """The layer whose output is `layer`'s only input, if it is used once, by `layer` only."""
    if len(layer._inbound_nodes) != 1 or len(layer._inbound_nodes[0].input_tensors) != 1:
        return None
    producer = layer._inbound_nodes[0].input_tensors[0]._keras_history.operation
    if not isinstance(producer, keras.layers.Layer) or len(producer._outbound_nodes) != 1:
        return None
    return producer


def _pooled_batch_norms(model: keras.Model) -> list[tuple[keras.layers.Layer,
                                                            keras.layers.BatchNormalization]]:
    """(conv, BN) pairs of conv -> max pool -> BN (channels last, each output used once)."""
    pairs = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if (not isinstance(layer, keras.layers.BatchNormalization)
                or layer.axis not in (-1, 3, [-1], [3])):
            continue
        pool = _producer(layer)
        if not isinstance(pool, keras.layers.MaxPooling2D):
            continue
        conv = _producer(pool)
        if isinstance(conv, keras.layers.Conv2D) and conv.data_format == "channels_last":
            pairs.append((conv, layer))
    return pairs


@contextlib.contextmanager
def _pool_batch_norm_folded(model: keras.Model) -> Iterator[None]:
    """A conv -> max pool -> BN, with BN's per-channel factor moved into the conv, while the model
    is traced: the same function, with the conv's output already at BN's scale.

    The converter folds a BN into the conv just before it, never across a pool, and int8
    quantizes activations per tensor. With scale-free BN the conv's kernel norms are free to
    grow in training (the BN cancels them), so one tensor holds channels of very different
    scales, and one int8 step for all of them rounds the ordinary ones to zero: trained
    fast-gray answered one class (docs/tflite.md has the figures). A max pool commutes with a
    positive per-channel factor f = gamma / sqrt(variance + eps), so kernel * f -> pool -> BN
    with mean * f, variance 1 - eps (and gamma 1) computes what it did, up to rounding. A pair
    with a factor that is not positive (a negative gamma) is left as it is.
    """
    saved = []
    try:
        for conv, norm in _pooled_batch_norms(model):
            mean = np.asarray(norm.moving_mean, np.float64)
            factor = 1.0 / np.sqrt(np.asarray(norm.moving_variance, np.float64) + norm.epsilon)
            if norm.scale:
                factor = factor * np.asarray(norm.gamma, np.float64)
            if not np.all(factor > 0) or not np.all(np.isfinite(factor)):
                continue
            variables = [conv.kernel, norm.moving_mean, norm.moving_variance]
            values = [factor * np.asarray(conv.kernel, np.float64), mean * factor,
                      np.full_like(mean, 1.0 - norm.epsilon)]
            if conv.use_bias:
                variables.append(conv.bias)
                values.append(factor * np.asarray(conv.bias, np.float64))
            if norm.scale:
                variables.append(norm.gamma)
                values.append(np.ones_like(mean))
            saved.extend((variable, np.asarray(variable)) for variable in variables)
            for variable, value in zip(variables, values, strict=True):
                variable.assign(value.astype(variable.dtype))
        yield
    finally:
        for variable, value in reversed(saved):
            variable.assign(value)


def _serving_function(model: keras.Model, normalization: Normalization,
                      image_shape: Sequence[int], pixel_dtype: tf.DType, tta_flip: bool,
                      tta_translate: int):
    height, width, channels = image_shape
    if len(normalization.scale) != channels:
        raise ValueError(f"normalization has {len(normalization.scale)} channels, "
                         f"the image {channels}")

    @tf.function(input_signature=[tf.TensorSpec([1, height, width, channels], pixel_dtype,
                                                name="pixels")])
    def classify(pixels: tf.Tensor) -> tf.Tensor:
        # serving_default's own test-time augmentation: mirroring (REVERSE_V2) and shifts
        # (MIRROR_PAD, STRIDED_SLICE) are TFLite builtins, int8 included.
        return class_probabilities(model, normalization.apply(pixels), tta_flip, tta_translate)

    return classify


def convert(model: keras.Model, normalization: Normalization, image_shape: Sequence[int],
            mode: TfliteMode, calibration_images: Iterable[np.ndarray] | None = None,
            tta_flip: bool = False, tta_translate: int = 0) -> bytes:
    """The .tflite bytes of uint8 pixels [1, H, W, C] -> normalization -> model -> softmax,
    averaged over serving_default's test-time augmented views (trainer/model.py
    class_probabilities) when `tta_flip` / `tta_translate` ask for them.

    `calibration_images` (uint8 [H, W, C] each, a sample of the training images) set the int8
    ranges; the other modes need none.
    """
    mode = TfliteMode(mode)
    if mode == TfliteMode.NONE:
        raise ValueError("no TFLite model is made in mode 'none'")
    # For int8 the converter quantizes a float input to uint8 itself; for the others the
    # model casts its uint8 input to float.
    int8 = mode == TfliteMode.INT8
    function = _serving_function(model, normalization, image_shape,
                                 tf.float32 if int8 else tf.uint8, tta_flip, tta_translate)
    # Frozen first: the converter's own freezing fails on the variables Keras 3.15 makes
    # under TF 2.16 ("missing attribute 'value'" on a ReadVariableOp, an LLVM abort).
    # int8 quantizes each activation tensor with one range: a pooled conv's channels must be
    # at BN's scale before the pool (_pool_batch_norm_folded); the other modes keep the weights.
    folded = _pool_batch_norm_folded(model) if int8 else contextlib.nullcontext()
    with _float32_compute(model), folded:
        frozen = convert_variables_to_constants_v2(function.get_concrete_function())
    # The model as trackable object: without one the converter takes its deprecated path.
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen], model)
    return _convert(converter, mode, calibration_images)


def _convert(converter: tf.lite.TFLiteConverter, mode: TfliteMode,
             calibration_images: Iterable[np.ndarray] | None) -> bytes:
    int8 = mode == TfliteMode.INT8
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if mode == TfliteMode.FLOAT16:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif mode == TfliteMode.DYNAMIC:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif int8:
        # An array (calibration_sample's) or any iterable of images; `or ()` would ask an
        # array for its truth value.
        images = [np.asarray(image, np.uint8)
                  for image in (() if calibration_images is None else calibration_images)]
        if not images:
            raise ValueError("int8 quantization needs calibration images; none were given")
        if len(images) < MIN_CALIBRATION_IMAGES:
            log.warning("int8 calibration on %d images (fewer than %d): its ranges may not "
                        "fit the data", len(images), MIN_CALIBRATION_IMAGES)
        # An app sends raw pixels, so the input's quantization must be the identity on 0..255:
        # the first calibration sample spans the full range to pin it (scale 1, zero point 0).
        full_range = np.zeros_like(images[0])
        full_range.reshape(-1)[-1] = 255

        def representative() -> Iterable[list[np.ndarray]]:
            for image in [full_range, *images]:
                yield [image[np.newaxis].astype(np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.float32
    try:
        tflite = converter.convert()
    except Exception as error:  # ConverterError: its text names the op
        ops = sorted(set(re.findall(r"'(tf\.\w+)' op is neither", str(error))
                         + re.findall(r"not yet supported for op: '(\w+)'", str(error))))
        lacking = f" lacks {', '.join(ops)}" if ops else " failed"
        raise RuntimeError(f"TFLite {mode} conversion{lacking}: only TFLite builtin ops are "
                           "converted, never select-TF ops; train with export.tflite none for no "
                           f"TFLite model. {error}") from error
    if int8 and (float_ops := _float_ops(tflite)):
        # The converter keeps an op it cannot quantize in float between (de)quantize ops, even
        # with int8 builtins only: an integer-only accelerator could not run the model.
        raise RuntimeError(f"TFLite int8 conversion left {', '.join(float_ops)} in float: "
                           "the model cannot be quantized to full integer; export.tflite "
                           "dynamic quantizes its weights only, none makes no TFLite model")
    return tflite


def _float_ops(tflite: bytes) -> list[str]:
    """The ops of a .tflite model that compute in float, other than (de)quantizing."""
    interpreter = tf.lite.Interpreter(model_content=tflite)
    dtypes = {tensor["index"]: tensor["dtype"] for tensor in interpreter.get_tensor_details()}
    names = set()
    for op in interpreter._get_ops_details():
        tensors = [index for index in [*op["inputs"], *op["outputs"]] if index >= 0]
        if (op["op_name"] not in ("QUANTIZE", "DEQUANTIZE")
                and any(dtypes[index] == np.float32 for index in tensors)):
            names.add(op["op_name"])
    return sorted(names)


def app_pixels(encoded: Sequence[bytes], height: int, width: int, channels: int,
               resize_mode: str, chunk: int = 256) -> np.ndarray:
    """uint8 [n, H, W, C] of encoded images, made as an app must make the TFLite input: decoded
    to the model's channels, given its size as the Transform graph does (the same
    decode_images), rounded to uint8. What the Evaluator scores and `predict --tflite` sends.
    Decoded `chunk` images at a time, so a large split of photos needs little memory.
    """
    decode = _app_pixels_function(height, width, channels, resize_mode)
    parts = [np.zeros([0, height, width, channels], np.uint8)]
    for start in range(0, len(encoded), chunk):
        parts.append(decode(tf.constant(list(encoded[start:start + chunk]))).numpy())
    return np.concatenate(parts)


@functools.lru_cache(maxsize=8)
def _app_pixels_function(height: int, width: int, channels: int,
                         resize_mode: str) -> tf.types.experimental.GenericFunction:
    """app_pixels' decode as one traced graph per input shape: decode_images' map_fn run
    eagerly goes image by image through Python (docs/tflite.md has the figures).
    """

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def decode(encoded: tf.Tensor) -> tf.Tensor:
        images = decode_images(encoded, height, width, channels, resize_mode)
        return tf.cast(tf.round(tf.clip_by_value(images, 0.0, 1.0) * 255), tf.uint8)

    return decode


def differences_from_serving(config: TrainerConfig) -> tuple[str, ...]:
    """How the TFLite model's answers may differ from serving_default's, and what its test-time
    augmentation costs.
    """
    found = []
    views = tta_views(config)
    members = config.model.members
    networks = f"each of its {members} networks" if members > 1 else "the network"
    if views > 1:
        found.append(f"none in test-time augmentation: as serving_default does, it averages "
                     f"{views} views of each image, so it runs {networks} {views} times per "
                     "image")
    elif members > 1:
        found.append(f"none: as serving_default does, it runs {networks} once per image and "
                     "averages their logits")
    found.append("the app decodes and resizes the image itself (serving_default takes the "
                 "encoded file and does both in the Transform graph)")
    return tuple(found)


def tta_views(config: TrainerConfig) -> int:
    """How many times serving_default (and the TFLite model) run the network per image."""
    return (2 if config.evaluation.tta_flip else 1) * (3 if config.evaluation.tta_translate
                                                       else 1)


def calibration_sample(train_files: Sequence[str], config: TrainerConfig) -> np.ndarray:
    """A seeded uniform sample of `export.calibration_images` train images, as app pixels.

    Reservoir sampling over one pass of the split: a split written class by class, or in
    shards of one class, still gives every class its share (a shuffle buffer would not).
    """
    count = config.export.calibration_images
    files = sorted(f for pattern in train_files for f in tf.io.gfile.glob(pattern))
    rng = np.random.default_rng(config.runtime.seed)
    chosen: list[bytes] = []
    for seen, record in enumerate(tf.data.TFRecordDataset(files, compression_type="GZIP")):
        if seen < count:
            chosen.append(record.numpy())
        elif (slot := int(rng.integers(0, seen + 1))) < count:
            chosen[slot] = record.numpy()
    spec = {features.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string)}
    encoded = [tf.io.parse_single_example(record, spec)[features.IMAGE_KEY].numpy()
               for record in chosen]
    return app_pixels(encoded, *config.image_shape, str(config.model.resize_mode))


def normalization_of(config: TrainerConfig,
                     tf_transform_output: tft.TFTransformOutput) -> Normalization:
    if config.normalization == STANDARDIZE:
        return normalization_from_transform(tf_transform_output, config.image_shape)
    return Normalization.fixed(config.normalization, config.image_shape[2])


def write_tflite_model(model: keras.Model, tf_transform_output: tft.TFTransformOutput,
                       config: TrainerConfig, export_dir: str,
                       train_files: Sequence[str]) -> TfliteModelInfo | None:
    """The TFLite model of `config.export.tflite` (none: nothing) with its labels and info,
    into the Trainer's model (serving/tflite.py layout). A conversion that needs ops the
    TFLite builtins lack fails the Trainer, naming them.
    """
    mode = TfliteMode(config.export.tflite)
    if mode == TfliteMode.NONE:
        return None
    start = time.monotonic()
    normalization = normalization_of(config, tf_transform_output)
    sample = calibration_sample(train_files, config) if mode == TfliteMode.INT8 else None
    log.info("[trainer] converting to TFLite %s%s", mode,
             "" if sample is None else f", calibrated on {len(sample)} train images")
    content = convert(model, normalization, config.image_shape, mode, sample,
                      config.evaluation.tta_flip, config.evaluation.tta_translate)
    height, width, channels = config.image_shape
    info = TfliteModelInfo(
        mode=str(mode), height=height, width=width, channels=channels,
        resize_mode=str(config.model.resize_mode), scale=normalization.scale,
        offset=normalization.offset, num_classes=config.num_classes, size_bytes=len(content),
        differs_from_serving=differences_from_serving(config),
        calibration_images=0 if sample is None else len(sample))
    folder = layout.folder(export_dir)
    tf.io.gfile.makedirs(folder)
    with tf.io.gfile.GFile(layout.model_path(export_dir), "wb") as f:
        f.write(content)
    with tf.io.gfile.GFile(f"{folder}/{layout.LABELS_FILE}", "w") as f:
        f.write("".join(f"{name}\n" for name in config.class_names))
    info.write(folder)
    log.info("[trainer] TFLite %s model: %d bytes, made in %.1fs", mode, len(content),
             time.monotonic() - start)
    return info
