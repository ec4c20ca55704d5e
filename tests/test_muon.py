"""The Muon optimizer (trainer/muon.py): its maths on small matrices, and a real training run."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from imagegen import learnable_arrays
from trainer import data
from trainer.muon import MuonSGD, orthogonalize
from trainer.recipes import from_recipe
from trainer.schedule import ScaledSGD, make_optimizer
from trainer.train import train


def test_orthogonalize_evens_out_singular_values() -> None:
    rng = np.random.default_rng(0)
    # A badly conditioned matrix: singular values from 10 down to 0.1.
    u, _ = np.linalg.qr(rng.normal(size=(36, 36)))
    v, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    singular = np.logspace(1, -1, 8)
    matrix = (u[:, :8] * singular) @ v.T
    result = orthogonalize(tf.constant(matrix, tf.float32)).numpy()
    assert result.shape == (36, 8)
    out = np.linalg.svd(result, compute_uv=False)
    assert out.max() < 1.6 and out.min() > 0.3  # from a 100:1 spread to about 3:1
    # Same singular vectors, only the values change: U^T result V is diagonal.
    core = u[:, :8].T @ result @ v
    off_diagonal = core - np.diag(np.diag(core))
    assert np.abs(off_diagonal).max() < 1e-4 and np.diag(core).min() > 0.3


def test_muon_steps_conv_kernels_by_a_share_of_their_norm_and_sgd_elsewhere() -> None:
    rng = np.random.default_rng(1)
    start = rng.normal(size=(3, 3, 4, 16)).astype("float32") * 5
    kernel = keras.Variable(start, name="kernel")
    beta = keras.Variable(np.full((16,), 2.0, "float32"), name="beta")
    reference = keras.Variable(np.full((16,), 2.0, "float32"), name="beta")
    grad_kernel = tf.constant(rng.normal(size=(3, 3, 4, 16)), tf.float32)
    grad_beta = tf.constant(rng.normal(size=(16,)), tf.float32)
    sgd = {"l2": 0.01, "bias_lr_multiplier": 8.0, "momentum": 0.5}
    MuonSGD(0.1, muon_ratio=2.0, muon_momentum=0.6, **sgd).apply(
        [grad_kernel, grad_beta], [kernel, beta])
    ScaledSGD(0.1, **sgd).apply([grad_beta], [reference])
    # Not a kernel: exactly ScaledSGD's step.
    np.testing.assert_allclose(beta.numpy(), reference.numpy(), rtol=1e-6)
    # The kernel is rescaled to norm sqrt(16) = 4, then moved by rate 0.1 x 2 = 0.2 along an
    # almost orthogonal update of norm about sqrt(16): about 20 % of its norm, against the
    # gradient.
    normalized = 4.0 * start / np.linalg.norm(start)
    step = kernel.numpy() - normalized
    assert 0.1 < np.linalg.norm(step) / 4.0 < 0.35
    assert np.sum(step * grad_kernel.numpy()) < 0


def test_muon_recipe_trains_and_sets_its_optimizer() -> None:
    shape, classes = (8, 8, 3), ("a", "b", "c")
    examples = tf.data.Dataset.from_tensor_slices(learnable_arrays(512, 0, shape)).cache()
    # The SGD parts' rate lowered for 64-image batches, as in test_recipe.
    config = from_recipe("fast-muon", shape, classes, epochs=4, batch_size=64, widths=(8, 16),
                         learning_rate=0.05, precision="float32")
    optimizer = make_optimizer(config, steps_per_epoch=6)
    assert isinstance(optimizer, MuonSGD) and optimizer.muon_ratio == 0.24 / 0.05
    _, record = train(config, data.in_memory_inputs(examples.take(384), examples.skip(384)))
    assert record["final_eval_accuracy"] > 0.9
