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
import enum
import logging
import re
from collections.abc import Iterable, Iterator, Sequence

import keras
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from schema import features
from trainer.preprocessing import fixed_normalization

log = logging.getLogger(__name__)

# Under this many calibration images the int8 ranges are a guess: warn with the count.
MIN_CALIBRATION_IMAGES = 100


class TfliteMode(enum.StrEnum):
    NONE = "none"
    FLOAT32 = "float32"
    # Weights stored as float16, computed in float32.
    FLOAT16 = "float16"
    # Weights int8, activations float (quantized on the fly): no calibration.
    DYNAMIC = "dynamic"
    # Full-integer: weights and activations int8, calibrated on sample images.
    INT8 = "int8"


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


def _serving_function(model: keras.Model, normalization: Normalization,
                      image_shape: Sequence[int], pixel_dtype: tf.DType):
    height, width, channels = image_shape
    if len(normalization.scale) != channels:
        raise ValueError(f"normalization has {len(normalization.scale)} channels, "
                         f"the image {channels}")

    @tf.function(input_signature=[tf.TensorSpec([1, height, width, channels], pixel_dtype,
                                                name="pixels")])
    def classify(pixels: tf.Tensor) -> tf.Tensor:
        logits = model(normalization.apply(pixels), training=False)
        return tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)

    return classify


def convert(model: keras.Model, normalization: Normalization, image_shape: Sequence[int],
            mode: TfliteMode, calibration_images: Iterable[np.ndarray] | None = None) -> bytes:
    """The .tflite bytes of uint8 pixels [1, H, W, C] -> normalization -> model -> softmax.

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
                                 tf.float32 if int8 else tf.uint8)
    # Frozen first: the converter's own freezing fails on the variables Keras 3.15 makes
    # under TF 2.16 ("missing attribute 'value'" on a ReadVariableOp, an LLVM abort).
    with _float32_compute(model):
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
        images = [np.asarray(image, np.uint8) for image in calibration_images or ()]
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
                           f"converted, never select-TF ops. {error}") from error
    if int8 and (float_ops := _float_ops(tflite)):
        # The converter keeps an op it cannot quantize in float between (de)quantize ops, even
        # with int8 builtins only: an integer-only accelerator could not run the model.
        raise RuntimeError(f"TFLite int8 conversion left {', '.join(float_ops)} in float: "
                           "the model cannot be quantized to full integer")
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


def tflite_probabilities(tflite_model: bytes, images: np.ndarray) -> np.ndarray:
    """Probabilities [n, classes] of the .tflite model on uint8 images [n, H, W, C], one by one.

    A quantized output is dequantized with its scale and zero point.
    """
    interpreter = tf.lite.Interpreter(model_content=tflite_model)
    interpreter.allocate_tensors()
    (source,), (target,) = interpreter.get_input_details(), interpreter.get_output_details()
    results = []
    for image in np.asarray(images):
        interpreter.set_tensor(source["index"], image[np.newaxis].astype(source["dtype"]))
        interpreter.invoke()
        output = interpreter.get_tensor(target["index"])[0]
        if np.issubdtype(target["dtype"], np.integer):
            scale, zero_point = target["quantization"]
            output = (output.astype(np.float32) - zero_point) * scale
        results.append(output.astype(np.float32))
    return np.stack(results)
