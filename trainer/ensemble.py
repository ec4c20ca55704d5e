"""Several networks of one recipe as one model: the mean of their logits (model.members).

Each member trains alone, on its own seed (initialization, batch order and augmentation), one
after the other; the exported model runs them all on each image and averages their logits, so the
serving signature, TF Serving, TFMA and the TFLite file see a single model with one output.
Averaged logits rather than probabilities: one Keras Average layer, which converts to TFLite
as a plain mean (bench/recipe.py scores both averages on the eval split).
"""

from __future__ import annotations

import keras
import numpy as np

from schema import features
from trainer.config import TrainerConfig
from trainer.model import build_model

# The combined model is `<kind>_ensemble`; its members are `<kind>_cnn_<k>`.
ENSEMBLE_SUFFIX = "ensemble"


# Member k trains on the run's seed + k x this: runs on nearby seeds (a sweep over 42, 43, ...)
# then share no network, as they would with seed + k.
MEMBER_SEED_STRIDE = 1_000_003


def member_seed(config: TrainerConfig, index: int) -> int:
    return config.runtime.seed + index * MEMBER_SEED_STRIDE


def member_config(config: TrainerConfig, index: int) -> TrainerConfig:
    """Member `index`'s config: the run's, on its own seed (a different initialization, batch
    order and augmentation for each member; member 0 is the run's own seed).
    """
    return config.override({"runtime.seed": member_seed(config, index)})


def build_networks(config: TrainerConfig, sample_images: np.ndarray | None) -> list[keras.Model]:
    """The config's untrained networks, each initialized on its member's seed (one network,
    named as before ensembles, when model.members is 1).
    """
    members = config.model.members
    networks = []
    for k in range(members):
        member = member_config(config, k)
        keras.utils.set_random_seed(member.runtime.seed)
        networks.append(build_model(member, sample_images, member=k if members > 1 else None))
    return networks


def build_ensemble(config: TrainerConfig, sample_images: np.ndarray | None) -> keras.Model:
    """The model train() exports, untrained: for reading a checkpoint of one into."""
    return combine(build_networks(config, sample_images), config)


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
