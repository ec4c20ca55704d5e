"""Lookahead weight averaging, as in Jordan's airbench.

Every `every` steps the weights move to an exponential average of themselves, and training
continues from the average. The averaging strength ramps up with the cube of the progress, so
it does nothing early (the weights still change fast) and smooths the noisy end of a short
high-learning-rate schedule; training ends on the averaged weights. BatchNorm statistics are
averaged with the weights they belong to.
"""

from __future__ import annotations

import keras
import tensorflow as tf


class Lookahead(keras.callbacks.Callback):
    def __init__(self, total_steps: int, every: int = 5, decay: float = 0.95) -> None:
        super().__init__()
        self.total_steps = max(1, total_steps)
        self.every = every
        # The average's decay per `every` steps at the very end of training.
        self.final_decay = decay**every
        self._step = 0
        self._average: list[tf.Variable] = []

    def _weights(self) -> list:
        return [w for w in self.model.weights if "float" in str(w.dtype)]

    def on_train_begin(self, logs=None) -> None:
        self._step = 0
        self._average = [tf.Variable(w.value, trainable=False) for w in self._weights()]
        self._update = tf.function(self._blend)

    def _blend(self, decay: tf.Tensor) -> None:
        for average, weight in zip(self._average, self._weights(), strict=True):
            average.assign(decay * average + (1 - decay) * weight.value)
            weight.assign(average)

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        self._step += 1
        if self._step % self.every == 0:
            progress = min(1.0, self._step / self.total_steps)
            self._update(tf.constant(self.final_decay * progress**3, tf.float32))

    def on_train_end(self, logs=None) -> None:
        for average, weight in zip(self._average, self._weights(), strict=True):
            weight.assign(average)
