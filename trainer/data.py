"""tf.data input pipelines over Transform's materialized output, with train-only augmentation."""

from __future__ import annotations

import tensorflow as tf
from tfx.components.trainer.fn_args_utils import DataAccessor
from tfx_bsl.public import tfxio

from trainer import features
from trainer.config import TrainerConfig


def augment(images: tf.Tensor, config: TrainerConfig, seed: int) -> tf.Tensor:
    """Random small translations (pad + random crop) and, if enabled, horizontal flips."""
    height, width, channels = config.image_shape
    if config.augment_flip:
        images = tf.image.random_flip_left_right(images, seed=seed)
    if config.augment_translate > 0:
        pad_h = max(1, round(height * config.augment_translate))
        pad_w = max(1, round(width * config.augment_translate))
        padded = tf.pad(images, [[0, 0], [pad_h, pad_h], [pad_w, pad_w], [0, 0]], mode="REFLECT")
        images = tf.map_fn(
            lambda image: tf.image.random_crop(image, [height, width, channels], seed=seed),
            padded,
        )
        images = tf.ensure_shape(images, [None, height, width, channels])
    return images


def make_dataset(
    file_pattern: list[str],
    data_accessor: DataAccessor,
    schema,
    config: TrainerConfig,
    training: bool,
) -> tf.data.Dataset:
    """One pass over the split as (images, labels) batches; shuffled and augmented if training."""
    dataset = data_accessor.tf_dataset_factory(
        file_pattern,
        tfxio.TensorFlowDatasetOptions(
            batch_size=config.batch_size,
            label_key=features.LABEL_XF,
            num_epochs=1,
            shuffle=training,
            shuffle_seed=config.seed if training else None,
            drop_final_batch=False,
        ),
        schema,
    )

    def to_pair(batch: dict[str, tf.Tensor], labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        images = batch[features.IMAGE_XF]
        if training:
            images = augment(images, config, seed=config.seed)
        return images, tf.reshape(labels, [-1])

    return dataset.map(to_pair, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
