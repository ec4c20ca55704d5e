"""Training/preprocessing settings passed to Transform and Trainer as `custom_config`.

They travel as a JSON dict (custom_config must be JSON for Kubeflow), so this dataclass is the
schema of that dict on both sides. `RECIPES` are named starting points; every field can still be
overridden.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from schema.errors import BadInput
from trainer.memory import DEFAULT_CACHE_BUDGET, check_budget

# "transfer": a pretrained backbone (trainer/backbones/), a new linear head (trainer/transfer.py).
MODELS = ("classic", "fast", "transfer")
# How the Transform graph gives every image the model's size: "stretch" resizes to it (the
# scratch recipes, whose data ingest made one size), "crop" keeps the aspect ratio and cuts the
# centre, "pad" keeps the aspect ratio and pads with black.
RESIZE_MODES = ("stretch", "crop", "pad")
# "muon": conv kernels take orthogonalized momentum steps (trainer/muon.py), the rest SGD.
OPTIMIZERS = ("adam", "sgd", "muon")
SCHEDULES = ("constant", "onecycle")
PRECISIONS = ("auto", "float32", "bfloat16")
ACTIVATIONS = ("relu", "gelu")
# tf.distribute strategies: "none" (default device), "mirrored" (all local GPUs, or the logical
# CPU devices), "multi_worker" (MultiWorkerMirroredStrategy, workers from TF_CONFIG).
DISTRIBUTIONS = ("none", "mirrored", "multi_worker")
# What the TF Serving warm-up requests in each pushed model hold: the first eval images, or
# generated noise images of the model's shape, for data that must not leave training.
WARMUPS = ("real", "synthetic")
# In every exported model: the config it was trained with (TF Serving ignores assets.extra/
# apart from its warm-up file). --skip-if-unchanged compares it with the next run's.
TRAINING_CONFIG_FILE = "assets.extra/training_config.json"
# In every transfer model: the backbone, where its weights came from, their SHA-256 and licence
# (trainer/backbones/registry.py WeightsSource); the report and `lineage` read it back.
BACKBONE_FILE = "assets.extra/backbone.json"
# The scratch recipes' input normalization: each channel standardized with the data's statistics.
STANDARDIZE = "standardize"


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
    image_shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    # "classic": the blog-tutorial CNN (Conv/BN/pool/dropout + dense head).
    # "fast": a 3-block conv net in the style of fast CIFAR-10 training research.
    model: str = "classic"
    epochs: int = 30
    batch_size: int = 64
    optimizer: str = "adam"
    learning_rate: float = 2e-3
    lr_schedule: str = "constant"
    # onecycle: linear warm-up over this share of the steps, then linear decay to zero.
    warmup_fraction: float = 0.2
    # onecycle: the learning rate starts and ends at these fractions of the peak.
    initial_lr_fraction: float = 0.1
    final_lr_fraction: float = 0.0
    momentum: float = 0.9
    # Adam: decoupled (AdamW), kernels only. SGD: an L2 term on every trainable variable, added
    # to the gradient as the fast CIFAR-10 training work does (with BatchNorm, it sets how fast
    # the kernels' direction moves).
    weight_decay: float = 0.0
    # SGD: BatchNorm shifts (and the whitening bias) learn this many times faster than kernels.
    bias_lr_multiplier: float = 1.0
    # muon: the conv kernels' peak step (each step moves a kernel by about this share of its
    # norm) and momentum; the schedule has the shape of learning_rate's.
    muon_learning_rate: float = 0.24
    muon_momentum: float = 0.6
    label_smoothing: float = 0.0
    # Exponential moving average of the weights, exported instead of the last weights; 0 = off.
    ema_momentum: float = 0.0
    # Lookahead averaging (trainer/lookahead.py), ramped up towards the end of training.
    lookahead: bool = False
    # classic model
    base_filters: int = 32
    dense_units: int = 128
    dropout: float = 0.25
    # fast model: channels of each conv block, and a frozen 2x2 patch-whitening first layer
    # computed from the training images (instead of a learned 3x3 stem).
    widths: tuple[int, ...] = (32, 128, 128)
    whiten: bool = False
    # Stride of the whitening conv: 2 turns each 2x2 patch into its 8 whitened coordinates at
    # half the resolution (lossless, 4x less work for every layer after it).
    whiten_stride: int = 1
    activation: str = "relu"
    # BatchNorm of the fast model: False drops the learned scale (the next BatchNorm undoes it).
    bn_scale: bool = True
    bn_momentum: float = 0.9
    # Start each conv as the identity on its first input channels (Dirac init).
    dirac_init: bool = False
    # Logits are multiplied by this: small values keep early softmax outputs soft.
    logit_scale: float = 1.0
    augment_flip: bool = False
    # Flip a fixed half of the images on even epochs and the other half on odd ones.
    alternate_flip: bool = False
    augment_translate: float = 0.1
    # Serving averages the prediction of the image and its mirror image...
    tta_flip: bool = False
    # ...and, when > 0, of the image shifted by this many pixels up-left and down-right.
    tta_translate: int = 0
    # "auto": bfloat16 compute where the CPU (AVX512-BF16/AMX) or GPU (compute 8.0+) has it.
    precision: str = "auto"
    # 0 turns early stopping off (fixed-length schedules such as onecycle).
    early_stopping_patience: int = 8
    # Validate every N epochs (and always after the last).
    validation_freq: int = 1
    # tf.distribute strategy for training (DISTRIBUTIONS); batch_size is the global batch.
    distribution: str = "none"
    warmup: str = "real"
    # Memory for decoded images (trainer/memory.py): a size, or a share of the memory available
    # when training starts. Past it the Trainer streams instead of caching.
    cache_budget: str = DEFAULT_CACHE_BUDGET
    # Warm start (trainer/warm_start.py): the push base (<serving-dir>/<model-name>) whose
    # newest version's weights the model starts from, when class map and architecture match;
    # it then trains this share of `epochs` (at least one). "" trains from scratch.
    warm_start_from: str = ""
    warm_start_epochs: float = 0.4
    # Hand on the served model instead of training when the data gate found the data unchanged
    # and this config equals the served model's (components/trainer.py).
    skip_if_unchanged: bool = False
    # transfer model: the backbone (trainer/backbones/registry.py) and its weights: "imagenet",
    # "none" (random) or a file. The head trains first on the frozen network's features
    # (head_epochs at head_learning_rate); then the last fine_tune_blocks blocks train with it
    # for `epochs` at `learning_rate`, BatchNorm statistics frozen.
    backbone: str = ""
    backbone_weights: str = "imagenet"
    fine_tune_blocks: int = 2
    head_epochs: int = 40
    head_learning_rate: float = 1e-3
    resize_mode: str = "stretch"
    seed: int = 42
    # Which recipe these settings started from, and why it was chosen (for the report).
    recipe: str = "custom"
    recipe_reason: str = ""

    def __post_init__(self) -> None:
        if len(self.image_shape) != 3 or min(self.image_shape) < 1:
            raise BadInput(
                f"image_shape must be (height, width, channels), got {self.image_shape}"
            )
        if self.image_shape[2] not in (1, 3, 4):
            raise BadInput(f"channels must be 1, 3 or 4, got {self.image_shape[2]}")
        if len(self.class_names) < 2:
            raise BadInput(f"need at least 2 classes, got {list(self.class_names)}")
        for name, value, allowed in (
            ("model", self.model, MODELS),
            ("optimizer", self.optimizer, OPTIMIZERS),
            ("lr_schedule", self.lr_schedule, SCHEDULES),
            ("precision", self.precision, PRECISIONS),
            ("activation", self.activation, ACTIVATIONS),
            ("distribution", self.distribution, DISTRIBUTIONS),
            ("warmup", self.warmup, WARMUPS),
            ("resize_mode", self.resize_mode, RESIZE_MODES),
        ):
            if value not in allowed:
                raise BadInput(f"{name} must be one of {list(allowed)}, got {value!r}")
        if self.epochs < 0:
            raise BadInput(f"epochs must be >= 0, got {self.epochs}")
        if self.batch_size < 1:
            raise BadInput(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0 <= self.augment_translate < 0.5:
            raise BadInput(f"augment_translate must be in [0, 0.5), got {self.augment_translate}")
        if not 0 <= self.label_smoothing < 1:
            raise BadInput(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0 <= self.ema_momentum < 1:
            raise BadInput(f"ema_momentum must be in [0, 1), got {self.ema_momentum}")
        if not 0 <= self.warmup_fraction < 1:
            raise BadInput(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        if not 0 <= self.initial_lr_fraction <= 1 or not 0 <= self.final_lr_fraction <= 1:
            raise BadInput("initial_lr_fraction and final_lr_fraction must be in [0, 1]")
        if not 0 <= self.bn_momentum < 1:
            raise BadInput(f"bn_momentum must be in [0, 1), got {self.bn_momentum}")
        if not 0 < self.muon_learning_rate < 1 or not 0 <= self.muon_momentum < 1:
            raise BadInput("muon_learning_rate must be in (0, 1), muon_momentum in [0, 1)")
        if self.bias_lr_multiplier <= 0 or self.logit_scale <= 0:
            raise BadInput("bias_lr_multiplier and logit_scale must be > 0")
        if not 0 <= self.tta_translate < min(self.image_shape[:2]) // 2:
            raise BadInput(f"tta_translate must be in [0, side/2), got {self.tta_translate}")
        if self.whiten_stride not in (1, 2):
            raise BadInput(f"whiten_stride must be 1 or 2, got {self.whiten_stride}")
        check_budget(self.cache_budget)
        if not 0 < self.warm_start_epochs <= 1:
            raise BadInput(f"warm_start_epochs must be in (0, 1], got {self.warm_start_epochs}")
        if not self.widths or min(self.widths) < 1:
            raise BadInput(f"widths must be positive channel counts, got {self.widths}")
        if (self.model == "transfer") != bool(self.backbone):
            raise BadInput("model='transfer' takes a backbone, and only it does: got model="
                           f"{self.model!r}, backbone={self.backbone!r}")
        if self.backbone and self.distribution == "multi_worker":
            raise BadInput("the transfer recipe trains on features computed once per image "
                           "in one process: use --distribution none or mirrored")
        if self.backbone:
            from trainer.backbones.registry import get

            get(self.backbone)  # BackboneError (a ValueError) listing the names
            if self.image_shape[2] != 3:
                raise BadInput(f"a backbone takes RGB images; image_shape {self.image_shape}")
        if self.fine_tune_blocks < 0 or self.head_epochs < 0 or self.head_learning_rate <= 0:
            raise BadInput("fine_tune_blocks and head_epochs must be >= 0, "
                           "head_learning_rate > 0")

    @property
    def uses_whitening(self) -> bool:
        return self.model == "fast" and self.whiten

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for key in ("image_shape", "class_names", "widths"):
            data[key] = list(data[key])
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainerConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise BadInput(f"unknown trainer config keys: {unknown}; known: {sorted(known)}")
        values = dict(data)
        values["image_shape"] = tuple(int(v) for v in values["image_shape"])
        values["class_names"] = tuple(str(v) for v in values["class_names"])
        if "widths" in values:
            values["widths"] = tuple(int(v) for v in values["widths"])
        return cls(**values)

    def preprocessing_config(self) -> dict[str, Any]:
        """The subset Transform's preprocessing_fn reads."""
        return {"image_shape": list(self.image_shape), "resize_mode": self.resize_mode,
                "normalization": self.normalization}

    @property
    def normalization(self) -> str:
        """"standardize" (per-channel statistics of the data) or the backbone's fixed one."""
        if not self.backbone:
            return STANDARDIZE
        from trainer.backbones.registry import get

        return get(self.backbone).normalization

    def replace(self, **changes: Any) -> TrainerConfig:
        return dataclasses.replace(self, **changes)


# Named starting points. "classic" is the tutorial CNN with Adam and early stopping. "fast"
# follows fast CIFAR-10 training research (Page's ResNet-9 work, Jordan's airbench): frozen
# patch whitening, a 3-block BN/GELU conv net with identity-initialized convs and scale-free
# BatchNorm, label smoothing, flip+translate augmentation, flip+translate test-time
# augmentation, bfloat16, trained as airbench94 does: SGD+Nesterov with L2 and fast BatchNorm
# shifts on a one-cycle schedule, lookahead averaging. On the shared CIFAR-10 JPEGs it matches
# airbench94 itself trained on the same splits; 10 epochs rather than 8 for the accuracy the
# last two add (docs/cifar10-accuracy.md).
_FAST_SGD: dict[str, Any] = {
    "model": "fast",
    "epochs": 10,
    "batch_size": 1024,
    "optimizer": "sgd",
    "learning_rate": 1.5,
    "lr_schedule": "onecycle",
    "warmup_fraction": 0.23,
    "initial_lr_fraction": 0.2,
    "final_lr_fraction": 0.07,
    "momentum": 0.85,
    "weight_decay": 1.33e-3,
    "bias_lr_multiplier": 64.0,
    "label_smoothing": 0.2,
    "widths": (64, 256, 256),
    "whiten": True,
    "activation": "gelu",
    "bn_scale": False,
    "bn_momentum": 0.6,
    "dirac_init": True,
    "logit_scale": 1 / 9,
    "augment_flip": True,
    "alternate_flip": True,
    "augment_translate": 0.0625,
    "lookahead": True,
    "tta_flip": True,
    "tta_translate": 1,
    "early_stopping_patience": 0,
    "validation_freq": 4,
}
# "fast-muon" trains the conv kernels with Muon (trainer/muon.py), as airbench94_muon does: batch
# 2000, a linear decay from the first step, no lookahead; the SGD parts keep their rates and get
# that script's per-step weight decay. On the CIFAR-10 eval split, 8 epochs of it match 10 of
# "fast" in less fit time; 10 epochs gave no clear gain for the extra time
# (docs/cifar10-accuracy.md; bench/results/recipe-fast-10ep.json, recipe-muon-*ep.json).
# Not the default: through the pipeline the time gain vanished and test accuracy was no better
# than fast's (bench/results/cifar10-fast-muon.json against cifar10.json).
RECIPES: dict[str, dict[str, Any]] = {
    "classic": {},
    "fast": _FAST_SGD,
    "fast-muon": {
        **_FAST_SGD,
        "epochs": 8,
        "batch_size": 2000,
        "optimizer": "muon",
        "muon_learning_rate": 0.24,
        "muon_momentum": 0.6,
        "warmup_fraction": 0.0,
        "initial_lr_fraction": 1.0,
        "final_lr_fraction": 0.0,
        "weight_decay": 2.67e-3,
        "lookahead": False,
    },
}
# "fast-wide" is fast-muon with 1.25x the channels (80/320/320: 1.53x the multiply-adds) for 10
# epochs. On the CIFAR-10 eval split it beats fast, with and without TTA, for a fit time that is
# affordable only in bfloat16 (bench/results/recipe-muon-w80-320-320-10ep-bf16.json). --recipe
# auto takes it only where the Trainer computes in bfloat16: in float32 (CPUs without bfloat16
# support) it would take several times as long.
RECIPES["fast-wide"] = {**RECIPES["fast-muon"], "epochs": 10, "widths": (80, 320, 320)}
# Small grayscale images (MNIST, Fashion-MNIST): the fast recipe's optimizer and three blocks of
# 24/48/96 channels at full resolution, on 512-image batches, with translations only. No flips:
# digits and letters are not mirror-symmetric, and on Fashion-MNIST's eval split flips gained
# nothing. Chosen on the eval splits with bench/recipe.py (bench/results/recipe-fashion-*.json):
# on Fashion-MNIST the faster stride-2 whitening (14x14x8, 48/96 channels) plateaus lower, even
# with twice the epochs, and narrower blocks, two blocks, ReLU or fewer epochs all fall short of
# this recipe. On MNIST both reach the same accuracy, so the stride-2 layer stays an option
# (whiten_stride=2) for digit-like data.
# It computes in float32 even where the CPU has bfloat16: there bfloat16 was barely faster for
# this small network (bench/results/recipe-mnist-fast-gray-*-bf16host.json), and MNIST pipeline
# runs in bfloat16 could collapse for their first epochs at the peak learning rate and end below
# float32's test accuracy (bench/results/seeds-bf16.json). A float32 run there dipped for one
# epoch and recovered: the peak rate is near the edge, and bfloat16's rounding tips it over.
RECIPES["fast-gray"] = {
    **_FAST_SGD,
    "precision": "float32",
    "epochs": 5,
    "batch_size": 512,
    "whiten_stride": 1,
    "widths": (24, 48, 96),
    "augment_flip": False,
    "alternate_flip": False,
    "tta_flip": False,
    "augment_translate": 0.075,
    "validation_freq": 5,
}

# Photos: EfficientNet-Lite0 pretrained on ImageNet (trainer/transfer.py). The head trains on
# the frozen network's features, then the last four blocks with it. Chosen by cross-validation
# inside the training images (never test) on the two photo sets: centre crops beat padding on
# hymenoptera; on sign-digits the last 4 blocks at 3e-4 beat the last 2 (at 1e-4 or 1e-3), 1e-3
# made the last 4 unstable, and the last 6 added little for much more fit time. float32: for
# this depthwise network bfloat16 was slower, even on CPUs with bfloat16 support.
RECIPES["transfer"] = {
    "model": "transfer",
    "backbone": "efficientnet_lite0",
    "backbone_weights": "imagenet",
    "precision": "float32",
    "resize_mode": "crop",
    "fine_tune_blocks": 4,
    "head_epochs": 40,
    "head_learning_rate": 1e-3,
    "epochs": 8,
    "learning_rate": 3e-4,
    "batch_size": 32,
    "dropout": 0.2,
    "label_smoothing": 0.1,
    "augment_flip": True,
    "augment_translate": 0.0,
    "tta_flip": False,
    "early_stopping_patience": 3,
}


AUTO = "auto"
# Below this many training images a fixed short schedule has too few steps to be worth it: the
# tutorial CNN with early stopping on the eval split is the safer choice (the digits demo).
_MIN_FAST_TRAIN_IMAGES = 5000
# Up to this side, grayscale images get the narrower network; larger ones the photo recipe.
_MAX_GRAY_SIDE = 64
# Colour images up to this side, of one size, are what the scratch photo recipes are built for
# (CIFAR-10's 32x32); larger ones, or of many sizes, get a pretrained backbone.
_MAX_SCRATCH_COLOUR_SIDE = 64


def choose_recipe(image_shape: Sequence[int], num_train: int,
                  bfloat16: bool = False, sizes_vary: bool = False) -> tuple[str, str]:
    """(recipe, why) for `--recipe auto`, from the image shape, the training set size and
    whether the Trainer computes in bfloat16 (which makes the wider photo network affordable).

    Colour images larger than 64 px, of many sizes, or fewer than 5,000 of them get the
    pretrained backbone; grayscale and small images keep the scratch CNNs.
    """
    height, width, channels = (int(v) for v in image_shape)
    shape = f"{height}x{width}x{channels}"
    if channels == 3:
        reasons = [f"{num_train:,} training images (< {_MIN_FAST_TRAIN_IMAGES:,})"
                   if num_train < _MIN_FAST_TRAIN_IMAGES else "",
                   "images of many sizes" if sizes_vary else "",
                   f"{shape} images (> {_MAX_SCRATCH_COLOUR_SIDE} px)"
                   if max(height, width) > _MAX_SCRATCH_COLOUR_SIDE else ""]
        if any(reasons):
            return "transfer", (
                f"colour photos: {', '.join(r for r in reasons if r)}; an ImageNet-pretrained "
                f"{RECIPES['transfer']['backbone']} with a new head, its top fine-tuned")
    if num_train < _MIN_FAST_TRAIN_IMAGES:
        return "classic", (f"{num_train:,} training images (< {_MIN_FAST_TRAIN_IMAGES:,}): too "
                           "few for a fixed short schedule; the tutorial CNN with early stopping")
    if channels == 1 and max(height, width) <= _MAX_GRAY_SIDE:
        return "fast-gray", (f"{shape} grayscale images, {num_train:,} training images: the "
                             "fast network narrower (24/48/96 channels), translations only")
    if bfloat16:
        return "fast-wide", (f"{shape} images, {num_train:,} training images, bfloat16 compute: "
                             "the fast photo recipe (patch whitening, flips), 1.25x wider, "
                             "trained by Muon")
    return "fast", (f"{shape} images, {num_train:,} training images: the fast photo recipe "
                    "(patch whitening, flips); float32 compute, so not the wider fast-wide")


def fit_batch_size(batch_size: int, smallest_split: int) -> int:
    """The recipe's batch size, halved until one batch fits in the smallest split."""
    while batch_size > 1 and batch_size > smallest_split:
        batch_size //= 2
    return batch_size


def from_recipe(
    recipe: str,
    image_shape: Sequence[int],
    class_names: Sequence[str],
    **overrides: Any,
) -> TrainerConfig:
    """The recipe's settings, with every non-None override applied on top."""
    if recipe not in RECIPES:
        raise BadInput(f"unknown recipe {recipe!r}; choose from {sorted(RECIPES)}")
    values = {**RECIPES[recipe], "recipe": recipe}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return TrainerConfig(
        image_shape=tuple(int(v) for v in image_shape),
        class_names=tuple(class_names),
        **values,
    )


# Fields the data decides (or the run records), not a --set.
_NOT_SETTABLE = ("image_shape", "class_names", "recipe", "recipe_reason", "warm_start_from")


def parse_settings(pairs: Sequence[str]) -> dict[str, Any]:
    """KEY=VALUE strings (`run --set`) as typed TrainerConfig values.

    The type is the field default's: numbers, true/false, text, comma-separated ints for
    tuples (widths=16,32,64).
    """
    defaults = {f.name: f.default for f in dataclasses.fields(TrainerConfig)
                if f.name not in _NOT_SETTABLE}
    settings: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in defaults:
            raise BadInput(
                f"--set {pair!r}: expected KEY=VALUE with KEY one of {sorted(defaults)}"
            )
        default = defaults[key]
        try:
            if isinstance(default, bool):
                if text.lower() not in ("true", "false", "1", "0"):
                    raise ValueError("expected true or false")
                value: Any = text.lower() in ("true", "1")
            elif isinstance(default, tuple):
                value = tuple(int(v) for v in text.split(","))
            else:
                value = type(default)(text)
        except ValueError as e:
            raise BadInput(f"--set {pair!r}: {e}") from None
        settings[key] = value
    return settings


def image_shape_of(custom_config: Mapping[str, Any]) -> Sequence[int]:
    """The only key the preprocessing_fn needs, read without building the whole config."""
    return [int(v) for v in custom_config["image_shape"]]
