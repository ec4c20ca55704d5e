"""The training loop shared by the TFX run_fn and the benchmarks."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import keras
import tensorflow as tf

from trainer import data, memory
from trainer.config import TrainerConfig
from trainer.lookahead import Lookahead
from trainer.model import build_model
from trainer.schedule import make_optimizer
from trainer.warm_start import warm_start

log = logging.getLogger(__name__)

# Training images used to compute the whitening layer, at most, and at most this many bytes
# of them as float32 (the kernel samples at most 1,000,000 patches from them anyway).
_WHITEN_SAMPLE = 5000
_WHITEN_SAMPLE_BYTES = 256 * 2**20

# Written next to the TensorBoard logs (the Trainer's model_run artifact), with history.json.
CURVES_FILE = "training_curves.png"


class EpochLogger(keras.callbacks.Callback):
    """One line per epoch with metrics, learning rate and ETA, for long runs watched in logs.

    Progress goes to stderr: stdout is for results (`run --json`).
    """

    def __init__(self, epochs: int) -> None:
        super().__init__()
        self._epochs = epochs
        self._start = 0.0

    def on_train_begin(self, logs=None) -> None:
        self._start = time.monotonic()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        elapsed = time.monotonic() - self._start
        done = epoch + 1
        eta = elapsed / done * (self._epochs - done)
        metrics = " ".join(f"{k}={v:.4f}" for k, v in sorted((logs or {}).items()))
        # A MirroredVariable under tf.distribute: read it through TensorFlow.
        lr = float(tf.convert_to_tensor(self.model.optimizer.learning_rate))
        log.info(f"[trainer] epoch {done}/{self._epochs} {metrics} lr={lr:.4g} "
                 f"elapsed={elapsed:.0f}s eta<={eta:.0f}s")


def distribution_strategy(config: TrainerConfig) -> tf.distribute.Strategy:
    """The in-process strategy for `config.runtime.distribution`.

    MultiWorkerMirroredStrategy is not made here: it configures collective ops, which TensorFlow
    only accepts before it has run any op, and `train` has run many by now. The process that
    trains with it creates it first and passes it in (trainer/multi_worker.py).
    """
    if config.runtime.distribution == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus or tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if config.runtime.distribution == "multi_worker":
        raise ValueError(
            "distribution='multi_worker' needs a MultiWorkerMirroredStrategy created at process "
            "start: run `python -m trainer.multi_worker` (run_fn does) or pass `strategy`"
        )
    return tf.distribute.get_strategy()


def compile_model(model: keras.Model, config: TrainerConfig, steps_per_epoch: int) -> None:
    model.compile(
        optimizer=make_optimizer(config, steps_per_epoch),
        loss=keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=config.optimizer.label_smoothing
        ),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )


def train(
    config: TrainerConfig,
    inputs: data.TrainingInputs,
    log_dir: str | None = None,
    strategy: tf.distribute.Strategy | None = None,
) -> tuple[keras.Model, dict]:
    """Trains on the inputs' examples; returns the model and a JSON-able training record.

    `strategy` is one the caller had to create earlier (MultiWorkerMirroredStrategy); without
    it, `distribution_strategy(config)` picks one. `batch_size` is the global batch either way.
    """
    keras.utils.set_random_seed(config.runtime.seed)
    plan = inputs.plan
    log.info("[trainer] training input: %s", plan.reason)
    num_train, num_eval = inputs.num_train, inputs.num_eval
    decode_seconds = 0.0
    if not plan.streams:  # fill the caches now, so the first epoch's time is training time
        start = time.monotonic()
        data.count(inputs.train), data.count(inputs.eval)
        decode_seconds = time.monotonic() - start
        log.info(f"[trainer] {num_train} train / {num_eval} eval images decoded through the "
                 f"Transform graph and cached in {decode_seconds:.1f}s")
    steps_per_epoch = math.ceil(num_train / config.optimizer.batch_size)
    sample = None
    if config.uses_whitening:
        # A float32 copy, so bounded in bytes too: 5,000 CIFAR images, 1,365 of 128x128x3.
        per_image = memory.images_bytes(1, config.image_shape, 4)
        sample_bytes = min(plan.budget_bytes, _WHITEN_SAMPLE_BYTES)
        size = min(_WHITEN_SAMPLE, max(1, sample_bytes // per_image))
        sample = inputs.codec.decode(next(iter(inputs.train.batch(size)))[0]).numpy()
    if strategy is None:
        strategy = distribution_strategy(config)
    warm = None
    with strategy.scope():
        model = build_model(config, sample)
        if config.continuity.warm_start_from:
            warm = warm_start(model, config.class_names, config.continuity.warm_start_from)
            share = config.continuity.warm_start_epochs
            if warm["used"] and config.optimizer.epochs > 0:
                config = config.override(
                    {"optimizer.epochs": max(1, round(config.optimizer.epochs * share))})
            log.info("[trainer] warm start: " + (
                f"from version {warm['version']} ({warm['from']}), "
                f"{config.optimizer.epochs} epoch(s)"
                if warm["used"] else f"no, from scratch: {warm['why']}"))
        compile_model(model, config, steps_per_epoch)
    eval_ds = data.eval_batches(inputs.eval, config, inputs.codec.decode)
    history: dict[str, list[float]] = {}
    fit_start = time.monotonic()
    if config.optimizer.epochs > 0:
        callbacks: list[keras.callbacks.Callback] = [EpochLogger(config.optimizer.epochs)]
        if config.optimizer.lookahead:
            callbacks.append(Lookahead(steps_per_epoch * config.optimizer.epochs))
        if log_dir:
            callbacks.append(keras.callbacks.TensorBoard(log_dir=log_dir))
        if config.optimizer.early_stopping_patience > 0:
            callbacks.append(
                keras.callbacks.EarlyStopping(
                    monitor="val_accuracy",
                    patience=config.optimizer.early_stopping_patience,
                    restore_best_weights=True,
                )
            )
        result = model.fit(
            data.training_batches(inputs.train, config, num_train, plan.shuffle_buffer,
                                  inputs.codec.decode),
            steps_per_epoch=steps_per_epoch,
            validation_data=eval_ds,
            validation_freq=config.evaluation.validation_freq,
            epochs=config.optimizer.epochs,
            shuffle=False,  # training_batches reshuffles every epoch itself
            verbose=0,
            callbacks=callbacks,
        )
        history = {k: [float(v) for v in values] for k, values in result.history.items()}
    else:
        log.warning("epochs=0: exporting the untrained model")
    fit_seconds = time.monotonic() - fit_start
    epochs_run = len(history.get("loss", []))
    images_per_second = num_train * epochs_run / fit_seconds if epochs_run else None
    final = model.evaluate(eval_ds, verbose=0, return_dict=True)
    speed = f", {images_per_second:.0f} training images/s" if images_per_second else ""
    log.info(f"[trainer] final eval accuracy {final['accuracy']:.4f} (no test-time augmentation) "
             f"after {fit_seconds:.0f}s of training{speed}")
    record = {
        "config": config.to_dict(),
        "num_train": num_train,
        "num_eval": num_eval,
        "steps_per_epoch": steps_per_epoch,
        "replicas": strategy.num_replicas_in_sync,
        "input": plan.to_dict(),
        "warm_start": warm,
        "decode_seconds": round(decode_seconds, 2) if not plan.streams else None,
        "fit_seconds": round(fit_seconds, 2),
        "train_images_per_second": round(images_per_second, 1) if images_per_second else None,
        "final_eval_accuracy": float(final["accuracy"]),
        "refit": inputs.refit,
        "history": history,
    }
    if log_dir:
        save_record(log_dir, record)
    return model, record


def save_record(log_dir: str, record: dict) -> None:
    """The training record (validated as a TrainingRecord) and its curves, next to the
    TensorBoard logs (model_run).
    """
    from trainer.plots import training_curves
    from trainer.record import TrainingRecord

    TrainingRecord.from_data(record, f"the training record for {log_dir}").write(log_dir)
    training_curves(record["history"], Path(log_dir) / CURVES_FILE)
