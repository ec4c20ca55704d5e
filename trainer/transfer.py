"""The `transfer` recipe's training: a pretrained backbone, a new head, then its top fine-tuned.

The backbone is split in two (trainer/backbones): `bottom`, frozen, and `top`, the last
`fine_tune_blocks` blocks with the head convolution and pooling. Every image goes through the
Transform graph and `bottom` once (and its mirror image once more when flips augment), and the
Trainer keeps those features, not the images: at 224x224 an image is 600 KB of float32, its
7x7x192 features 37 KB, its pooled features 5 KB. Then:

1. the new linear head trains on the pooled features of the frozen network (`head_epochs` at
   `head_learning_rate`), which takes seconds;
2. `top` and the head train together on the kept features (`epochs` at `learning_rate`), with
   `top`'s BatchNorm layers frozen (inference mode): their statistics stay ImageNet's, which a
   few hundred images could not estimate better.

Each phase keeps the weights of its best epoch by eval loss (eval accuracy on a few dozen images
moves in steps too coarse to choose on); phase 2 starts from phase 1's best, so it can only keep
or improve what eval saw. The exported model is images -> bottom -> top -> head, one network.
When the features do not fit the cache budget, only the head trains, on pooled features.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time

import keras
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tfx.components.trainer.fn_args_utils import DataAccessor

from schema.errors import Setting
from trainer import data, memory
from trainer.backbones import registry
from trainer.config import TrainerConfig

log = logging.getLogger(__name__)
_EXTRACT_BATCH = 32
HEAD_LAYER = "logits"


@dataclasses.dataclass(frozen=True)
class Networks:
    """The parts of the transfer model, sharing their layers with `model`."""

    bottom: keras.Model
    top: keras.Model
    dropout: keras.layers.Dropout
    head: keras.layers.Dense
    model: keras.Model  # images -> logits: what is exported


def build_networks(config: TrainerConfig, source: registry.WeightsSource) -> Networks:
    backbone = registry.get(config.model.backbone)
    size = config.image_shape[0]
    bottom, top = registry.build(backbone, size, config.model.fine_tune_blocks, source, "float32")
    bottom.trainable = False
    for layer in top.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False  # Keras 3: a frozen BatchNorm also runs in inference mode
    dropout = keras.layers.Dropout(config.model.dropout, seed=config.runtime.seed,
                                   name="head_dropout")
    head = keras.layers.Dense(config.num_classes, name=HEAD_LAYER, dtype="float32")
    images = keras.Input(config.image_shape, name="image_xf")
    logits = head(dropout(top(bottom(images))))
    return Networks(bottom, top, dropout, head,
                    keras.Model(images, logits, name=f"{config.model.backbone}_transfer"))


@dataclasses.dataclass
class Features:
    """Per split: the features of each image (and of its mirror image), and the labels."""

    train: np.ndarray  # [views, n, ...]
    train_labels: np.ndarray
    eval: np.ndarray  # [views, n, ...]
    eval_labels: np.ndarray
    seconds: float
    images: int

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds else 0.0


def views(config: TrainerConfig) -> tuple[int, int]:
    """Feature views of each train and eval image: itself, and its mirror for flip
    augmentation (train) or flip test-time augmentation (eval).
    """
    return 2 if config.augmentation.flip else 1, 2 if config.evaluation.tta_flip else 1


def _extract(dataset: tf.data.Dataset, network: keras.Model, image_shape, views: int,
             what: str, total: int) -> tuple[np.ndarray, np.ndarray, int]:
    """[views, n, ...] features of (image, label) batches and the labels, with progress."""
    # One trace for every batch size (the last batch is smaller).
    @tf.function(input_signature=[tf.TensorSpec([None, *image_shape], tf.float32)])
    def run(images):
        outputs = [network(images, training=False)]
        if views == 2:
            outputs.append(network(tf.reverse(images, axis=[2]), training=False))
        return tf.stack(outputs)

    parts, labels, done, start, shown = [], [], 0, time.monotonic(), 0.0
    for images, batch_labels in dataset:
        parts.append(run(images).numpy())
        labels.append(batch_labels.numpy())
        done += int(batch_labels.shape[0])
        elapsed = time.monotonic() - start
        if elapsed - shown >= 15 or done == total:
            shown = elapsed
            log.info(f"[trainer] {what} features: {done}/{total} images, {elapsed:.0f}s")
    return np.concatenate(parts, axis=1), np.concatenate(labels), done * views


def _plan(config: TrainerConfig, networks: Networks, num_train: int, num_eval: int,
          budget: int) -> tuple[bool, str]:
    """(fine-tune on kept cut features?, why): whether they fit the budget."""
    train_views, eval_views = views(config)
    images = num_train * train_views + num_eval * eval_views

    def size(shape) -> int:
        return images * math.prod(int(v) for v in shape[1:]) * 4

    cut, pooled = size(networks.bottom.output.shape), size(networks.top.output.shape)
    if pooled > budget:
        raise data.CacheBudgetError(
            f"the {images:,} images' pooled features take {memory.human(pooled)}, more than "
            f"the cache budget of {memory.human(budget)}: raise ",
            Setting("trainer.data.cache_budget"), f" (now {config.data.cache_budget})")
    if config.optimizer.epochs == 0 or config.model.fine_tune_blocks == 0:
        return False, (f"head only (epochs={config.optimizer.epochs}, fine_tune_blocks="
                       f"{config.model.fine_tune_blocks}): pooled features kept, "
                       f"{memory.human(pooled)}")
    if cut > budget:
        return False, (f"head only: the features to fine-tune on would take "
                       f"{memory.human(cut)}, more than the cache budget of "
                       f"{memory.human(budget)}; pooled features kept, {memory.human(pooled)}")
    return True, (f"features of the frozen part kept in memory ({images:,} views x "
                  f"{'x'.join(str(v) for v in networks.bottom.output.shape[1:])} float32 = "
                  f"{memory.human(cut)}, within the budget of {memory.human(budget)})")


def _pooled(top: keras.Model, features: np.ndarray) -> np.ndarray:
    views, n = features.shape[:2]
    flat = features.reshape(views * n, *features.shape[2:])
    pooled = top.predict(flat, batch_size=256, verbose=0)
    return pooled.reshape(views, n, *pooled.shape[1:])


def _epoch_views(features: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each image's features or its mirror image's, drawn anew every epoch."""
    if features.shape[0] == 1:
        return features[0]
    pick = rng.integers(0, features.shape[0], features.shape[1])
    return np.where(pick.reshape(-1, *[1] * (features.ndim - 2)) == 1, features[1], features[0])


def _eval_logits(model: keras.Model, features: np.ndarray) -> np.ndarray:
    """Logits of the eval images, averaged over their views (the mirror: test-time flips)."""
    return np.mean([model.predict(v, batch_size=256, verbose=0) for v in features], axis=0)


def _metrics(logits: np.ndarray, labels: np.ndarray, smoothing: float) -> dict[str, float]:
    num_classes = logits.shape[1]
    targets = keras.ops.one_hot(labels, num_classes) * (1 - smoothing) + smoothing / num_classes
    loss = keras.losses.categorical_crossentropy(targets, logits, from_logits=True)
    return {"val_loss": float(np.mean(keras.ops.convert_to_numpy(loss))),
            "val_accuracy": float(np.mean(np.argmax(logits, 1) == labels))}


def fit_best(model: keras.Model, train: np.ndarray, labels: np.ndarray, eval_: np.ndarray,
             eval_labels: np.ndarray, config: TrainerConfig, epochs: int, learning_rate: float,
             phase: str) -> tuple[dict[str, list[float]], float]:
    """Trains `epochs` epochs, keeping the weights of the best eval loss (the starting weights
    count); stops after `early_stopping_patience` epochs without a better one. Returns the
    history and the seconds spent fitting.
    """
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=keras.losses.CategoricalCrossentropy(
                      from_logits=True, label_smoothing=config.optimizer.label_smoothing),
                  metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")])
    rng = np.random.default_rng(config.runtime.seed)
    targets = keras.utils.to_categorical(labels, config.num_classes)
    smooth = config.optimizer.label_smoothing
    best = _metrics(_eval_logits(model, eval_), eval_labels, smooth)
    best_weights, waited, fit_seconds = model.get_weights(), 0, 0.0
    history: dict[str, list[float]] = {"loss": [], "accuracy": [], "val_loss": [],
                                       "val_accuracy": []}
    patience = config.optimizer.early_stopping_patience or epochs
    for epoch in range(epochs):
        start = time.monotonic()
        result = model.fit(_epoch_views(train, rng), targets,
                           batch_size=config.optimizer.batch_size, epochs=1, shuffle=True,
                           verbose=0)
        fit_seconds += time.monotonic() - start
        scores = _metrics(_eval_logits(model, eval_), eval_labels, smooth)
        for key in ("loss", "accuracy"):
            history[key].append(float(result.history[key][-1]))
        for key, value in scores.items():
            history[key].append(value)
        better = scores["val_loss"] < best["val_loss"]
        log.info(f"[trainer] {phase} epoch {epoch + 1}/{epochs} loss={history['loss'][-1]:.4f} "
                 f"accuracy={history['accuracy'][-1]:.4f} val_loss={scores['val_loss']:.4f} "
                 f"val_accuracy={scores['val_accuracy']:.4f}{' (best)' if better else ''}")
        if better:
            best, best_weights, waited = scores, model.get_weights(), 0
        else:
            waited += 1
            if waited >= patience:
                break
    model.set_weights(best_weights)
    return history, fit_seconds


def _warm_start(networks: Networks, config: TrainerConfig) -> tuple[dict | None, TrainerConfig]:
    if not config.continuity.warm_start_from:
        return None, config
    from trainer.warm_start import warm_start

    warm = warm_start(networks.model, config.class_names, config.continuity.warm_start_from)
    if warm["used"]:
        share, epochs = config.continuity.warm_start_epochs, config.optimizer.epochs
        config = config.override({
            "optimizer.epochs": max(1, round(epochs * share)) if epochs else 0,
            "optimizer.head_epochs": max(1, round(config.optimizer.head_epochs * share))})
    log.info("[trainer] warm start: " + (
        f"from version {warm['version']} ({warm['from']}), {config.optimizer.head_epochs} head and "
        f"{config.optimizer.epochs} fine-tuning epoch(s)" if warm["used"]
        else f"no, from the backbone's weights: {warm['why']}"))
    return warm, config


def train_transfer(
    config: TrainerConfig,
    train_files: list[str],
    eval_files: list[str],
    data_accessor: DataAccessor,
    tf_transform_output: tft.TFTransformOutput,
    log_dir: str | None = None,
    available_memory: int | None = None,
) -> tuple[keras.Model, dict]:
    """Trains the transfer model; returns it and the training record (as train.train does)."""

    def examples(files: list[str]) -> tf.data.Dataset:
        return data.decoded_examples(files, data_accessor, tf_transform_output,
                                     data.PixelCodec.identity())

    return train_transfer_on(
        config, examples(train_files), examples(eval_files),
        data.count_records(train_files, data_accessor, tf_transform_output),
        data.count_records(eval_files, data_accessor, tf_transform_output),
        log_dir, available_memory)


def train_transfer_on(
    config: TrainerConfig,
    train_examples: tf.data.Dataset,
    eval_examples: tf.data.Dataset,
    num_train: int,
    num_eval: int,
    log_dir: str | None = None,
    available_memory: int | None = None,
) -> tuple[keras.Model, dict]:
    """train_transfer on (Transform output image, label) examples, one at a time, of known
    counts: the Trainer's through the Transform graph, a benchmark's decoded without TFX.
    """
    keras.utils.set_random_seed(config.runtime.seed)
    source = registry.resolve_weights(config.model.backbone, config.model.backbone_weights)
    log.info(f"[trainer] backbone {config.model.backbone}, {config.image_shape[0]}x"
             f"{config.image_shape[1]} inputs ({config.model.resize_mode}), "
             f"weights: {source.origin}")
    if config.runtime.distribution != "none":
        log.info(f"[trainer] distribution {config.runtime.distribution}: the transfer recipe "
                 "computes each image's features once and trains the head and top blocks on "
                 "them in this process, on its default device")
    budget = memory.resolve_budget(config.data.cache_budget, available_memory)
    networks = build_networks(config, source)
    fine_tune, why = _plan(config, networks, num_train, num_eval, budget)
    warm, config = _warm_start(networks, config)
    log.info("[trainer] training input: %s", why)
    extractor = networks.bottom if fine_tune else keras.Sequential(
        [networks.bottom, networks.top])
    features = extract_features(extractor, train_examples, eval_examples, config, num_train,
                                num_eval)

    pooled_train = _pooled(networks.top, features.train) if fine_tune else features.train
    pooled_eval = _pooled(networks.top, features.eval) if fine_tune else features.eval
    head_model = keras.Sequential([networks.dropout, networks.head], name="head")
    head_model.build((None, pooled_train.shape[-1]))
    head_history, head_seconds = fit_best(
        head_model, pooled_train, features.train_labels, pooled_eval, features.eval_labels,
        config, config.optimizer.head_epochs, config.optimizer.head_learning_rate, "head")
    head_only = _metrics(_eval_logits(head_model, pooled_eval), features.eval_labels,
                         config.optimizer.label_smoothing)
    tune_history: dict[str, list[float]] = {}
    tune_seconds = 0.0
    if fine_tune:
        cut = keras.Input(networks.bottom.output.shape[1:])
        tune_model = keras.Model(cut, networks.head(networks.dropout(networks.top(cut))))
        tune_history, tune_seconds = fit_best(
            tune_model, features.train, features.train_labels, features.eval,
            features.eval_labels, config, config.optimizer.epochs,
            config.optimizer.learning_rate, "fine-tuning")
        final = _metrics(_eval_logits(tune_model, features.eval), features.eval_labels,
                         config.optimizer.label_smoothing)
    else:
        final = head_only
    tune_epochs = len(tune_history.get("loss", []))
    record = {
        "config": config.to_dict(),
        "num_train": num_train,
        "num_eval": num_eval,
        "steps_per_epoch": math.ceil(num_train / config.optimizer.batch_size),
        "replicas": 1,
        "input": {"mode": "features", "reason": why, "budget_bytes": budget},
        "warm_start": warm,
        "decode_seconds": None,
        "fit_seconds": round(head_seconds + tune_seconds, 2),
        "train_images_per_second": (round(num_train * tune_epochs / tune_seconds, 1)
                                    if tune_epochs else None),
        "final_eval_accuracy": final["val_accuracy"],
        "history": {key: head_history[key] + tune_history.get(key, []) for key in head_history},
        "transfer": {
            "backbone": source,
            "fine_tuned_blocks": config.model.fine_tune_blocks if fine_tune else 0,
            "feature_seconds": round(features.seconds, 2),
            "feature_images_per_second": round(features.images_per_second, 1),
            "head_epochs_run": len(head_history["loss"]),
            "head_seconds": round(head_seconds, 2),
            "head_only_eval_accuracy": head_only["val_accuracy"],
            "fine_tune_epochs_run": tune_epochs,
            "fine_tune_seconds": round(tune_seconds, 2),
            "eval_views": int(features.eval.shape[0]),
        },
    }
    log.info(f"[trainer] final eval accuracy {final['val_accuracy']:.4f} (head only: "
             f"{head_only['val_accuracy']:.4f}) after {features.seconds:.0f}s of feature "
             f"extraction ({features.images_per_second:.0f} images/s), {head_seconds:.0f}s head, "
             f"{tune_seconds:.0f}s fine-tuning")
    if log_dir:
        from trainer.train import save_record

        save_record(log_dir, record)
    return networks.model, record


def extract_features(
    network: keras.Model,
    train_examples: tf.data.Dataset,
    eval_examples: tf.data.Dataset,
    config: TrainerConfig,
    num_train: int,
    num_eval: int,
) -> Features:
    """Each (Transform output image, label) example through `network` once (and mirrored, for
    flips).
    """
    start = time.monotonic()

    def batches(examples: tf.data.Dataset) -> tf.data.Dataset:
        return examples.batch(_EXTRACT_BATCH).prefetch(2)

    train_views, eval_views = views(config)
    train, train_labels, done = _extract(batches(train_examples), network, config.image_shape,
                                         train_views, "train", num_train)
    eval_, eval_labels, done_eval = _extract(batches(eval_examples), network,
                                             config.image_shape, eval_views, "eval", num_eval)
    return Features(train, train_labels, eval_, eval_labels, time.monotonic() - start,
                    done + done_eval)
