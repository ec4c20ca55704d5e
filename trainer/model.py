"""The Keras CNNs, sized to the input.

"classic" has the shape of the blog tutorials (Conv/BatchNorm/pool/dropout blocks and a dense
head). "fast" follows fast CIFAR-10 training work: conv-pool-BN-act / conv-BN-act blocks with
wide channels, global max pooling and a linear head, no dropout.

Keras 3 is imported by name: TF Transform sets TF_USE_LEGACY_KERAS in-process, which would
otherwise silently switch `tf.keras` to Keras 2 depending on import order.
"""

from __future__ import annotations

import functools
import logging
import math

import keras
import numpy as np
import tensorflow as tf

from schema import features
from trainer.config import TrainerConfig

log = logging.getLogger(__name__)

_MAX_BLOCKS = 3
# Keras' default 0.99 leaves the moving statistics far off on small datasets (a few hundred
# steps), which makes eval accuracy collapse while train accuracy climbs.
_BN_MOMENTUM = 0.9


@functools.cache
def bf16_supported() -> bool:
    """True where bfloat16 matmuls/convs run natively: AVX512-BF16/AMX CPUs, compute 8.0+ GPUs."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        capability = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability")
        return bool(capability and capability >= (8, 0))
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def onednn_enabled() -> bool:
    """Whether TensorFlow loaded its oneDNN CPU kernels (TF_ENABLE_ONEDNN_OPTS, see trainer/)."""
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())


def uses_bfloat16(precision: str) -> bool:
    """What a precision setting means on this machine; the recipe choice asks it too."""
    return precision == "bfloat16" or (precision == "auto" and bf16_supported())


def dtype_policy(config: TrainerConfig) -> str:
    return "mixed_bfloat16" if uses_bfloat16(config.runtime.precision) else "float32"


def num_blocks(height: int, width: int) -> int:
    """Pooling blocks that still leave at least a 2x2 feature map (8x8 -> 2, 32x32 -> 3)."""
    return max(1, min(_MAX_BLOCKS, int(math.log2(min(height, width))) - 1))


class DiracInit(keras.initializers.Initializer):
    """Glorot-uniform, except that the first filters, one per input channel, pass it through.

    A deep stack of such convs starts close to the identity, which lets a short schedule use a
    high learning rate from the first steps.
    """

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed

    def __call__(self, shape, dtype=None):
        kh, kw, cin, cout = shape
        kernel = keras.initializers.GlorotUniform(self.seed)(shape, dtype="float32")
        identity = np.zeros(shape, "float32")
        keep = min(cin, cout)
        identity[kh // 2, kw // 2, np.arange(keep), np.arange(keep)] = 1.0
        mask = np.ones(shape, "float32")
        mask[..., :keep] = 0.0
        return tf.cast(kernel * mask + identity, dtype or "float32")

    def get_config(self) -> dict:
        return {"seed": self.seed}


def _conv_bn_act(
    x: keras.KerasTensor,
    filters: int,
    dtype: str,
    pool: bool = False,
    config: TrainerConfig | None = None,
) -> keras.KerasTensor:
    """A conv [-> pool] -> BN -> activation block; `config` None: the classic model's."""
    dirac = config is not None and config.model.dirac_init
    init = DiracInit(config.runtime.seed) if dirac else "glorot_uniform"
    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_initializer=init,
                            dtype=dtype)(x)
    if pool:
        x = keras.layers.MaxPooling2D(dtype=dtype)(x)
    x = keras.layers.BatchNormalization(
        momentum=config.model.bn_momentum if config else _BN_MOMENTUM,
        scale=config.model.bn_scale if config else True,
        epsilon=1e-5 if config else 1e-3,
        dtype=dtype,
    )(x)
    return keras.layers.Activation(config.model.activation if config else "relu", dtype=dtype)(x)


class Bias(keras.layers.Layer):
    """A learned per-channel shift (the frozen whitening conv's trainable bias)."""

    def build(self, input_shape) -> None:
        self.bias = self.add_weight(shape=(input_shape[-1],), initializer="zeros", name="bias")

    def call(self, inputs):
        return inputs + keras.ops.cast(self.bias, inputs.dtype)


def _classic(inputs: keras.KerasTensor, config: TrainerConfig, dtype: str) -> keras.KerasTensor:
    height, width, _ = config.image_shape
    x = inputs
    filters = config.model.base_filters
    for _ in range(num_blocks(height, width)):
        x = _conv_bn_act(x, filters, dtype)
        x = _conv_bn_act(x, filters, dtype)
        x = keras.layers.MaxPooling2D(dtype=dtype)(x)
        x = keras.layers.Dropout(config.model.dropout, dtype=dtype)(x)
        filters *= 2
    x = keras.layers.Flatten(dtype=dtype)(x)
    x = keras.layers.Dense(config.model.dense_units, use_bias=False, dtype=dtype)(x)
    x = keras.layers.BatchNormalization(momentum=_BN_MOMENTUM, dtype=dtype)(x)
    x = keras.layers.Activation("relu", dtype=dtype)(x)
    return keras.layers.Dropout(config.model.dropout * 2, dtype=dtype)(x)


WHITEN_LAYER = "whiten"
_WHITEN_PATCH = 2


# Patches that estimate the whitening: a (4c)x(4c) covariance needs far fewer than the 3.6M of
# 5,000 MNIST images, and a bounded count keeps memory O(sample) for any image size (all
# patches of 5,000 224x224 RGB images would be 12 GB as float32).
WHITEN_MAX_PATCHES = 1_000_000


def whitening_kernel(
    images: np.ndarray, eps: float = 5e-4, max_patches: int = WHITEN_MAX_PATCHES, seed: int = 0
) -> np.ndarray:
    """A 2x2 conv kernel that decorrelates image patches: the PCA basis scaled by 1/sqrt(var).

    The covariance comes from every patch when there are at most `max_patches`, else from that
    many drawn at random (seeded), gathered in float32 without materializing the rest.
    Each direction comes twice, as +w and -w, so a ReLU after it keeps all the information.
    Returns shape (2, 2, channels, 2 * 4 * channels).
    """
    n, height, width, channels = images.shape
    p = _WHITEN_PATCH
    rows, cols = height - p + 1, width - p + 1
    total = n * rows * cols
    if total <= max_patches:
        index = np.arange(total)
    else:
        index = np.random.default_rng(seed).choice(total, size=max_patches, replace=False)
    image, rest = np.divmod(index, rows * cols)
    row, col = np.divmod(rest, cols)
    # (patches, p, p, c): the layout of a conv kernel, one row per patch.
    patches = np.stack(
        [images[image, row + dy, col + dx, :] for dy in range(p) for dx in range(p)], axis=1
    ).astype(np.float32).reshape(len(index), p * p * channels)
    patches -= patches.mean(axis=0)
    covariance = (patches.T @ patches / max(1, len(index) - 1)).astype(np.float64)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    basis = eigenvectors / np.sqrt(eigenvalues + eps)
    kernel = basis.T.reshape(-1, p, p, channels).transpose(1, 2, 3, 0)
    return np.concatenate([kernel, -kernel], axis=-1).astype("float32")


def _fast(inputs: keras.KerasTensor, config: TrainerConfig, dtype: str) -> keras.KerasTensor:
    height, width, channels = config.image_shape
    stride = config.model.whiten_stride if config.model.whiten else 1
    blocks = min(len(config.model.widths), num_blocks(height // stride, width // stride))
    if config.model.whiten:
        x = keras.layers.Conv2D(
            2 * _WHITEN_PATCH**2 * channels, _WHITEN_PATCH, strides=stride, use_bias=False,
            trainable=False, name=WHITEN_LAYER, dtype=dtype,
        )(inputs)
        x = Bias(name=f"{WHITEN_LAYER}_bias", dtype=dtype)(x)
        x = keras.layers.Activation(config.model.activation, dtype=dtype)(x)
    else:
        x = _conv_bn_act(inputs, max(config.model.widths[0] // 2, 16), dtype, config=config)
    for filters in config.model.widths[:blocks]:
        x = _conv_bn_act(x, filters, dtype, pool=True, config=config)
        x = _conv_bn_act(x, filters, dtype, config=config)
    return keras.layers.GlobalMaxPooling2D(dtype=dtype)(x)


def shift_images(images, dy: int, dx: int):
    """The images moved by (dy, dx) pixels, the uncovered border filled by reflection."""
    pad = max(abs(dy), abs(dx))
    padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    return padded[:, pad - dy:pad - dy + height, pad - dx:pad - dx + width, :]


def _flip_logits(model: keras.Model, images, tta_flip: bool):
    logits = model(images, training=False)
    if tta_flip:
        logits = (logits + model(tf.reverse(images, axis=[2]), training=False)) / 2
    return logits


def class_probabilities(model: keras.Model, images, tta_flip: bool, tta_translate: int = 0):
    """Softmax of the model's logits, averaged over test-time augmented views.

    tta_flip averages the image with its mirror; tta_translate=p gives half the weight to the
    image shifted p pixels up-left and down-right (each also mirrored when tta_flip is set).
    """
    logits = _flip_logits(model, images, tta_flip)
    if tta_translate > 0:
        p = tta_translate
        shifted = (_flip_logits(model, shift_images(images, -p, -p), tta_flip)
                   + _flip_logits(model, shift_images(images, p, p), tta_flip)) / 2
        logits = (logits + shifted) / 2
    return tf.nn.softmax(logits, axis=-1)


def build_model(config: TrainerConfig, sample_images: np.ndarray | None = None,
                member: int | None = None) -> keras.Model:
    """Returns an uncompiled model mapping standardized images to float32 class logits.

    `sample_images` (training images, after Transform) set the whitening layer when the config
    asks for one. `member` numbers one network of an ensemble (trainer/ensemble.py) in its name.
    """
    dtype = dtype_policy(config)
    log.info("model %s, compute dtype policy %s", config.model.kind, dtype)
    inputs = keras.Input(shape=config.image_shape, name=features.IMAGE_XF)
    body = {"classic": _classic, "fast": _fast}[config.model.kind]
    x = body(inputs, config, dtype)
    fast = config.model.kind == "fast"
    # A linear head without bias in the fast model, as in the fast CIFAR-10 training work.
    logits = keras.layers.Dense(config.num_classes, use_bias=not fast, name="logits",
                                dtype="float32")(x)
    if config.model.logit_scale != 1.0:
        logits = keras.layers.Rescaling(config.model.logit_scale, name="logit_scale",
                                        dtype="float32")(logits)
    suffix = "" if member is None else f"_{member}"
    model = keras.Model(inputs, logits, name=f"{config.model.kind}_cnn{suffix}")
    if config.uses_whitening:
        if sample_images is None:
            raise ValueError("whiten=True needs sample_images to compute the whitening layer")
        model.get_layer(WHITEN_LAYER).set_weights([whitening_kernel(sample_images)])
    return model


