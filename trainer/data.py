"""tf.data input pipelines: raw examples through the Transform graph, from memory or streamed.

Transform runs its analyzers but does not materialize transformed examples (for CIFAR-10 that
would be 600 MB of floats written and read back). The Trainer applies the Transform graph itself.
When the decoded train and eval splits fit the cache budget (trainer/memory.py), it caches them
in memory after the first pass, as uint8 where the graph allows, and shuffles/augments from
there. Otherwise it streams: every epoch decodes the TFRecords again and shuffles within a
buffer the budget holds.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tfx.components.trainer.fn_args_utils import DataAccessor
from tfx.components.util import tfxio_utils
from tfx.proto import example_gen_pb2
from tfx_bsl.public import tfxio

from schema import features
from schema.errors import BadInput, Part, Setting
from trainer import memory
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
    """(image_xf, label) per example through the Transform graph, float32, cached in memory.

    The plain path, for tools that want the model's own inputs; the Trainer goes through
    `training_inputs`, which stores uint8 and streams when the cache would not fit.
    """
    return decoded_examples(file_pattern, data_accessor, tf_transform_output,
                            PixelCodec.identity()).cache()


def _raw_batches(
    file_pattern: list[str], data_accessor: DataAccessor, tf_transform_output: tft.TFTransformOutput
) -> tf.data.Dataset:
    return data_accessor.tf_dataset_factory(
        file_pattern,
        tfxio.TensorFlowDatasetOptions(batch_size=_DECODE_BATCH, num_epochs=1, shuffle=False),
        tf_transform_output.raw_metadata.schema,
    )


def _transform_fn(tf_transform_output: tft.TFTransformOutput):
    tft_layer = tf_transform_output.transform_features_layer()

    def transform(raw_features: dict[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        transformed = tft_layer(raw_features)
        return transformed[features.IMAGE_XF], tf.reshape(transformed[features.LABEL_XF], [-1])

    return transform


def decoded_examples(
    file_pattern: list[str],
    data_accessor: DataAccessor,
    tf_transform_output: tft.TFTransformOutput,
    codec: PixelCodec,
) -> tf.data.Dataset:
    """(stored pixels, label) per example, decoded through the Transform graph in file order."""
    transform = _transform_fn(tf_transform_output)

    def stored(raw_features):
        images, labels = transform(raw_features)
        return codec.encode(images), labels

    raw = _raw_batches(file_pattern, data_accessor, tf_transform_output)
    return raw.map(stored, num_parallel_calls=_PARALLEL_CALLS).unbatch()


def count_records(
    file_pattern: list[str], data_accessor: DataAccessor, tf_transform_output: tft.TFTransformOutput
) -> int:
    """Examples in the files, parsed but not decoded (a fraction of the cost of decoding)."""
    raw = _raw_batches(file_pattern, data_accessor, tf_transform_output)
    return int(raw.reduce(
        tf.constant(0, tf.int64),
        lambda n, batch: n + tf.shape(batch[features.LABEL_KEY], out_type=tf.int64)[0],
    ))


@dataclasses.dataclass(frozen=True)
class PixelCodec:
    """The Transform output stored as uint8 and mapped back per batch: xf = q * scale + offset.

    The Transform graph scales 8-bit pixels to [0, 1] and standardizes each channel, an affine
    map of the pixel value, so storing the pixel value loses nothing and takes a quarter of
    the memory. `scale`/`offset` come from the graph itself (`probe_codec`). Without them
    (identity), float32 is stored as it is.
    """

    scale: tuple[float, ...] | None = None
    offset: tuple[float, ...] | None = None

    @classmethod
    def identity(cls) -> PixelCodec:
        return cls()

    @property
    def quantized(self) -> bool:
        return self.scale is not None

    @property
    def dtype(self) -> str:
        return "uint8" if self.quantized else "float32"

    @property
    def itemsize(self) -> int:
        return 1 if self.quantized else 4

    def encode(self, images: tf.Tensor) -> tf.Tensor:
        if not self.quantized:
            return images
        levels = tf.round((images - self.offset) / self.scale)
        return tf.cast(tf.clip_by_value(levels, 0.0, 255.0), tf.uint8)

    def decode(self, stored: tf.Tensor) -> tf.Tensor:
        if not self.quantized:
            return stored
        return tf.cast(stored, tf.float32) * self.scale + self.offset


# A decoded value must land within this share of one pixel level of a level for uint8 storage.
_LEVEL_TOLERANCE = 0.01


def probe_codec(
    tf_transform_output: tft.TFTransformOutput,
    image_shape: tuple[int, int, int],
    sample: tf.Tensor,
) -> tuple[PixelCodec, str]:
    """(codec, why): uint8 if the graph maps pixel values affinely and `sample` round-trips.

    Black and white images through the graph give each channel's offset and scale. A
    preprocessing_fn that is not affine in the pixel value, or images resized inside the graph
    (values between levels), keep float32.
    """
    height, width, channels = image_shape
    spec = tf_transform_output.raw_feature_spec()
    probes = {}
    for name, feature in spec.items():
        if not isinstance(feature, tf.io.FixedLenFeature):
            continue  # optional features (the source path): unfed, as serving leaves them
        shape = [2, *feature.shape]
        if name == features.IMAGE_KEY:
            pngs = [tf.io.encode_png(tf.fill([height, width, channels], tf.constant(v, tf.uint8)))
                    for v in (0, 255)]
            probes[name] = tf.reshape(tf.stack(pngs), shape)
        else:
            probes[name] = tf.zeros(shape, feature.dtype)
    outputs = tf_transform_output.transform_features_layer()(probes)[features.IMAGE_XF]
    black, white = outputs[0, 0, 0].numpy(), outputs[1, 0, 0].numpy()
    scale = (white - black) / 255.0
    if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
        return PixelCodec.identity(), "the Transform output is not increasing in the pixel value"
    codec = PixelCodec(tuple(float(v) for v in scale), tuple(float(v) for v in black))
    error = np.abs(codec.decode(codec.encode(sample)).numpy() - sample.numpy()) / scale
    if error.max() > _LEVEL_TOLERANCE:
        return PixelCodec.identity(), (
            f"decoded values fall between 8-bit levels (off by up to {error.max():.2f} of a "
            "level: images resized inside the Transform graph, or a non-affine preprocessing_fn)"
        )
    return codec, "the Transform output is an affine map of 8-bit pixel values"


@dataclasses.dataclass(frozen=True)
class InputPlan:
    """Cache the decoded images in memory, or stream them every epoch; and why."""

    mode: str  # "memory" or "stream"
    dtype: str
    needed_bytes: int
    budget_bytes: int
    shuffle_buffer: int
    reason: str

    @property
    def streams(self) -> bool:
        return self.mode == "stream"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class CacheBudgetError(BadInput):
    """Not even one image fits in the budget: nothing can be shuffled or cached."""


def _budget_text(budget_bytes: int, budget_text: str) -> str:
    return memory.human(budget_bytes) + (f" (cache_budget {budget_text})" if budget_text
                                         else "")


def check_image_fits(
    image_shape: tuple[int, int, int], itemsize: int, budget_bytes: int, budget_text: str = ""
) -> None:
    """CacheBudgetError, naming the image size, if not even one image fits the budget."""
    per_image = memory.images_bytes(1, image_shape, itemsize)
    if per_image > budget_bytes:
        shape = "x".join(str(v) for v in image_shape)
        dtype = "uint8" if itemsize == 1 else "float32"
        given: tuple[Part, ...] = (
            (" (", Setting("trainer.data.cache_budget", budget_text), ")") if budget_text else ())
        raise CacheBudgetError(
            f"one {shape} image takes {memory.human(per_image)} as {dtype}, more than the cache "
            f"budget of {memory.human(budget_bytes)}", *given, ": raise ",
            Setting("trainer.data.cache_budget"), f" to at least {memory.human(per_image)} (a few "
            "thousand images' worth, to shuffle well), or ingest with ", Setting("ingest.resize"),
        )


def plan_input(
    num_train: int,
    num_eval: int,
    image_shape: tuple[int, int, int],
    itemsize: int,
    budget_bytes: int,
    budget_text: str = "",
) -> InputPlan:
    """Memory if train + eval fit the budget; otherwise stream, shuffling within the budget."""
    check_image_fits(image_shape, itemsize, budget_bytes, budget_text)
    dtype = "uint8" if itemsize == 1 else "float32"
    per_image = memory.images_bytes(1, image_shape, itemsize)
    budget = _budget_text(budget_bytes, budget_text)
    shape = "x".join(str(v) for v in image_shape)
    needed = memory.images_bytes(num_train + num_eval, image_shape, itemsize)
    what = (f"{num_train + num_eval:,} images x {shape} x {itemsize} byte"
            f"{'s' if itemsize > 1 else ''} ({dtype}) = {memory.human(needed)}")
    if needed <= budget_bytes:
        return InputPlan("memory", dtype, needed, budget_bytes, num_train,
                         f"cached in memory: {what}, within the budget of {budget}")
    buffer = min(num_train, budget_bytes // per_image)
    return InputPlan(
        "stream", dtype, needed, budget_bytes, buffer,
        f"streamed from the TFRecords through the Transform graph every epoch: {what}, more "
        f"than the budget of {budget}; shuffled within a buffer of {buffer:,} images "
        f"({buffer / max(1, num_train):.0%} of the train split)",
    )


@dataclasses.dataclass(frozen=True)
class TrainingInputs:
    """Train and eval examples as stored (uint8 or float32), with what turns them into inputs."""

    train: tf.data.Dataset
    eval: tf.data.Dataset
    num_train: int
    num_eval: int
    codec: PixelCodec
    plan: InputPlan
    refit: bool = False  # `train` holds the eval examples too (data.refit)


def training_inputs(
    train_files: list[str],
    eval_files: list[str],
    data_accessor: DataAccessor,
    tf_transform_output: tft.TFTransformOutput,
    config: TrainerConfig,
    available_memory: int | None = None,
) -> TrainingInputs:
    """Counts the examples, picks uint8 or float32 and memory or streaming for the budget."""
    num_train = count_records(train_files, data_accessor, tf_transform_output)
    num_eval = count_records(eval_files, data_accessor, tf_transform_output)
    first = next(iter(_raw_batches(train_files, data_accessor, tf_transform_output)))
    codec, why = probe_codec(
        tf_transform_output, config.image_shape, _transform_fn(tf_transform_output)(first)[0]
    )
    budget = memory.resolve_budget(config.data.cache_budget, available_memory)
    plan = plan_input(num_train, num_eval, config.image_shape, codec.itemsize, budget,
                      config.data.cache_budget)
    plan = dataclasses.replace(plan, reason=f"{plan.reason}; stored as {codec.dtype}: {why}")
    train = decoded_examples(train_files, data_accessor, tf_transform_output, codec)
    eval_ = decoded_examples(eval_files, data_accessor, tf_transform_output, codec)
    if not plan.streams:
        train, eval_ = train.cache(), eval_.cache()
    if config.data.refit:
        train, plan = refit_examples(train, eval_, num_train, num_eval, plan, config.runtime.seed)
        num_train += num_eval
    return TrainingInputs(with_length(train, num_train), with_length(eval_, num_eval),
                          num_train, num_eval, codec, plan, config.data.refit)


def refit_examples(train: tf.data.Dataset, eval_: tf.data.Dataset, num_train: int,
                   num_eval: int, plan: InputPlan, seed: int) -> tuple[tf.data.Dataset, InputPlan]:
    """Train and eval examples as one training set (data.refit), and the plan that says so.

    Cached examples are concatenated and shuffled whole every epoch; streamed ones are drawn
    from both splits at random in proportion to their sizes, so a shuffle window mixes them
    rather than holding the eval examples at the end of every epoch.
    """
    total = num_train + num_eval
    if plan.streams:
        both = tf.data.Dataset.sample_from_datasets(
            [train, eval_], weights=[num_train / total, num_eval / total], seed=seed + 1,
            stop_on_empty_dataset=False)
    else:
        both = train.concatenate(eval_)
        plan = dataclasses.replace(plan, shuffle_buffer=total)
    reason = (f"{plan.reason}; refit: trained on train + eval ({num_train:,} + {num_eval:,} "
              "images), the eval split no longer held out")
    return both, dataclasses.replace(plan, reason=reason)


def in_memory_inputs(train: tf.data.Dataset, eval_: tf.data.Dataset) -> TrainingInputs:
    """(float32 image, label) datasets a caller already holds (benchmarks, tests) as inputs."""
    num_train, num_eval = count(train), count(eval_)
    shape = tuple(int(v) for v in train.element_spec[0].shape)
    needed = memory.images_bytes(num_train + num_eval, shape, 4)
    plan = InputPlan("memory", "float32", needed, needed, num_train,
                     "float32 examples the caller holds in memory")
    return TrainingInputs(with_length(train, num_train), with_length(eval_, num_eval),
                          num_train, num_eval, PixelCodec.identity(), plan)


def with_length(dataset: tf.data.Dataset, num_examples: int) -> tf.data.Dataset:
    """The dataset, of a length tf.data knows (checked at run time: a wrong one fails).

    Keras cannot tell the length of records read from TFRecord files, so its first validation
    pass ends on StopIteration and warns "Your input ran out of data; interrupting training",
    which reads as if training had stopped. Batching keeps a known length.
    """
    return dataset.apply(tf.data.experimental.assert_cardinality(num_examples))


def count(dataset: tf.data.Dataset) -> int:
    """Number of elements; iterating a cached dataset to the end also fills its cache."""
    return int(dataset.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))


def augmenter(config: TrainerConfig) -> keras.Sequential | None:
    """Train-only augmentation as batched Keras layers (one op per batch, not per image).

    Alternating flips are not a layer: training_batches applies them, as they depend on the
    epoch.
    """
    layers: list[keras.layers.Layer] = []
    if config.augmentation.flip and not config.augmentation.alternate_flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=config.runtime.seed))
    if config.augmentation.translate > 0:
        layers.append(
            keras.layers.RandomTranslation(
                config.augmentation.translate,
                config.augmentation.translate,
                fill_mode="reflect",
                interpolation="nearest",
                seed=config.runtime.seed,
            )
        )
    if config.augmentation.erase > 0:
        # The images are standardized here: 0 is the mean pixel, and the range only bounds it.
        layers.append(keras.layers.RandomErasing(
            factor=(config.augmentation.erase, config.augmentation.erase), fill_value=0.0,
            value_range=(-1.0, 1.0), seed=config.runtime.seed + 2))  # not the shifts' draws
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
# the end of fit) waits for it: a random wait at the end of every fit. Fixed values train at
# least as fast, without the wait.
_PARALLEL_CALLS = os.cpu_count() or 1
_PREFETCH_BATCHES = 4


def training_batches(
    examples: tf.data.Dataset,
    config: TrainerConfig,
    num_examples: int,
    shuffle_buffer: int | None = None,
    to_model: Callable[[tf.Tensor], tf.Tensor] | None = None,
) -> tf.data.Dataset:
    """All epochs' batches in one dataset (fit with steps_per_epoch), reshuffled every epoch.

    `shuffle_buffer` below `num_examples` (streamed examples) shuffles within a window; ingest
    wrote each split in random order, so a window holds a random mix of classes. `to_model`
    turns stored pixels into model inputs, once per batch.
    """
    buffer = num_examples if shuffle_buffer is None else shuffle_buffer
    augment = augmenter(config)
    alternate = config.augmentation.flip and config.augmentation.alternate_flip
    halves = tf.constant(np.random.default_rng(config.runtime.seed).random(num_examples) < 0.5)

    def one_epoch(epoch: tf.Tensor) -> tf.data.Dataset:
        graph = tf.compat.v1.get_default_graph()
        if graph.seed == 0:
            # tf.data's shuffle compares (global seed, op seed) with (0, 0) in Python
            # (random_seed.get_seed), which this tensor op seed cannot answer when the global
            # seed is 0 (runtime.seed=0, set by train): the traced epoch's graph leaves it out.
            graph.seed = None
        shuffled = examples.enumerate().shuffle(buffer, seed=config.runtime.seed + 7919 * epoch)
        return shuffled.batch(config.optimizer.batch_size).map(
            lambda indices, batch: (indices, epoch, *batch)
        )

    def prepare(indices, epoch, images, labels):
        if to_model is not None:
            images = to_model(images)
        if alternate:
            flip = alternating_flip_mask(halves, indices, epoch)
            images = tf.where(flip[:, None, None, None], tf.reverse(images, axis=[2]), images)
        if augment is not None:
            images = augment(images, training=True)
        return _one_hot(config)(images, labels)

    epochs = tf.data.Dataset.range(max(1, config.optimizer.epochs))
    dataset = epochs.flat_map(one_epoch).map(prepare, num_parallel_calls=_PARALLEL_CALLS)
    return _batch_options(dataset.prefetch(_PREFETCH_BATCHES))


def eval_batches(
    examples: tf.data.Dataset,
    config: TrainerConfig,
    to_model: Callable[[tf.Tensor], tf.Tensor] | None = None,
) -> tf.data.Dataset:
    one_hot = _one_hot(config)

    def prepare(images, labels):
        return one_hot(images if to_model is None else to_model(images), labels)

    batches = examples.batch(config.optimizer.batch_size).map(
        prepare, num_parallel_calls=_PARALLEL_CALLS)
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
