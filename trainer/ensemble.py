"""Several networks of one recipe as one model: the mean of their logits (model.members).

Each member trains alone, on its own seed (initialization and batch order), one after the
other; the exported model runs them all on each image and averages their logits, so the
serving signature, TF Serving, TFMA and the TFLite file see a single model with one output.
Averaged logits rather than probabilities: one Keras Average layer, which converts to TFLite
as a plain mean (bench/recipe.py scores both averages on the eval split).
"""

from __future__ import annotations

import keras

from schema import features
from trainer.config import TrainerConfig

# The combined model is `<kind>_ensemble`; its members are `<kind>_cnn_<k>`.
ENSEMBLE_SUFFIX = "ensemble"


def member_config(config: TrainerConfig, index: int) -> TrainerConfig:
    """Member `index`'s config: the run's, on seed + index (a different initialization and
    batch order for each member; member 0 is the run's own seed).
    """
    return config.override({"runtime.seed": config.runtime.seed + index})


def member_seeds(config: TrainerConfig) -> list[int]:
    return [config.runtime.seed + k for k in range(config.model.members)]


def combine(networks: list[keras.Model], config: TrainerConfig) -> keras.Model:
    """One model whose logits are the mean of the networks' logits; a single network as is
    (so a one-member model is exported exactly as before ensembles existed).
    """
    if len(networks) == 1:
        return networks[0]
    inputs = keras.Input(shape=config.image_shape, name=features.IMAGE_XF)
    logits = keras.layers.Average(name="mean_logits", dtype="float32")(
        [network(inputs) for network in networks])
    return keras.Model(inputs, logits, name=f"{config.model.kind}_{ENSEMBLE_SUFFIX}")


def networks_of(model: keras.Model, members: int) -> list[keras.Model]:
    """The member networks of a model `combine` made (the model itself when members == 1)."""
    if members == 1:
        return [model]
    return [layer for layer in model.layers if isinstance(layer, keras.Model)]
