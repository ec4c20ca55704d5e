"""EfficientNet-Lite0 in Keras, and the map from the PyTorch weights' names onto its layers.

EfficientNet-Lite (Tan and Le; the TensorFlow TPU repository's `efficientnet/lite`) is
EfficientNet-B0 made for mobile accelerators and TFLite: no squeeze-and-excitation, ReLU6
instead of swish, a fixed stem (32) and head (1280). Its 16 inverted-residual blocks are listed
in `BLOCKS`. Every convolution pads as TensorFlow's "same" does (the PyTorch port pads the same
way explicitly), so Keras' padding="same" gives the same outputs.

The network is built as two models so that the Trainer can compute the frozen part once per
image: `bottom` (the stem and the first blocks, frozen) and `top` (the last `top_blocks` blocks,
the 1280-channel head convolution and global average pooling), whose output is the 1280 features
a classifier reads.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from schema.errors import BadInput

if TYPE_CHECKING:  # Keras (TensorFlow) loads when a network is built, not when the CLI starts
    import keras


# (repeats, kernel, stride of the first, expansion, output channels), as in the builder's
# 'r1_k3_s11_e1_i32_o16' ... 'r1_k3_s11_e6_i192_o320'.
_STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
           (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
STEM_CHANNELS = 32
FEATURES = 1280
IMAGENET_CLASSES = 1000
# Keras' BatchNormalization momentum is PyTorch's 1 - momentum; epsilon as in the builder.
_BN = {"momentum": 0.99, "epsilon": 1e-3}


@dataclasses.dataclass(frozen=True)
class Block:
    index: int
    kernel: int
    stride: int
    expand: int
    inputs: int
    outputs: int

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.inputs == self.outputs


def _blocks() -> tuple[Block, ...]:
    blocks, channels = [], STEM_CHANNELS
    for repeats, kernel, stride, expand, outputs in _STAGES:
        for r in range(repeats):
            blocks.append(Block(len(blocks), kernel, stride if r == 0 else 1, expand, channels,
                                outputs))
            channels = outputs
    return tuple(blocks)


BLOCKS = _blocks()


def _bn_relu6(x, name: str, dtype: str, relu: bool = True):
    import keras

    x = keras.layers.BatchNormalization(name=f"{name}_bn", dtype=dtype, **_BN)(x)
    return keras.layers.ReLU(6.0, name=f"{name}_relu6", dtype=dtype)(x) if relu else x


def _block(x, block: Block, dtype: str):
    import keras

    name = f"block{block.index}"
    inputs = x
    if block.expand != 1:
        x = keras.layers.Conv2D(block.inputs * block.expand, 1, use_bias=False,
                                name=f"{name}_expand", dtype=dtype)(x)
        x = _bn_relu6(x, f"{name}_expand", dtype)
    x = keras.layers.DepthwiseConv2D(block.kernel, block.stride, padding="same", use_bias=False,
                                     name=f"{name}_dw", dtype=dtype)(x)
    x = _bn_relu6(x, f"{name}_dw", dtype)
    x = keras.layers.Conv2D(block.outputs, 1, use_bias=False, name=f"{name}_project",
                            dtype=dtype)(x)
    x = _bn_relu6(x, f"{name}_project", dtype, relu=False)
    if block.residual:
        x = keras.layers.Add(name=f"{name}_add", dtype=dtype)([x, inputs])
    return x


def cut_shape(image_size: int, top_blocks: int) -> tuple[int, int, int]:
    """The shape of the bottom's output for square images of `image_size`."""
    side = -(-image_size // 2)  # the stem's stride
    for block in BLOCKS[: len(BLOCKS) - top_blocks]:
        side = -(-side // block.stride)
    channels = BLOCKS[len(BLOCKS) - top_blocks - 1].outputs if top_blocks < len(BLOCKS) else 32
    return side, side, channels


def build(image_size: int, top_blocks: int, dtype: str = "float32",
          channels: int = 3) -> tuple[keras.Model, keras.Model]:
    """(bottom, top): images normalized to [-1, 1] -> cut features -> 1280 pooled features."""
    import keras

    if not 0 <= top_blocks <= len(BLOCKS):
        raise ValueError(f"top_blocks must be in [0, {len(BLOCKS)}], got {top_blocks}")
    images = keras.Input((image_size, image_size, channels), name="images")
    x = keras.layers.Conv2D(STEM_CHANNELS, 3, 2, padding="same", use_bias=False, name="stem",
                            dtype=dtype)(images)
    x = _bn_relu6(x, "stem", dtype)
    first_top = len(BLOCKS) - top_blocks
    for block in BLOCKS[:first_top]:
        x = _block(x, block, dtype)
    bottom = keras.Model(images, x, name="efficientnet_lite0_bottom")
    cut = keras.Input(cut_shape(image_size, top_blocks), name="cut_features")
    x = cut
    for block in BLOCKS[first_top:]:
        x = _block(x, block, dtype)
    x = keras.layers.Conv2D(FEATURES, 1, use_bias=False, name="head", dtype=dtype)(x)
    x = _bn_relu6(x, "head", dtype)
    x = keras.layers.GlobalAveragePooling2D(name="pool", dtype=dtype)(x)
    top = keras.Model(cut, x, name="efficientnet_lite0_top")
    return bottom, top


def imagenet_classifier(dtype: str = "float32") -> keras.layers.Dense:
    """The original 1000-class head, for checking the converted weights on ImageNet images."""
    import keras

    return keras.layers.Dense(IMAGENET_CLASSES, name="imagenet_logits", dtype=dtype)


def _torch_names() -> dict[str, str]:
    """Keras layer name -> the PyTorch module that holds its weights."""
    names = {"stem": "_conv_stem", "stem_bn": "_bn0", "head": "_conv_head", "head_bn": "_bn1",
             "imagenet_logits": "_fc"}
    for block in BLOCKS:
        torch, keras_name = f"_blocks.{block.index}", f"block{block.index}"
        if block.expand != 1:
            names[f"{keras_name}_expand"] = f"{torch}._expand_conv"
            names[f"{keras_name}_expand_bn"] = f"{torch}._bn0"
        names[f"{keras_name}_dw"] = f"{torch}._depthwise_conv"
        names[f"{keras_name}_dw_bn"] = f"{torch}._bn1"
        names[f"{keras_name}_project"] = f"{torch}._project_conv"
        names[f"{keras_name}_project_bn"] = f"{torch}._bn2"
    return names


TORCH_NAMES = _torch_names()


class WeightsMismatchError(BadInput):
    """A weights file that does not fit the network: which layer, which shapes."""


def _keras_values(layer: keras.layers.Layer, state: Mapping[str, np.ndarray],
                  module: str) -> list[np.ndarray]:
    """The PyTorch tensors of `module`, in the layout and order of `layer.get_weights()`."""
    import keras

    if isinstance(layer, keras.layers.BatchNormalization):
        return [state[f"{module}.{k}"] for k in ("weight", "bias", "running_mean",
                                                 "running_var")]
    weight = state[f"{module}.weight"]
    if isinstance(layer, keras.layers.DepthwiseConv2D):  # (C, 1, kh, kw) -> (kh, kw, C, 1)
        return [weight.transpose(2, 3, 0, 1)]
    if isinstance(layer, keras.layers.Conv2D):  # (out, in, kh, kw) -> (kh, kw, in, out)
        return [weight.transpose(2, 3, 1, 0)]
    if isinstance(layer, keras.layers.Dense):  # (out, in) -> (in, out)
        return [weight.T, state[f"{module}.bias"]]
    raise TypeError(f"no PyTorch mapping for layer {layer.name} ({type(layer).__name__})")


def load_torch_weights(models: list[keras.Model | keras.layers.Layer],
                       state: Mapping[str, np.ndarray]) -> set[str]:
    """Fills every weighted layer of `models` from a state dict; returns the tensors used.

    Raises WeightsMismatchError naming the first layer whose tensor is missing or has another
    shape. `num_batches_tracked` counters have no Keras counterpart and are not used.
    """
    import keras

    used: set[str] = set()
    layers = []
    for model in models:
        layers.extend(model.layers if isinstance(model, keras.Model) else [model])
    for layer in layers:
        if not layer.weights:
            continue
        module = TORCH_NAMES.get(layer.name)
        if module is None:
            raise WeightsMismatchError(f"layer {layer.name} has no tensor in the weights file")
        try:
            values = _keras_values(layer, state, module)
        except KeyError as e:
            raise WeightsMismatchError(
                f"layer {layer.name}: the weights file has no tensor {e.args[0]}") from None
        expected = [tuple(w.shape) for w in layer.get_weights()]
        for value, shape in zip(values, expected, strict=True):
            if tuple(value.shape) != shape:
                raise WeightsMismatchError(
                    f"layer {layer.name} ({module}): the weights file has shape "
                    f"{tuple(value.shape)} (as Keras lays it out), the network {shape}")
        layer.set_weights([np.asarray(v, np.float32) for v in values])
        kinds = (("weight", "bias", "running_mean", "running_var")
                 if isinstance(layer, keras.layers.BatchNormalization)
                 else ("weight", "bias") if isinstance(layer, keras.layers.Dense) else ("weight",))
        used.update(f"{module}.{k}" for k in kinds)
    return used
