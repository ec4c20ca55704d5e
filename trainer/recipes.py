"""Named training recipes (typed `Recipe`s), and how `--recipe auto` chooses one.

Each recipe sets the parts it needs; every setting can still be overridden (from_recipe, and
the CLI's flags and `--set` through TrainerConfig.override).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from schema.errors import BadInput
from trainer.config import (
    Activation,
    AugmentationConfig,
    EvaluationConfig,
    ModelConfig,
    ModelKind,
    OptimizerConfig,
    OptimizerKind,
    Precision,
    Recipe,
    ResizeMode,
    RuntimeConfig,
    Schedule,
    TrainerConfig,
)

if TYPE_CHECKING:
    from trainer.fit_estimate import FitEstimate
    from trainer.host_speed import HostRate

# Named starting points. "classic" is the tutorial CNN with Adam and early stopping. "fast"
# follows fast CIFAR-10 training research (Page's ResNet-9 work, Jordan's airbench): frozen
# patch whitening, a 3-block BN/GELU conv net with identity-initialized convs and scale-free
# BatchNorm, label smoothing, flip+translate augmentation, flip+translate test-time
# augmentation, bfloat16, trained as airbench94 does: SGD+Nesterov with L2 and fast BatchNorm
# shifts on a one-cycle schedule, lookahead averaging. On the shared CIFAR-10 JPEGs it matches
# airbench94 itself trained on the same splits; 10 epochs rather than 8 for the accuracy the
# last two add (docs/cifar10-accuracy.md).
_FAST_SGD = Recipe(
    model=ModelConfig(
        kind=ModelKind.FAST,
        widths=(64, 256, 256),
        whiten=True,
        activation=Activation.GELU,
        bn_scale=False,
        bn_momentum=0.6,
        dirac_init=True,
        logit_scale=1 / 9,
    ),
    optimizer=OptimizerConfig(
        kind=OptimizerKind.SGD,
        epochs=10,
        batch_size=1024,
        learning_rate=1.5,
        lr_schedule=Schedule.ONECYCLE,
        warmup_fraction=0.23,
        initial_lr_fraction=0.2,
        final_lr_fraction=0.07,
        momentum=0.85,
        weight_decay=1.33e-3,
        bias_lr_multiplier=64.0,
        label_smoothing=0.2,
        lookahead=True,
        early_stopping_patience=0,
    ),
    augmentation=AugmentationConfig(flip=True, alternate_flip=True, translate=0.0625),
    evaluation=EvaluationConfig(tta_flip=True, tta_translate=1, validation_freq=4),
)
# "fast-muon" trains the conv kernels with Muon (trainer/muon.py), as airbench94_muon does: batch
# 2000, a linear decay from the first step, no lookahead; the SGD parts keep their rates and get
# that script's per-step weight decay. On the CIFAR-10 eval split, 8 epochs of it match 10 of
# "fast" in less fit time; 10 epochs gave no clear gain for the extra time
# (docs/cifar10-accuracy.md; bench/results/recipe-fast-10ep.json, recipe-muon-*ep.json).
# Not the default: through the pipeline the time gain vanished and test accuracy was no better
# than fast's (bench/results/cifar10-fast-muon.json against cifar10.json).
_FAST_MUON = _FAST_SGD.override({
    "optimizer.epochs": 8,
    "optimizer.batch_size": 2000,
    "optimizer.kind": OptimizerKind.MUON,
    "optimizer.muon_learning_rate": 0.24,
    "optimizer.muon_momentum": 0.6,
    "optimizer.warmup_fraction": 0.0,
    "optimizer.initial_lr_fraction": 1.0,
    "optimizer.final_lr_fraction": 0.0,
    "optimizer.weight_decay": 2.67e-3,
    "optimizer.lookahead": False,
})
# "fast-wide" is fast-muon with 1.25x the channels (80/320/320: 1.53x the multiply-adds) for 10
# epochs. On the CIFAR-10 eval split it beats fast, with and without TTA, for a fit time that is
# affordable only in bfloat16 (bench/results/recipe-muon-w80-320-320-10ep-bf16.json). --recipe
# auto considers it only where the Trainer computes in bfloat16 (in float32, on CPUs without
# bfloat16 support, it would take several times as long), and takes it when its estimated fit on
# this host is within the time budget (choose_recipe).
_FAST_WIDE = _FAST_MUON.override({"optimizer.epochs": 10, "model.widths": (80, 320, 320)})
# Small grayscale images (MNIST, Fashion-MNIST): the fast recipe's optimizer and three blocks of
# 24/48/96 channels at full resolution, on 512-image batches, for 10 epochs, with translations
# only. No flips: digits and letters are not mirror-symmetric, and on Fashion-MNIST's eval split
# flips gained nothing. Chosen on the eval splits with bench/recipe.py
# (bench/results/recipe-fashion-*.json): on Fashion-MNIST the faster stride-2 whitening (14x14x8,
# 48/96 channels) plateaus lower, even with twice the epochs, and narrower blocks, two blocks,
# ReLU or fewer epochs all fall short of this recipe. On MNIST both reach the same accuracy, so
# the stride-2 layer stays an option (model.whiten_stride=2) for digit-like data. Chosen on the
# eval split of Fashion-MNIST's official split (bench/results/recipe-fashion-official-*.json):
# one network scored best with 10 epochs (5, 8 and 15 lower; 32/64/128 channels added nothing for
# 1.5x the fit time), and the mean of two networks (trainer/ensemble.py) beat it for 1.6x the
# fit with 8 epochs each (6 fell short, 10 added nothing).
# It computes in float32 even where the CPU has bfloat16: there bfloat16 was barely faster for
# this small network (bench/results/recipe-mnist-fast-gray-*-bf16host.json), and MNIST pipeline
# runs in bfloat16 could collapse for their first epochs at the peak learning rate and end below
# float32's test accuracy (bench/results/seeds-bf16.json). A float32 run there dipped for one
# epoch and recovered: the peak rate is near the edge, and bfloat16's rounding tips it over.
_FAST_GRAY = _FAST_SGD.override({
    "runtime.precision": Precision.FLOAT32,
    "model.members": 2,
    "optimizer.epochs": 8,
    "optimizer.batch_size": 512,
    "model.whiten_stride": 1,
    "model.widths": (24, 48, 96),
    "augmentation.flip": False,
    "augmentation.alternate_flip": False,
    "evaluation.tta_flip": False,
    "augmentation.translate": 0.075,
    "evaluation.validation_freq": 5,
})
# Photos: EfficientNet-Lite0 pretrained on ImageNet (trainer/transfer.py). The head trains on
# the frozen network's features, then the last four blocks with it. Chosen by cross-validation
# inside the training images (never test) on the two photo sets: centre crops beat padding on
# hymenoptera; on sign-digits the last 4 blocks at 3e-4 beat the last 2 (at 1e-4 or 1e-3), 1e-3
# made the last 4 unstable, and the last 6 added little for much more fit time. float32: for
# this depthwise network bfloat16 was slower, even on CPUs with bfloat16 support.
_TRANSFER = Recipe(
    model=ModelConfig(
        kind=ModelKind.TRANSFER,
        backbone="efficientnet_lite0",
        backbone_weights="imagenet",
        resize_mode=ResizeMode.CROP,
        fine_tune_blocks=4,
        dropout=0.2,
    ),
    optimizer=OptimizerConfig(
        head_epochs=40,
        head_learning_rate=1e-3,
        epochs=8,
        learning_rate=3e-4,
        batch_size=32,
        label_smoothing=0.1,
        early_stopping_patience=3,
    ),
    augmentation=AugmentationConfig(flip=True, translate=0.0),
    evaluation=EvaluationConfig(tta_flip=False),
    runtime=RuntimeConfig(precision=Precision.FLOAT32),
)
RECIPES: dict[str, Recipe] = {
    "classic": Recipe(),
    "fast": _FAST_SGD,
    "fast-muon": _FAST_MUON,
    "fast-wide": _FAST_WIDE,
    "fast-gray": _FAST_GRAY,
    "transfer": _TRANSFER,
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


# The Trainer's time `--recipe auto` aims for: 20 minutes (issue 11's target for CIFAR-10).
DEFAULT_TIME_BUDGET_MINUTES = 20.0
# Small colour images, most accurate first: fast-wide only where the Trainer computes in
# bfloat16 (in float32 it would take several times as long).
_COLOUR_CANDIDATES = ("fast-wide", "fast")
_DESCRIPTIONS = {
    "fast-wide": "the fast photo recipe (patch whitening, flips), 1.25x wider, trained by Muon",
    "fast": "the fast photo recipe (patch whitening, flips)",
    "fast-gray": "two of the fast network, narrower (24/48/96 channels), averaged; translations "
                 "only",
}


def choose_recipe(image_shape: Sequence[int], num_train: int,
                  bfloat16: bool = False, sizes_vary: bool = False, *,
                  host_rate: Callable[[str], HostRate] | None = None,
                  budget_minutes: float = DEFAULT_TIME_BUDGET_MINUTES,
                  num_classes: int = 10, epochs: int | None = None,
                  fit_images: int | None = None,
                  members: int | None = None) -> tuple[str, str]:
    """(recipe, why) for `--recipe auto`, from the image shape, the training set size,
    whether the Trainer computes in bfloat16, and how fast this host computes.

    Colour images larger than 64 px, of many sizes, or fewer than 5,000 of them get the
    pretrained backbone; grayscale and small images keep the scratch CNNs. Among those, the
    most accurate candidate whose estimated fit (trainer/fit_estimate.py, from `host_rate`:
    dtype -> this host's matrix-product rate) fits `budget_minutes`; the cheapest when none
    does; `epochs` and `members` (model.members), when given, replace each recipe's own in the
    estimate, and `fit_images` the images each epoch trains on (train + eval under data.refit;
    default num_train). Without
    `host_rate` (the machine choosing is not the one that trains) the choice is by precision
    alone: fast-wide in bfloat16, fast in float32.
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
                f"{RECIPES['transfer'].model.backbone} with a new head, its top fine-tuned")
    if num_train < _MIN_FAST_TRAIN_IMAGES:
        return "classic", (f"{num_train:,} training images (< {_MIN_FAST_TRAIN_IMAGES:,}): too "
                           "few for a fixed short schedule; the tutorial CNN with early stopping")
    if channels == 1 and max(height, width) <= _MAX_GRAY_SIDE:
        candidates = ("fast-gray",)
        lead = f"{shape} grayscale images, {num_train:,} training images"
    else:
        candidates = _COLOUR_CANDIDATES if bfloat16 else _COLOUR_CANDIDATES[1:]
        lead = f"{shape} images, {num_train:,} training images"
    if host_rate is None:
        return candidates[0], _by_precision(candidates[0], lead, bfloat16)

    def estimate(recipe: str) -> FitEstimate:
        from trainer.fit_estimate import recipe_fit

        dtype = _compute_dtype(recipe, bfloat16)
        rate = host_rate(dtype)
        return recipe_fit(recipe, image_shape, fit_images or num_train, dtype, rate.rate,
                          rate.source, num_classes, epochs, members)

    return _by_budget(candidates, estimate, budget_minutes, lead)


def _compute_dtype(recipe: str, bfloat16: bool) -> str:
    """The dtype the recipe's training computes in: float32 where the recipe fixes it."""
    fixed = RECIPES[recipe].runtime.precision == Precision.FLOAT32
    return "bfloat16" if bfloat16 and not fixed else "float32"


def _by_precision(recipe: str, lead: str, bfloat16: bool) -> str:
    """Today's rule's reason, saying that the host's speed was not weighed."""
    unknown = ("the training host's speed is unknown here (it is not this machine), so the "
               "choice is by precision alone")
    if recipe == "fast-gray":
        return f"{lead}: {_DESCRIPTIONS[recipe]}"
    if recipe == "fast-wide":
        return f"{lead}, bfloat16 compute: {_DESCRIPTIONS[recipe]}; {unknown}"
    if not bfloat16:
        return f"{lead}: {_DESCRIPTIONS[recipe]}; float32 compute, so not the wider fast-wide"
    return f"{lead}: {_DESCRIPTIONS[recipe]}; {unknown}"


def _by_budget(candidates: Sequence[str], estimate: Callable[[str], FitEstimate],
               budget_minutes: float, lead: str) -> tuple[str, str]:
    """The first (most accurate) candidate whose estimate fits the budget, else the last."""
    budget = f"the {budget_minutes:g}-min budget"
    over, previous_rate = [], ""
    for recipe in candidates:
        fit = estimate(recipe)
        rate = "" if fit.rate_text() == previous_rate else f" ({fit.rate_text()})"
        previous_rate = fit.rate_text()
        if fit.seconds <= budget_minutes * 60:
            said = (f"{recipe}, about {fit.minutes} min{rate}" if over else
                    f"{recipe} would take about {fit.minutes} min here{rate}, within {budget}")
            return recipe, "; ".join([f"{lead}: {_DESCRIPTIONS[recipe]}",
                                      ": ".join([*over, said])])
        over.append(f"{recipe} would take about {fit.minutes} min here{rate}, over {budget}")
    cheapest = candidates[-1]
    more = "even the cheapest candidate; " if len(candidates) > 1 else ""
    return cheapest, (f"{lead}: {_DESCRIPTIONS[cheapest]}; {'; '.join(over)}: {more}kept, as "
                      "nothing cheaper trains these images from scratch (the fit will take "
                      "longer than the budget)")


def fit_batch_size(batch_size: int, smallest_split: int) -> int:
    """The recipe's batch size, halved until one batch fits in the smallest split."""
    while batch_size > 1 and batch_size > smallest_split:
        batch_size //= 2
    return batch_size


def from_recipe(
    recipe: str,
    image_shape: Sequence[int],
    class_names: Sequence[str],
    changes: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> TrainerConfig:
    """The recipe's settings, with every non-None override applied on top: `changes` by
    dotted path or flat name, then `overrides` by flat name (epochs=3, widths=(16, 32)).
    """
    if recipe not in RECIPES:
        raise BadInput(f"unknown recipe {recipe!r}; choose from {sorted(RECIPES)}")
    given = {key: value for key, value in {**(changes or {}), **overrides}.items()
             if value is not None}
    return TrainerConfig.from_dict({
        **RECIPES[recipe].settings(), "image_shape": list(image_shape),
        "class_names": list(class_names), "recipe": recipe, **given})
