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

from trainer import features
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


def dtype_policy(config: TrainerConfig) -> str:
    if config.precision == "bfloat16" or (config.precision == "auto" and bf16_supported()):
        return "mixed_bfloat16"
    return "float32"


def num_blocks(height: int, width: int) -> int:
    """Pooling blocks that still leave at least a 2x2 feature map (8x8 -> 2, 32x32 -> 3)."""
    return max(1, min(_MAX_BLOCKS, int(math.log2(min(height, width))) - 1))


def _conv_bn_relu(x: keras.KerasTensor, filters: int, dtype: str, pool: bool = False):
    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, dtype=dtype)(x)
    if pool:
        x = keras.layers.MaxPooling2D(dtype=dtype)(x)
    x = keras.layers.BatchNormalization(momentum=_BN_MOMENTUM, dtype=dtype)(x)
    return keras.layers.Activation("relu", dtype=dtype)(x)


def _classic(inputs: keras.KerasTensor, config: TrainerConfig, dtype: str) -> keras.KerasTensor:
    height, width, _ = config.image_shape
    x = inputs
    filters = config.base_filters
    for _ in range(num_blocks(height, width)):
        x = _conv_bn_relu(x, filters, dtype)
        x = _conv_bn_relu(x, filters, dtype)
        x = keras.layers.MaxPooling2D(dtype=dtype)(x)
        x = keras.layers.Dropout(config.dropout, dtype=dtype)(x)
        filters *= 2
    x = keras.layers.Flatten(dtype=dtype)(x)
    x = keras.layers.Dense(config.dense_units, use_bias=False, dtype=dtype)(x)
    x = keras.layers.BatchNormalization(momentum=_BN_MOMENTUM, dtype=dtype)(x)
    x = keras.layers.Activation("relu", dtype=dtype)(x)
    return keras.layers.Dropout(config.dropout * 2, dtype=dtype)(x)


WHITEN_LAYER = "whiten"
_WHITEN_PATCH = 2


def whitening_kernel(images: np.ndarray, eps: float = 5e-4) -> np.ndarray:
    """A 2x2 conv kernel that decorrelates image patches: the PCA basis scaled by 1/sqrt(var).

    Each direction comes twice, as +w and -w, so a ReLU after it keeps all the information.
    Returns shape (2, 2, channels, 2 * 4 * channels).
    """
    n, _, _, channels = images.shape
    p = _WHITEN_PATCH
    patches = np.lib.stride_tricks.sliding_window_view(images, (p, p), axis=(1, 2))
    # (n, h-1, w-1, c, p, p) -> rows of (p, p, c) patches, the layout of a conv kernel.
    patches = patches.transpose(0, 1, 2, 4, 5, 3).reshape(-1, p * p * channels)
    patches = patches - patches.mean(axis=0)
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(patches, rowvar=False))
    basis = eigenvectors / np.sqrt(eigenvalues + eps)
    kernel = basis.T.reshape(-1, p, p, channels).transpose(1, 2, 3, 0)
    return np.concatenate([kernel, -kernel], axis=-1).astype("float32")


def _fast(inputs: keras.KerasTensor, config: TrainerConfig, dtype: str) -> keras.KerasTensor:
    height, width, channels = config.image_shape
    blocks = min(len(config.widths), num_blocks(height, width))
    if config.whiten:
        x = keras.layers.Conv2D(
            2 * _WHITEN_PATCH**2 * channels, _WHITEN_PATCH, use_bias=False, trainable=False,
            name=WHITEN_LAYER, dtype=dtype,
        )(inputs)
        x = keras.layers.Activation("relu", dtype=dtype)(x)
    else:
        x = _conv_bn_relu(inputs, max(config.widths[0] // 2, 16), dtype)
    for filters in config.widths[:blocks]:
        x = _conv_bn_relu(x, filters, dtype, pool=True)
        x = _conv_bn_relu(x, filters, dtype)
    return keras.layers.GlobalMaxPooling2D(dtype=dtype)(x)


def class_probabilities(model: keras.Model, images, tta_flip: bool):
    """Softmax over the model's logits; with tta_flip, averaged with the mirrored image's."""
    probabilities = tf.nn.softmax(model(images, training=False), axis=-1)
    if tta_flip:
        mirrored = tf.nn.softmax(model(tf.reverse(images, axis=[2]), training=False), axis=-1)
        probabilities = (probabilities + mirrored) / 2
    return probabilities


def build_model(config: TrainerConfig, sample_images: np.ndarray | None = None) -> keras.Model:
    """Returns an uncompiled model mapping standardized images to float32 class logits.

    `sample_images` (training images, after Transform) set the whitening layer when the config
    asks for one.
    """
    dtype = dtype_policy(config)
    log.info("model %s, compute dtype policy %s", config.model, dtype)
    inputs = keras.Input(shape=config.image_shape, name=features.IMAGE_XF)
    body = {"classic": _classic, "fast": _fast}[config.model]
    x = body(inputs, config, dtype)
    logits = keras.layers.Dense(config.num_classes, name="logits", dtype="float32")(x)
    model = keras.Model(inputs, logits, name=f"{config.model}_cnn")
    if config.uses_whitening:
        if sample_images is None:
            raise ValueError("whiten=True needs sample_images to compute the whitening layer")
        model.get_layer(WHITEN_LAYER).set_weights([whitening_kernel(sample_images)])
    return model


