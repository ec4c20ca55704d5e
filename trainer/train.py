"""The training loop shared by the TFX run_fn and the benchmarks."""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from pathlib import Path

import keras
import tensorflow as tf

from trainer import data, memory
from trainer.config import TrainerConfig
from trainer.ensemble import build_networks, combine, member_config
from trainer.lookahead import Lookahead
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

    def __init__(self, epochs: int, label: str = "") -> None:
        super().__init__()
        self._epochs = epochs
        self._label = label  # "member 1/2 " in an ensemble
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
        log.info(f"[trainer] {self._label}epoch {done}/{self._epochs} {metrics} lr={lr:.4g} "
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


@dataclasses.dataclass(frozen=True)
class MemberFit:
    """One network's fit: its seed, history, time and final eval accuracy (logits alone)."""

    seed: int
    history: dict[str, list[float]]
    seconds: float
    eval_accuracy: float

    @property
    def epochs_run(self) -> int:
        return len(self.history.get("loss", []))

    def summary(self) -> dict:
        return {"seed": self.seed, "epochs_run": self.epochs_run,
                "fit_seconds": round(self.seconds, 2), "final_eval_accuracy": self.eval_accuracy}


def _fit(model: keras.Model, config: TrainerConfig, inputs: data.TrainingInputs,
         eval_ds: tf.data.Dataset, steps_per_epoch: int, log_dir: str | None,
         label: str) -> MemberFit:
    """Trains one network on `config`'s seed (its batch order and augmentation draws)."""
    keras.utils.set_random_seed(config.runtime.seed)
    history: dict[str, list[float]] = {}
    start = time.monotonic()
    if config.optimizer.epochs > 0:
        callbacks: list[keras.callbacks.Callback] = [EpochLogger(config.optimizer.epochs, label)]
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
            data.training_batches(inputs.train, config, inputs.num_train,
                                  inputs.plan.shuffle_buffer, inputs.codec.decode),
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
    seconds = time.monotonic() - start
    accuracy = float("nan")
    if label:  # an ensemble's member: its own accuracy, beside the ensemble's in the record
        accuracy = float(model.evaluate(eval_ds, verbose=0, return_dict=True)["accuracy"])
        log.info(f"[trainer] {label}eval accuracy {accuracy:.4f} after {seconds:.0f}s")
    return MemberFit(config.runtime.seed, history, seconds, accuracy)


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
    members = config.model.members
    with strategy.scope():
        networks = build_networks(config, sample)
        model = combine(networks, config)
        if config.continuity.warm_start_from:
            warm = warm_start(model, config.class_names, config.continuity.warm_start_from,
                              members)
            share = config.continuity.warm_start_epochs
            if warm["used"] and config.optimizer.epochs > 0:
                config = config.override(
                    {"optimizer.epochs": max(1, round(config.optimizer.epochs * share))})
            log.info("[trainer] warm start: " + (
                f"from version {warm['version']} ({warm['from']}), "
                f"{config.optimizer.epochs} epoch(s)"
                if warm["used"] else f"no, from scratch: {warm['why']}"))
        # After the warm start's epochs: each network's own seed, the run's schedule.
        configs = [member_config(config, k) for k in range(members)]
        for network, member in zip(networks, configs, strict=True):
            compile_model(network, member, steps_per_epoch)
        if members > 1:  # for the final evaluation only: it never trains as a whole
            compile_model(model, config, steps_per_epoch)
    eval_ds = data.eval_batches(inputs.eval, config, inputs.codec.decode)
    fits = [
        _fit(network, member, inputs, eval_ds, steps_per_epoch,
             f"{log_dir}/member_{k}" if log_dir and k else log_dir,
             f"member {k + 1}/{members} " if members > 1 else "")
        for k, (network, member) in enumerate(zip(networks, configs, strict=True))
    ]
    fit_seconds = sum(fit.seconds for fit in fits)
    epochs_run = sum(fit.epochs_run for fit in fits)
    images_per_second = num_train * epochs_run / fit_seconds if epochs_run else None
    final = model.evaluate(eval_ds, verbose=0, return_dict=True)
    speed = f", {images_per_second:.0f} training images/s" if images_per_second else ""
    what = f", the mean logits of {members} members" if members > 1 else ""
    log.info(f"[trainer] final eval accuracy {final['accuracy']:.4f} (no test-time "
             f"augmentation{what}) "
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
        # Member 1's epochs when there are several (each member's summary in `members`).
        "history": fits[0].history,
        "members": [fit.summary() for fit in fits] if members > 1 else [],
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
