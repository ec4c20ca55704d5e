"""How long a recipe's fit would take on this host: its arithmetic over the host's rate.

    seconds = members x epochs x training images x training FLOPs per image
              / (the host's matrix-product rate in the recipe's compute dtype x the recipe's share)

(members: the networks of an ensemble, trained one after the other, trainer/ensemble.py.)

The FLOPs per image come from the recipe's own model at the data's image shape (`layer_macs`,
`training_flops_per_image`; bench/roofline.py imports them from here). Building the model is
cheap (about 0.1 s once TensorFlow is loaded, which the recipe choice loads anyway to read the
CPU), so the count is exact for any shape rather than a per-pixel constant scaled.

The share is how much of the host's best matrix-product rate (trainer/host_speed.py) a
recipe's whole fit reaches: measured, not modelled, in the runs named in TRAIN_STEP_SHARE.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

# The share of the host's matrix-product rate (in the recipe's compute dtype) that the
# recipe's whole fit reaches, taken below the measured shares so that the estimate errs long:
# docs/training.md ("How `--recipe auto` chooses") gives each measurement and its file.
TRAIN_STEP_SHARE: dict[tuple[str, str], float] = {
    ("fast", "bfloat16"): 0.45,
    ("fast", "float32"): 0.70,
    ("fast-wide", "bfloat16"): 0.55,
    ("fast-muon", "float32"): 0.70,
    ("fast-gray", "float32"): 0.30,
}
# A recipe and dtype never measured: the lowest share above.
UNMEASURED_SHARE = 0.30


def train_step_share(recipe: str, dtype: str) -> float:
    return TRAIN_STEP_SHARE.get((recipe, dtype), UNMEASURED_SHARE)


def layer_macs(model) -> list[dict]:
    """Multiply-adds per image of each conv and dense layer, and which gradients it needs.

    The recipes' models are chains, so "a trainable weight upstream" is any earlier layer's.
    """
    import keras

    rows, trainable_upstream = [], False
    for layer in model.layers:
        trains = bool(layer.trainable_weights)
        if isinstance(layer, keras.layers.Conv2D):
            kh, kw = layer.kernel_size
            _, height, width, cout = layer.output.shape
            cin = layer.input.shape[-1]
            macs = height * width * kh * kw * cin * cout
        elif isinstance(layer, keras.layers.Dense):
            macs = layer.input.shape[-1] * layer.units
        else:
            trainable_upstream |= trains
            continue
        rows.append({
            "layer": layer.name,
            "forward_macs": int(macs),
            "input_grad": trainable_upstream,
            "kernel_grad": trains,
        })
        trainable_upstream |= trains
    return rows


def training_flops_per_image(rows: list[dict]) -> int:
    """2 FLOPs per multiply-add: the forward pass plus the gradients each layer needs.

    BatchNorm, activations and pooling are left out: they only make the true cost higher,
    which the measured share (TRAIN_STEP_SHARE) absorbs.
    """
    return sum(2 * r["forward_macs"] * (1 + r["input_grad"] + r["kernel_grad"]) for r in rows)


@functools.cache
def recipe_flops_per_image(recipe: str, image_shape: tuple[int, int, int],
                           num_classes: int = 10) -> int:
    """Training FLOPs per image of the recipe's model at this image shape (built in float32)."""
    from trainer.recipes import from_recipe

    return config_flops_per_image(
        from_recipe(recipe, image_shape, [f"c{i}" for i in range(max(2, num_classes))]))


def config_flops_per_image(config) -> int:
    """Training FLOPs per image of a scratch model as this TrainerConfig builds it (its widths,
    whitening stride, shape...), built in float32.
    """
    import numpy as np

    from trainer.model import build_model

    sample = np.zeros((1, *config.image_shape), "float32") if config.uses_whitening else None
    model = build_model(config.override({"runtime.precision": "float32"}), sample)
    return training_flops_per_image(layer_macs(model))


@dataclasses.dataclass(frozen=True)
class FitEstimate:
    """A recipe's estimated fit seconds and what it came from."""

    recipe: str
    seconds: float
    dtype: str
    rate: float  # the host's matrix-product rate, FLOP/s, in `dtype`
    rate_source: str  # "measured on this host", "cached for this host", ...
    flops_per_image: int
    share: float

    @property
    def minutes(self) -> int:
        return max(1, round(self.seconds / 60))

    def rate_text(self) -> str:
        return f"{self.dtype} {self.rate / 1e9:.0f} GFLOP/s {self.rate_source}"


def estimate_fit(recipe: str, epochs: int, num_train: int, flops_per_image: int, dtype: str,
                 rate: float, rate_source: str = "", members: int = 1) -> FitEstimate:
    """The fit's seconds: members x epochs x num_train x FLOPs per image (one network's)
    / (rate x the recipe's share).
    """
    share = train_step_share(recipe, dtype)
    seconds = members * epochs * num_train * flops_per_image / (rate * share)
    return FitEstimate(recipe, seconds, dtype, rate, rate_source, flops_per_image, share)


def recipe_fit(recipe: str, image_shape: Sequence[int], num_train: int, dtype: str,
               rate: float, rate_source: str = "", num_classes: int = 10,
               epochs: int | None = None, members: int | None = None) -> FitEstimate:
    """estimate_fit for a named recipe: its epochs and members (or `epochs`, `members`), its
    model's FLOPs at this shape.
    """
    from trainer.recipes import RECIPES

    shape = tuple(int(v) for v in image_shape)
    return estimate_fit(recipe, epochs or RECIPES[recipe].optimizer.epochs, num_train,
                        recipe_flops_per_image(recipe, shape, num_classes), dtype, rate,
                        rate_source, members or RECIPES[recipe].model.members)
