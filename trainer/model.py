"""The Keras CNN: the classic tutorial shape (Conv/BatchNorm/pool/dropout), sized to the input.

Keras 3 is imported by name: TF Transform sets TF_USE_LEGACY_KERAS in-process, which would
otherwise silently switch `tf.keras` to Keras 2 depending on import order.
"""

from __future__ import annotations

import math

import keras

from trainer import features
from trainer.config import TrainerConfig

_MAX_BLOCKS = 3
# Keras' default 0.99 leaves the moving statistics far off on small datasets (a few hundred
# steps), which makes eval accuracy collapse while train accuracy climbs.
_BN_MOMENTUM = 0.9


def num_blocks(height: int, width: int) -> int:
    """Pooling blocks that still leave at least a 2x2 feature map (8x8 -> 2, 32x32 -> 3)."""
    return max(1, min(_MAX_BLOCKS, int(math.log2(min(height, width))) - 1))


def _conv_bn_relu(x: keras.KerasTensor, filters: int) -> keras.KerasTensor:
    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
    x = keras.layers.BatchNormalization(momentum=_BN_MOMENTUM)(x)
    return keras.layers.Activation("relu")(x)


def build_model(config: TrainerConfig) -> keras.Model:
    """Returns an uncompiled model mapping standardized images to class logits."""
    height, width, _ = config.image_shape
    inputs = keras.Input(shape=config.image_shape, name=features.IMAGE_XF)
    x = inputs
    filters = config.base_filters
    for _ in range(num_blocks(height, width)):
        x = _conv_bn_relu(x, filters)
        x = _conv_bn_relu(x, filters)
        x = keras.layers.MaxPooling2D()(x)
        x = keras.layers.Dropout(config.dropout)(x)
        filters *= 2
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(config.dense_units, use_bias=False)(x)
    x = keras.layers.BatchNormalization(momentum=_BN_MOMENTUM)(x)
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.Dropout(config.dropout * 2)(x)
    logits = keras.layers.Dense(config.num_classes, name="logits")(x)
    return keras.Model(inputs, logits, name="image_cnn")


def compile_model(model: keras.Model, config: TrainerConfig) -> None:
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
