"""Learning-rate schedules and the optimizer."""

from __future__ import annotations

import logging

import keras
import tensorflow as tf

from trainer.config import TrainerConfig

log = logging.getLogger(__name__)


class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from peak/10 to peak, then linear decay to zero at the last step."""

    def __init__(self, peak: float, total_steps: int, warmup_fraction: float) -> None:
        self.peak = peak
        self.total_steps = max(1, total_steps)
        self.warmup_steps = max(1, round(self.total_steps * warmup_fraction))

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warmup = self.peak * (0.1 + 0.9 * step / self.warmup_steps)
        decay_span = max(1, self.total_steps - self.warmup_steps)
        decay = self.peak * tf.maximum(0.0, (self.total_steps - step) / decay_span)
        return tf.where(step < self.warmup_steps, warmup, decay)

    def get_config(self) -> dict:
        return {
            "peak": self.peak,
            "total_steps": self.total_steps,
            "warmup_fraction": self.warmup_steps / self.total_steps,
        }


def learning_rate(config: TrainerConfig, steps_per_epoch: int):
    if config.lr_schedule == "onecycle":
        return OneCycle(config.learning_rate, steps_per_epoch * config.epochs,
                        config.warmup_fraction)
    return config.learning_rate


# Weight averaging needs this many averaging windows (1 / (1 - momentum) steps each) of training;
# on shorter runs the average still leans on the random initial weights.
_MIN_EMA_WINDOWS = 10


def use_ema(config: TrainerConfig, steps_per_epoch: int) -> bool:
    if config.ema_momentum <= 0:
        return False
    windows = steps_per_epoch * config.epochs * (1 - config.ema_momentum)
    if windows < _MIN_EMA_WINDOWS:
        log.warning(
            "weight averaging off: %d steps are too few for ema_momentum=%s (needs %d windows)",
            steps_per_epoch * config.epochs, config.ema_momentum, _MIN_EMA_WINDOWS,
        )
        return False
    return True


def make_optimizer(config: TrainerConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    ema = {"use_ema": use_ema(config, steps_per_epoch),
           "ema_momentum": config.ema_momentum or 0.99}
    lr = learning_rate(config, steps_per_epoch)
    weight_decay = config.weight_decay or None
    if config.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(
            lr, momentum=config.momentum, nesterov=True, weight_decay=weight_decay, **ema
        )
    elif weight_decay:
        optimizer = keras.optimizers.AdamW(lr, weight_decay=weight_decay, **ema)
    else:
        optimizer = keras.optimizers.Adam(lr, **ema)
    if weight_decay:
        # Decay conv/dense kernels only, as the fast-training recipes do.
        optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    return optimizer
