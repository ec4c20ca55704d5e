"""tf.data input pipelines: raw examples through the Transform graph once, then from memory.

Transform runs its analyzers but does not materialize transformed examples (for CIFAR-10 that
would be 600 MB of floats written and read back). The Trainer applies the Transform graph itself
on the first pass, caches the decoded images in memory, and shuffles/augments from there.
"""

from __future__ import annotations

import os

import keras
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tfx.components.trainer.fn_args_utils import DataAccessor
from tfx.components.util import tfxio_utils
from tfx.proto import example_gen_pb2
from tfx_bsl.public import tfxio

from trainer import features
from trainer.config import TrainerConfig

_DECODE_BATCH = 256
_TELEMETRY = ["Trainer"]


def tf_example_accessor() -> DataAccessor:
    """The DataAccessor TFX builds for an Examples artifact of gzipped tf.Examples.

    For a process that has the file patterns but not the artifact (the multi-worker training
    process). ImportExampleGen over `ingest`'s output always has this payload format.
    """

    def make(patterns: list[str], schema) -> tfxio.TFXIO:
        return tfxio_utils.make_tfxio(
            patterns, _TELEMETRY, example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE, schema=schema
        )

    return DataAccessor(
        tf_dataset_factory=lambda patterns, options, schema: make(
            patterns, schema).TensorFlowDataset(options),
        record_batch_factory=lambda patterns, options, schema: make(
            patterns, schema).RecordBatches(options),
        data_view_decode_fn=None,
    )


def transformed_examples(
    file_pattern: list[str],
    data_accessor: DataAccessor,
    tf_transform_output: tft.TFTransformOutput,
) -> tf.data.Dataset:
    """(image_xf, label) per example, through the Transform graph, cached after the first pass."""
    raw = data_accessor.tf_dataset_factory(
        file_pattern,
        tfxio.TensorFlowDatasetOptions(batch_size=_DECODE_BATCH, num_epochs=1, shuffle=False),
        tf_transform_output.raw_metadata.schema,
    )
    tft_layer = tf_transform_output.transform_features_layer()

    def transform(raw_features: dict[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        transformed = tft_layer(raw_features)
        return transformed[features.IMAGE_XF], tf.reshape(transformed[features.LABEL_XF], [-1])

    return raw.map(transform, num_parallel_calls=tf.data.AUTOTUNE).unbatch().cache()


def count(dataset: tf.data.Dataset) -> int:
    """Number of elements; iterating a cached dataset to the end also fills its cache."""
    return int(dataset.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))


def augmenter(config: TrainerConfig) -> keras.Sequential | None:
    """Train-only augmentation as batched Keras layers (one op per batch, not per image).

    Alternating flips are not a layer: training_batches applies them, as they depend on the
    epoch.
    """
    layers: list[keras.layers.Layer] = []
    if config.augment_flip and not config.alternate_flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=config.seed))
    if config.augment_translate > 0:
        layers.append(
            keras.layers.RandomTranslation(
                config.augment_translate,
                config.augment_translate,
                fill_mode="reflect",
                interpolation="nearest",
                seed=config.seed,
            )
        )
    return keras.Sequential(layers, name="augment") if layers else None


def _one_hot(config: TrainerConfig):
    def fn(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return images, tf.one_hot(labels, config.num_classes)

    return fn


def alternating_flip_mask(
    halves: tf.Tensor, indices: tf.Tensor, epoch: tf.Tensor
) -> tf.Tensor:
    """`halves` (a fixed random bool per example) on even epochs, its complement on odd ones.

    Over any two epochs every image is seen both ways, which random flips only give on average.
    """
    return tf.not_equal(tf.gather(halves, indices), tf.equal(tf.math.floormod(epoch, 2), 1))


# The batches Keras iterates run with tf.data's autotuner off and fixed parallelism. The
# autotuner's thread sleeps up to 60 s between optimizations, and destroying the iterator (at
# the end of fit) waits for it: a random 0-60 s lost per fit, 46 s of one 5-epoch MNIST run.
# Fixed values train as fast on this 2-core host (1,385 and 1,617 images/s against 1,255 and
# 1,263 with the autotuner, fast-gray on 54,000 images), without the wait.
_PARALLEL_CALLS = os.cpu_count() or 1
_PREFETCH_BATCHES = 4


def training_batches(
    examples: tf.data.Dataset, config: TrainerConfig, num_examples: int
) -> tf.data.Dataset:
    """All epochs' batches in one dataset (fit with steps_per_epoch), reshuffled every epoch."""
    augment = augmenter(config)
    alternate = config.augment_flip and config.alternate_flip
    halves = tf.constant(np.random.default_rng(config.seed).random(num_examples) < 0.5)

    def one_epoch(epoch: tf.Tensor) -> tf.data.Dataset:
        shuffled = examples.enumerate().shuffle(num_examples, seed=config.seed + 7919 * epoch)
        return shuffled.batch(config.batch_size).map(
            lambda indices, batch: (indices, epoch, *batch)
        )

    def prepare(indices, epoch, images, labels):
        if alternate:
            flip = alternating_flip_mask(halves, indices, epoch)
            images = tf.where(flip[:, None, None, None], tf.reverse(images, axis=[2]), images)
        if augment is not None:
            images = augment(images, training=True)
        return _one_hot(config)(images, labels)

    epochs = tf.data.Dataset.range(max(1, config.epochs))
    dataset = epochs.flat_map(one_epoch).map(prepare, num_parallel_calls=_PARALLEL_CALLS)
    return _batch_options(dataset.prefetch(_PREFETCH_BATCHES))


def eval_batches(examples: tf.data.Dataset, config: TrainerConfig) -> tf.data.Dataset:
    batches = examples.batch(config.batch_size).map(_one_hot(config))
    return _batch_options(batches.prefetch(_PREFETCH_BATCHES))


def _batch_options(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Fixed parallelism (above) and, under MultiWorkerMirroredStrategy, sharding by batch.

    Each worker takes its slice of every global batch. Every worker decodes and caches all
    examples and shuffles them with the same seeds, so slicing the batches splits each step's
    data without overlap. Sharding by file (the AUTO default) would look for the TFRecord files
    and fail or skew when there are fewer files than workers. No effect without a multi-worker
    strategy.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)
