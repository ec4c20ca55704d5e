"""Learning-rate schedules and the optimizer."""

from __future__ import annotations

import logging

import keras
import tensorflow as tf

from trainer.config import TrainerConfig

log = logging.getLogger(__name__)


class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from initial*peak to peak, then linear decay to final*peak at the end."""

    def __init__(
        self,
        peak: float,
        total_steps: int,
        warmup_fraction: float,
        initial: float = 0.1,
        final: float = 0.0,
    ) -> None:
        self.peak = peak
        self.total_steps = max(1, total_steps)
        self.warmup_steps = max(1, round(self.total_steps * warmup_fraction))
        self.initial = initial
        self.final = final

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warmup = self.initial + (1 - self.initial) * step / self.warmup_steps
        decay_span = max(1, self.total_steps - self.warmup_steps)
        progress = tf.minimum(1.0, (step - self.warmup_steps) / decay_span)
        decay = 1 - (1 - self.final) * progress
        return self.peak * tf.where(step < self.warmup_steps, warmup, decay)

    def get_config(self) -> dict:
        return {
            "peak": self.peak,
            "total_steps": self.total_steps,
            "warmup_fraction": self.warmup_steps / self.total_steps,
            "initial": self.initial,
            "final": self.final,
        }


def learning_rate(config: TrainerConfig, steps_per_epoch: int):
    opt = config.optimizer
    if opt.lr_schedule == "onecycle":
        return OneCycle(opt.learning_rate, steps_per_epoch * opt.epochs, opt.warmup_fraction,
                        opt.initial_lr_fraction, opt.final_lr_fraction)
    return opt.learning_rate


# Variables that shift activations rather than weight inputs: BatchNorm betas, conv biases.
_SHIFT_VARIABLES = ("beta", "bias")


class ScaledSGD(keras.optimizers.SGD):
    """SGD + Nesterov with L2 added to every gradient and a faster rate for shift variables.

    This is the parametrization of the fast CIFAR-10 training work: the L2 term goes through
    momentum (unlike Keras' decoupled weight_decay), and BatchNorm shifts, whose gradients are
    tiny next to their useful range, learn `bias_lr_multiplier` times faster.
    """

    def __init__(self, learning_rate, l2: float, bias_lr_multiplier: float, **kwargs) -> None:
        super().__init__(learning_rate, nesterov=True, **kwargs)
        self.l2 = l2
        self.bias_lr_multiplier = bias_lr_multiplier

    def gradient_multiplier(self, variable) -> float:
        return self.bias_lr_multiplier if variable.name in _SHIFT_VARIABLES else 1.0

    def scaled_gradient(self, gradient, variable):
        return self.gradient_multiplier(variable) * gradient + self.l2 * variable.value

    def apply(self, grads, trainable_variables=None):
        variables = (
            self._trainable_variables if trainable_variables is None else trainable_variables
        )
        grads = [
            None if g is None else self.scaled_gradient(g, v)
            for g, v in zip(grads, variables, strict=True)
        ]
        return super().apply(grads, trainable_variables)

    def get_config(self) -> dict:
        return {**super().get_config(), "l2": self.l2,
                "bias_lr_multiplier": self.bias_lr_multiplier}


# Weight averaging needs this many averaging windows (1 / (1 - momentum) steps each) of training;
# on shorter runs the average still leans on the random initial weights.
_MIN_EMA_WINDOWS = 10


def use_ema(config: TrainerConfig, steps_per_epoch: int) -> bool:
    opt = config.optimizer
    if opt.ema_momentum <= 0:
        return False
    windows = steps_per_epoch * opt.epochs * (1 - opt.ema_momentum)
    if windows < _MIN_EMA_WINDOWS:
        log.warning(
            "weight averaging off: %d steps are too few for ema_momentum=%s (needs %d windows)",
            steps_per_epoch * opt.epochs, opt.ema_momentum, _MIN_EMA_WINDOWS,
        )
        return False
    return True


def make_optimizer(config: TrainerConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    opt = config.optimizer
    ema = {"use_ema": use_ema(config, steps_per_epoch), "ema_momentum": opt.ema_momentum or 0.99}
    lr = learning_rate(config, steps_per_epoch)
    sgd = {"l2": opt.weight_decay, "bias_lr_multiplier": opt.bias_lr_multiplier,
           "momentum": opt.momentum, **ema}
    if opt.kind == "sgd":
        return ScaledSGD(lr, **sgd)
    if opt.kind == "muon":
        from trainer.muon import MuonSGD

        return MuonSGD(lr, muon_ratio=opt.muon_learning_rate / opt.learning_rate,
                       muon_momentum=opt.muon_momentum, **sgd)
    if opt.weight_decay:
        optimizer = keras.optimizers.AdamW(lr, weight_decay=opt.weight_decay, **ema)
        optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
        return optimizer
    return keras.optimizers.Adam(lr, **ema)
