"""The Transform `preprocessing_fn`: the single preprocessing path for training and serving.

Raw encoded image bytes of any size are decoded, converted to the configured channels and size
and scaled to [0, 1]. The scratch recipes then standardize each channel with full-pass
statistics; a pretrained backbone gets the fixed normalization it was trained with. The
resulting graph is saved in the model, so TF Serving clients send the same bytes that training
read, and an image of any size gets the same tensor in training and in `serving_default`.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tensorflow_transform as tft

from schema import features
from trainer.config import STANDARDIZE, image_shape_of

# Floor for the per-channel std so a near-constant channel is not blown up.
_MIN_STD = 1.0 / 255.0


def fit_to_size(image: tf.Tensor, height: int, width: int, mode: str = "stretch") -> tf.Tensor:
    """One float image [h, w, c] of any size made [height, width, c].

    "stretch" resizes to the size; "crop" cuts the largest centred box of the target's aspect
    ratio and resizes it; "pad" scales it to fit inside, keeping the aspect ratio, and pads the
    rest with black. Resizing is antialiased, so downscaling a large photo does not alias.
    """
    shape = tf.shape(image)
    same_size = tf.logical_and(shape[0] == height, shape[1] == width)
    if mode == "stretch":
        return tf.cond(same_size, lambda: image,
                       lambda: tf.image.resize(image, [height, width], antialias=True))
    h, w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    if mode == "crop":  # the largest centred box of the target's aspect ratio, then resized
        box_h = tf.maximum(1, tf.cast(tf.minimum(h, w * height / width), tf.int32))
        box_w = tf.maximum(1, tf.cast(tf.minimum(w, h * width / height), tf.int32))

        def resized() -> tf.Tensor:
            box = tf.image.crop_to_bounding_box(image, (shape[0] - box_h) // 2,
                                                (shape[1] - box_w) // 2, box_h, box_w)
            return tf.image.resize(box, [height, width], antialias=True)
    else:  # scaled to fit inside, never past the target (no huge intermediate), then padded
        scale = tf.minimum(height / h, width / w)
        new_size = tf.clip_by_value(tf.cast(tf.round(tf.stack([h, w]) * scale), tf.int32),
                                    1, [height, width])

        def resized() -> tf.Tensor:
            scaled = tf.image.resize(image, new_size, antialias=True)
            return tf.image.resize_with_crop_or_pad(scaled, height, width)

    return tf.cond(same_size, lambda: image, resized)


def decode_images(encoded: tf.Tensor, height: int, width: int, channels: int,
                  resize_mode: str = "stretch") -> tf.Tensor:
    """Decodes a batch of JPEG/PNG/GIF/BMP bytes to float32 [batch, height, width, channels]."""
    encoded = tf.reshape(encoded, [-1])

    def decode_one(data: tf.Tensor) -> tf.Tensor:
        image = tf.io.decode_image(data, channels=channels, expand_animations=False)
        image = tf.image.convert_image_dtype(image, tf.float32)
        image = fit_to_size(image, height, width, resize_mode)
        return tf.ensure_shape(image, [height, width, channels])

    return tf.map_fn(
        decode_one,
        encoded,
        fn_output_signature=tf.TensorSpec([height, width, channels], tf.float32),
    )


# The fixed normalizations of pretrained backbones (registry.Backbone), as (scale, offset) of
# pixels in [0, 1]; the TFLite model applies the same ones (trainer/tflite.py).
FIXED_NORMALIZATIONS: dict[str, tuple[float, float]] = {
    "minus_one_one": (2.0, -1.0),
    "raw255": (255.0, 0.0),
}


def fixed_normalization(name: str) -> tuple[float, float]:
    """(scale, offset) of a backbone's fixed normalization of pixels in [0, 1]."""
    if name not in FIXED_NORMALIZATIONS:
        raise ValueError(f"unknown normalization {name!r}")
    return FIXED_NORMALIZATIONS[name]


def normalize(images: tf.Tensor, normalization: str) -> tf.Tensor:
    """Pixels in [0, 1] as a pretrained backbone expects them (registry.Backbone)."""
    scale, offset = fixed_normalization(normalization)
    return images * scale + offset


def preprocessing_fn(inputs: dict[str, Any], custom_config: dict[str, Any]) -> dict[str, Any]:
    height, width, channels = image_shape_of(custom_config)
    images = decode_images(inputs[features.IMAGE_KEY], height, width, channels,
                           custom_config.get("resize_mode", "stretch"))
    labels = tf.reshape(inputs[features.LABEL_KEY], [-1])
    normalization = custom_config.get("normalization", STANDARDIZE)
    if normalization != STANDARDIZE:
        return {features.IMAGE_XF: normalize(images, normalization), features.LABEL_XF: labels}

    # Per-channel mean and variance over every pixel of the dataset: each image has the same
    # pixel count, so the mean of per-image channel means is the dataset channel mean.
    mean = tft.mean(tf.reduce_mean(images, axis=[1, 2]), reduce_instance_dims=False)
    mean_of_squares = tft.mean(
        tf.reduce_mean(tf.square(images), axis=[1, 2]), reduce_instance_dims=False
    )
    std = tf.sqrt(tf.maximum(mean_of_squares - tf.square(mean), _MIN_STD**2))

    return {
        features.IMAGE_XF: (images - mean) / std,
        features.LABEL_XF: labels,
    }
