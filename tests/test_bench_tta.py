"""bench/tta.py: the variants the recipes serve must score exactly what the serving signature
computes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.tta import VARIANTS, combined_logits, needed_views, view_logits  # noqa: E402
from trainer.model import build_model, class_probabilities  # noqa: E402
from trainer.recipes import RECIPES, from_recipe  # noqa: E402

# The variant each recipe serves, by bench/tta.py's name for it.
SERVED = {"fast": "flip + 1px diagonal pair (fast serves it)",
          "fast-gray": "1px diagonal pair (fast-gray serves it), no flip"}


@pytest.mark.parametrize("recipe", sorted(SERVED))
def test_served_variant_reproduces_the_serving_probabilities(recipe: str) -> None:
    evaluation = RECIPES[recipe].evaluation
    model = build_model(from_recipe("classic", (8, 8, 3), ("a", "b", "c")))
    images = np.random.default_rng(0).normal(size=(5, 8, 8, 3)).astype("float32")
    logits = view_logits(model, images, needed_views(VARIANTS), batch_size=2)
    served = tf.nn.softmax(combined_logits(logits, VARIANTS[SERVED[recipe]])).numpy()
    expected = class_probabilities(model, tf.constant(images), evaluation.tta_flip,
                                   evaluation.tta_translate)
    np.testing.assert_allclose(served, expected.numpy(), atol=1e-5)
    plain = combined_logits(logits, VARIANTS["none"])
    np.testing.assert_allclose(plain, model(images, training=False).numpy(), atol=1e-5)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_variant_is_a_weighted_average(name: str) -> None:
    _, shifts = VARIANTS[name]
    assert sum(weight for weight, _, _ in shifts) == pytest.approx(1.0)
    assert len({(dy, dx) for _, dy, dx in shifts}) == len(shifts)
