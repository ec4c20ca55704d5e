"""bench/roofline.py: the per-image arithmetic that the fit-time floor rests on."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.roofline import layer_macs, tf_forward_flops, training_flops_per_image  # noqa: E402
from trainer.model import build_model  # noqa: E402
from trainer.recipes import from_recipe  # noqa: E402


def _fast_model(widths: tuple[int, ...]):
    config = from_recipe("fast", (16, 16, 3), ["a", "b", "c"], widths=widths,
                         precision="float32")
    return build_model(config, np.random.default_rng(0).random((4, 16, 16, 3), "float32"))


def test_layer_macs_match_a_hand_count_and_tensorflows_profiler() -> None:
    model = _fast_model((8, 16))
    rows = {r["layer"]: r for r in layer_macs(model)}
    convs = [r for name, r in rows.items() if name != "logits"]
    # Frozen 2x2 whitening, valid padding: 15x15 outputs of 4*3 inputs onto 24 channels; then
    # each block: conv (same) before its 2x2 pool, conv after it.
    assert [r["forward_macs"] for r in convs] == [
        15 * 15 * 12 * 24,
        15 * 15 * 9 * 24 * 8, 7 * 7 * 9 * 8 * 8,
        7 * 7 * 9 * 8 * 16, 3 * 3 * 9 * 16 * 16,
    ]
    assert rows["logits"]["forward_macs"] == 16 * 3
    forward = 2 * sum(r["forward_macs"] for r in rows.values())
    # The profiler also counts the small element-wise ops; the convolutions dominate.
    assert tf_forward_flops(model) == pytest.approx(forward, rel=0.05)


def test_gradients_counted_only_where_something_trains() -> None:
    rows = layer_macs(_fast_model((8, 16)))
    whiten, first_conv = rows[0], rows[1]
    # The frozen whitening kernel needs neither gradient: nothing trains before it.
    assert (whiten["input_grad"], whiten["kernel_grad"]) == (False, False)
    # Its trainable bias lies upstream of the first conv, so that conv passes gradients back.
    assert (first_conv["input_grad"], first_conv["kernel_grad"]) == (True, True)
    # Every other layer costs three times its forward pass; the whitening conv only once.
    forward = 2 * sum(r["forward_macs"] for r in rows)
    assert training_flops_per_image(rows) == 3 * forward - 2 * 2 * whiten["forward_macs"]
