"""Muon for conv kernels, SGD for everything else (as in Jordan's airbench94_muon).

A conv kernel's update is its Nesterov momentum made (nearly) orthogonal: every direction of
the (inputs x filters) matrix moves by about the same amount, instead of the few dominant ones
SGD's update is made of. That learns more per step, so a fixed short schedule needs fewer
epochs. Each kernel is first rescaled to a fixed norm: the BatchNorm after every conv makes its
scale meaningless, and a fixed norm makes `muon_learning_rate` the share of the kernel that one
step changes. Everything that is not a conv kernel (BatchNorm shifts, the whitening bias, the
linear head) keeps ScaledSGD's update.
"""

from __future__ import annotations

import tensorflow as tf

from trainer.schedule import ScaledSGD

# A quintic Newton-Schulz iteration tuned to push every singular value in (0, 1] towards 1
# quickly rather than exactly (Jordan's Muon coefficients): after a few steps they lie around
# 0.5-1.5, which trains as well as the exact orthogonal factor and costs only matmuls.
_NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
_NS_STEPS = 3


def orthogonalize(matrix: tf.Tensor, steps: int = _NS_STEPS) -> tf.Tensor:
    """About U V^T of the matrix's SVD U S V^T, by Newton-Schulz iteration."""
    a, b, c = _NS_COEFFICIENTS
    wide = matrix.shape[0] <= matrix.shape[1]
    x = matrix if wide else tf.transpose(matrix)
    # Frobenius norm >= spectral norm, so every singular value starts in (0, 1].
    x = x / (tf.norm(x) + 1e-7)
    for _ in range(steps):
        gram = tf.matmul(x, x, transpose_b=True)
        x = a * x + tf.matmul(b * gram + c * tf.matmul(gram, gram), x)
    return x if wide else tf.transpose(x)


def is_conv_kernel(variable) -> bool:
    return len(variable.shape) == 4


class MuonSGD(ScaledSGD):
    """ScaledSGD whose conv kernels take Muon steps of `muon_ratio` x the scheduled rate."""

    def __init__(self, learning_rate, muon_ratio: float, muon_momentum: float,
                 **kwargs) -> None:
        super().__init__(learning_rate, **kwargs)
        self.muon_ratio = muon_ratio
        self.muon_momentum = muon_momentum

    def scaled_gradient(self, gradient, variable):
        # No L2 for kernels: their norm is reset every step.
        return gradient if is_conv_kernel(variable) else super().scaled_gradient(
            gradient, variable)

    def update_step(self, gradient, variable, learning_rate):
        if not is_conv_kernel(variable):
            return super().update_step(gradient, variable, learning_rate)
        buffer = self.momentums[self._get_variable_index(variable)]
        gradient = tf.cast(gradient, variable.dtype)
        momentum = tf.cast(self.muon_momentum, variable.dtype)
        self.assign(buffer, momentum * buffer + gradient)
        nesterov = gradient + momentum * buffer
        filters = variable.shape[-1]
        # Kernel layout (height, width, inputs, filters): one column per filter.
        update = tf.reshape(orthogonalize(tf.reshape(nesterov, [-1, filters])), variable.shape)
        weights = tf.convert_to_tensor(variable)
        normalized = weights * (filters**0.5 / (tf.norm(weights) + 1e-12))
        step = tf.cast(learning_rate, variable.dtype) * self.muon_ratio
        self.assign(variable, normalized - step * update)

    def get_config(self) -> dict:
        return {**super().get_config(), "muon_ratio": self.muon_ratio,
                "muon_momentum": self.muon_momentum}
