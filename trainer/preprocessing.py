"""The Transform `preprocessing_fn`: the single preprocessing path for training and serving.

Raw encoded image bytes are decoded, converted to the configured channels and size, scaled to
[0, 1] and standardized per channel with full-pass statistics. The resulting graph is saved in
the model, so TF Serving clients send the same bytes that training read.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tensorflow_transform as tft

from schema import features
from trainer.config import image_shape_of

# Floor for the per-channel std so a near-constant channel is not blown up.
_MIN_STD = 1.0 / 255.0


def decode_images(encoded: tf.Tensor, height: int, width: int, channels: int) -> tf.Tensor:
    """Decodes a batch of JPEG/PNG/GIF/BMP bytes to float32 [batch, height, width, channels]."""
    encoded = tf.reshape(encoded, [-1])

    def decode_one(data: tf.Tensor) -> tf.Tensor:
        image = tf.io.decode_image(data, channels=channels, expand_animations=False)
        image = tf.image.convert_image_dtype(image, tf.float32)
        same_size = tf.logical_and(tf.shape(image)[0] == height, tf.shape(image)[1] == width)
        image = tf.cond(
            same_size,
            lambda: image,
            lambda: tf.image.resize(image, [height, width], antialias=True),
        )
        return tf.ensure_shape(image, [height, width, channels])

    return tf.map_fn(
        decode_one,
        encoded,
        fn_output_signature=tf.TensorSpec([height, width, channels], tf.float32),
    )


def preprocessing_fn(inputs: dict[str, Any], custom_config: dict[str, Any]) -> dict[str, Any]:
    height, width, channels = image_shape_of(custom_config)
    images = decode_images(inputs[features.IMAGE_KEY], height, width, channels)

    # Per-channel mean and variance over every pixel of the dataset: each image has the same
    # pixel count, so the mean of per-image channel means is the dataset channel mean.
    mean = tft.mean(tf.reduce_mean(images, axis=[1, 2]), reduce_instance_dims=False)
    mean_of_squares = tft.mean(
        tf.reduce_mean(tf.square(images), axis=[1, 2]), reduce_instance_dims=False
    )
    std = tf.sqrt(tf.maximum(mean_of_squares - tf.square(mean), _MIN_STD**2))

    return {
        features.IMAGE_XF: (images - mean) / std,
        features.LABEL_XF: tf.reshape(inputs[features.LABEL_KEY], [-1]),
    }
