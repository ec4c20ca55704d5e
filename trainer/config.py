"""Training/preprocessing settings passed to Transform and Trainer as `custom_config`.

They travel as a JSON dict (custom_config must be JSON for Kubeflow; the Kubeflow run-time
parameter `trainer-config`; `assets.extra/training_config.json` in every exported model; the
multi-worker processes; the training record), so `TrainerConfig` is the schema of that dict on
both sides. It is made of typed parts, as tf-models' vision configs are, so that each reader
takes what it needs and a setting has one name, its dotted path:

  model         the network: kind, the classic CNN's sizes, the fast net's widths, whitening,
                activation and BatchNorm, the transfer backbone and how much of it trains, and
                how the Transform graph resizes images (resize_mode)
  optimizer     how it learns: optimizer, learning rates and schedule shape, momentum, weight
                decay, Muon, label smoothing, EMA, lookahead, epochs, batch size, early
                stopping, and the transfer head's epochs and rate
  augmentation  train-time flips and translations
  evaluation    test-time augmentation in serving, and how often to validate
  data          the memory for decoded images (cache_budget)
  runtime       precision, tf.distribute strategy, seed, the kind of TF Serving warm-up
  export        the TFLite model written beside the SavedModel, and its int8 calibration
  continuity    how to get there, not what to train: warm start, skip-if-unchanged (left out
                when the skip-if-unchanged decision compares two configs)
  tuning        TFX's Tuner before the Trainer: trials, budget, algorithm (trainer/tuning.py;
                also left out of that comparison)
image_shape, class_names (what the data decides), recipe and recipe_reason stay top level.

`Recipe` is the parts a recipe sets (trainer/recipes.py names them); a TrainerConfig is a
recipe applied to data. Choices are `StrEnum`s, so the JSON holds the same strings as before.
There is one override path, `override`, taking dotted paths (`optimizer.learning_rate`) or a
setting's flat name (`learning_rate`, the name before the parts, derived from the parts' field
names): the CLI's flags, `--set`, from_recipe and from_dict all go through it. `to_dict()` is
nested; `from_dict()` reads the nested form and the flat one of models trained before.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import typing
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TypeVar

from schema.errors import BadInput
from trainer.memory import DEFAULT_CACHE_BUDGET, check_budget

# In every exported model: the config it was trained with (TF Serving ignores assets.extra/
# apart from its warm-up file). --skip-if-unchanged compares it with the next run's.
TRAINING_CONFIG_FILE = "assets.extra/training_config.json"
# The scratch recipes' input normalization: each channel standardized with the data's statistics.
STANDARDIZE = "standardize"


class ModelKind(enum.StrEnum):
    # The blog-tutorial CNN (Conv/BN/pool/dropout + dense head).
    CLASSIC = "classic"
    # A 3-block conv net in the style of fast CIFAR-10 training research.
    FAST = "fast"
    # A pretrained backbone (trainer/backbones/), a new linear head (trainer/transfer.py).
    TRANSFER = "transfer"


class ResizeMode(enum.StrEnum):
    """How the Transform graph gives every image the model's size."""

    # Resizes to it (the scratch recipes, whose data ingest made one size).
    STRETCH = "stretch"
    # Keeps the aspect ratio and cuts the centre.
    CROP = "crop"
    # Keeps the aspect ratio and pads with black.
    PAD = "pad"


class OptimizerKind(enum.StrEnum):
    ADAM = "adam"
    SGD = "sgd"
    # Conv kernels take orthogonalized momentum steps (trainer/muon.py), the rest SGD.
    MUON = "muon"


class Schedule(enum.StrEnum):
    CONSTANT = "constant"
    ONECYCLE = "onecycle"


class Precision(enum.StrEnum):
    # bfloat16 compute where the CPU (AVX512-BF16/AMX) or GPU (compute 8.0+) has it.
    AUTO = "auto"
    FLOAT32 = "float32"
    BFLOAT16 = "bfloat16"


class Activation(enum.StrEnum):
    RELU = "relu"
    GELU = "gelu"


class Distribution(enum.StrEnum):
    """tf.distribute strategies."""

    # The default device.
    NONE = "none"
    # All local GPUs, or the logical CPU devices.
    MIRRORED = "mirrored"
    # MultiWorkerMirroredStrategy, workers from TF_CONFIG.
    MULTI_WORKER = "multi_worker"


class TfliteMode(enum.StrEnum):
    """The TFLite model the Trainer writes beside the SavedModel (trainer/tflite.py)."""

    NONE = "none"
    FLOAT32 = "float32"
    # Weights stored as float16, computed in float32.
    FLOAT16 = "float16"
    # Weights int8, activations float (quantized on the fly): no calibration.
    DYNAMIC = "dynamic"
    # Full integer: weights and activations int8, calibrated on a sample of train images.
    INT8 = "int8"


class TuneAlgorithm(enum.StrEnum):
    """KerasTuner's search (trainer/tuning.py)."""

    # Each trial draws its settings at random from the recipe's space.
    RANDOM = "random"
    # Successive halving: many short trials, the best continued for more epochs.
    HYPERBAND = "hyperband"


class Warmup(enum.StrEnum):
    """What the TF Serving warm-up requests in each pushed model hold."""

    # The first eval images.
    REAL = "real"
    # Generated noise images of the model's shape, for data that must not leave training.
    SYNTHETIC = "synthetic"


def _flat(name: str) -> dict[str, str]:
    """Field metadata: the setting's name in the flat config of before the parts."""
    return {"flat": name}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    kind: ModelKind = dataclasses.field(default=ModelKind.CLASSIC, metadata=_flat("model"))
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
    activation: Activation = Activation.RELU
    # BatchNorm of the fast model: False drops the learned scale (the next BatchNorm undoes it).
    bn_scale: bool = True
    bn_momentum: float = 0.9
    # Start each conv as the identity on its first input channels (Dirac init).
    dirac_init: bool = False
    # Logits are multiplied by this: small values keep early softmax outputs soft.
    logit_scale: float = 1.0
    # Scratch models: train this many networks (seeds seed, seed+1, ...) one after the other and
    # export their averaged logits as one model: members times the fit for a steadier, more
    # accurate model (trainer/ensemble.py).
    members: int = 1
    # transfer model: the backbone (trainer/backbones/registry.py) and its weights: "imagenet",
    # "none" (random) or a file; the last fine_tune_blocks blocks train with the head (see
    # OptimizerConfig's head_epochs), BatchNorm statistics frozen.
    backbone: str = ""
    backbone_weights: str = "imagenet"
    fine_tune_blocks: int = 2
    resize_mode: ResizeMode = ResizeMode.STRETCH


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    kind: OptimizerKind = dataclasses.field(default=OptimizerKind.ADAM,
                                            metadata=_flat("optimizer"))
    epochs: int = 30
    # With `runtime.distribution`, the global batch.
    batch_size: int = 64
    learning_rate: float = 2e-3
    lr_schedule: Schedule = Schedule.CONSTANT
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
    # 0 turns early stopping off (fixed-length schedules such as onecycle).
    early_stopping_patience: int = 8
    # transfer model: the head trains first on the frozen network's features (head_epochs at
    # head_learning_rate); then the top blocks train with it for `epochs` at `learning_rate`.
    head_epochs: int = 40
    head_learning_rate: float = 1e-3


@dataclasses.dataclass(frozen=True)
class AugmentationConfig:
    flip: bool = dataclasses.field(default=False, metadata=_flat("augment_flip"))
    # Flip a fixed half of the images on even epochs and the other half on odd ones.
    alternate_flip: bool = False
    # Max random shift, as a fraction of the image size.
    translate: float = dataclasses.field(default=0.1, metadata=_flat("augment_translate"))
    # Random erasing (Zhong et al. 2017): the share of training images in which a random
    # rectangle (2-33 % of the image) is set to the mean pixel. Scratch recipes only.
    erase: float = 0.0


@dataclasses.dataclass(frozen=True)
class EvaluationConfig:
    # Serving averages the prediction of the image and its mirror image...
    tta_flip: bool = False
    # ...and, when > 0, of the image shifted by this many pixels up-left and down-right.
    tta_translate: int = 0
    # Validate every N epochs (and always after the last).
    validation_freq: int = 1


@dataclasses.dataclass(frozen=True)
class DataConfig:
    # Memory for decoded images (trainer/memory.py): a size, or a share of the memory available
    # when training starts. Past it the Trainer streams instead of caching.
    cache_budget: str = DEFAULT_CACHE_BUDGET
    # Train the final model on train + eval with the chosen schedule (as airbench and most
    # papers do), once the recipe was chosen on eval. Only for fixed schedules: eval cannot
    # both train the model and decide when it stops or which weights it keeps.
    refit: bool = False


@dataclasses.dataclass(frozen=True)
class RuntimeConfig:
    precision: Precision = Precision.AUTO
    distribution: Distribution = Distribution.NONE
    seed: int = 42
    warmup: Warmup = Warmup.REAL


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    # The TFLite model written beside the SavedModel, scored and pushed with it when it is
    # within thresholds.max_tflite_drop of the SavedModel's accuracy (docs/tflite.md).
    tflite: TfliteMode = TfliteMode.DYNAMIC
    # int8: the train images its activation ranges are calibrated on (a seeded sample).
    calibration_images: int = 500


@dataclasses.dataclass(frozen=True)
class ContinuityConfig:
    # Warm start (trainer/warm_start.py): the push base (<serving-dir>/<model-name>) whose
    # newest version's weights the model starts from, when class map and architecture match;
    # it then trains this share of `optimizer.epochs` (at least one). "" trains from scratch.
    warm_start_from: str = ""
    warm_start_epochs: float = 0.4
    # Hand on the served model instead of training when the data gate found the data unchanged
    # and this config equals the served model's (components/trainer.py).
    skip_if_unchanged: bool = False


@dataclasses.dataclass(frozen=True)
class TuningConfig:
    # TFX's Tuner before the Trainer (trainer/tuning.py), off when both are 0: at most `trials`
    # trials, each trained on `train` and scored on `eval`; `budget_minutes` stops the search
    # before a trial that would overrun it. The best trial's settings reach the Trainer.
    trials: int = dataclasses.field(default=0, metadata=_flat("tune_trials"))
    budget_minutes: float = dataclasses.field(default=0.0, metadata=_flat("tune_budget_minutes"))
    algorithm: TuneAlgorithm = dataclasses.field(default=TuneAlgorithm.RANDOM,
                                                 metadata=_flat("tune_algorithm"))

    @property
    def enabled(self) -> bool:
        return self.trials > 0 or self.budget_minutes > 0


@dataclasses.dataclass(frozen=True, kw_only=True)
class Recipe:
    """The parts a recipe sets: everything but the data's shape and classes and continuity."""

    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    augmentation: AugmentationConfig = dataclasses.field(default_factory=AugmentationConfig)
    evaluation: EvaluationConfig = dataclasses.field(default_factory=EvaluationConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)
    export: ExportConfig = dataclasses.field(default_factory=ExportConfig)

    def __post_init__(self) -> None:
        for part in _parts(type(self)):
            object.__setattr__(self, part, _typed(getattr(self, part), part + "."))

    def override(self: _R, changes: Mapping[str, Any]) -> _R:
        """This config with `changes` applied: the one override path.

        Keys are dotted paths (`optimizer.learning_rate`) or flat names (`learning_rate`);
        values are typed (`parse_settings` reads text). The result is checked as a whole.
        """
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return type(self)(**_changed(values, changes))

    def settings(self) -> dict[str, Any]:
        """Every setting by its dotted path, as JSON values."""
        return dict(_dotted(self.to_dict()))

    def to_dict(self) -> dict[str, Any]:
        """The nested JSON form: tuples as lists, choices as their strings."""
        data = json.loads(json.dumps(dataclasses.asdict(self)))
        # The top-level settings first, then the parts, for a reader of training_config.json.
        return dict(sorted(data.items(), key=lambda item: isinstance(item[1], dict)))


_R = TypeVar("_R", bound=Recipe)


@dataclasses.dataclass(frozen=True)
class TrainerConfig(Recipe):
    """A recipe applied to data: the image shape and classes, and how the run gets there."""

    image_shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    continuity: ContinuityConfig = dataclasses.field(default_factory=ContinuityConfig)
    # Whether TFX's Tuner searches the recipe's space first (how the run gets there, too).
    tuning: TuningConfig = dataclasses.field(default_factory=TuningConfig)
    # Which recipe these settings started from, and why it was chosen (for the report).
    recipe: str = "custom"
    recipe_reason: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "image_shape", tuple(int(v) for v in self.image_shape))
        object.__setattr__(self, "class_names", tuple(str(v) for v in self.class_names))
        _check(self)

    @property
    def uses_whitening(self) -> bool:
        return self.model.kind == ModelKind.FAST and self.model.whiten

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainerConfig:
        """The config of a JSON dict: nested (to_dict) or flat (models trained before the
        parts; saved Kubeflow parameters). Unset settings take their defaults.
        """
        changes = settings_of(data)
        missing = [key for key in ("image_shape", "class_names") if key not in data]
        if missing:
            raise BadInput(f"the trainer config has no {' or '.join(missing)}")
        defaults = {f.name: f.default_factory() if callable(f.default_factory) else f.default
                    for f in dataclasses.fields(cls)}
        return cls(**_changed(defaults, changes))

    def preprocessing_config(self) -> dict[str, Any]:
        """The subset Transform's preprocessing_fn reads."""
        return {"image_shape": list(self.image_shape), "resize_mode": str(self.model.resize_mode),
                "normalization": self.normalization}

    @property
    def normalization(self) -> str:
        """"standardize" (per-channel statistics of the data) or the backbone's fixed one."""
        if not self.model.backbone:
            return STANDARDIZE
        from trainer.backbones.registry import get

        return get(self.model.backbone).normalization


@functools.cache
def _parts(cls: type) -> tuple[str, ...]:
    """The fields of `cls` that are parts (dataclasses), by name."""
    return tuple(f.name for f in dataclasses.fields(cls)
                 if dataclasses.is_dataclass(_hints(cls)[f.name]))


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """The resolved field types of a dataclass (its annotations are strings here)."""
    return typing.get_type_hints(cls)


def _typed(part: Any, prefix: str) -> Any:
    """The part with each choice as its enum and each tuple as a tuple; BadInput naming the
    setting's dotted path and the allowed values for a choice that is none of them.
    """
    changes = {}
    for name, kind in _hints(type(part)).items():
        value = getattr(part, name)
        if isinstance(kind, type) and issubclass(kind, enum.Enum) and not isinstance(value, kind):
            try:
                changes[name] = kind(value)
            except ValueError:
                raise BadInput(f"{prefix}{name} must be one of {[m.value for m in kind]}, "
                               f"got {value!r}") from None
        elif typing.get_origin(kind) is tuple and not isinstance(value, tuple):
            changes[name] = tuple(value)
    return dataclasses.replace(part, **changes) if changes else part


def _setting_paths() -> dict[str, str]:
    """Flat name -> dotted path, from the parts' fields (a field's `flat` metadata, else its
    name); the top-level settings map to themselves.
    """
    paths: dict[str, str] = {}
    hints = _hints(TrainerConfig)
    for field in dataclasses.fields(TrainerConfig):
        if field.name not in _parts(TrainerConfig):
            paths[field.name] = field.name
            continue
        for sub in dataclasses.fields(hints[field.name]):
            flat = sub.metadata.get("flat", sub.name)
            if flat in paths:
                raise TypeError(f"two settings have the flat name {flat!r}")
            paths[flat] = f"{field.name}.{sub.name}"
    return paths


# Today's flat names (`--set widths=16,32,64`, the flat training_config.json) -> dotted paths.
FLAT_NAMES: dict[str, str] = _setting_paths()
SETTINGS: frozenset[str] = frozenset(FLAT_NAMES.values())
# Dotted path -> its flat name, for front ends that still spell settings flat (`--set`).
FLAT_NAME_OF: dict[str, str] = {path: flat for flat, path in FLAT_NAMES.items()}


def setting_path(key: str) -> str:
    """A setting's dotted path, from the path itself or its flat name."""
    key = key.strip().replace("-", "_")
    path = FLAT_NAMES.get(key, key)
    if path not in SETTINGS:
        raise BadInput(f"unknown training setting {key!r}; the settings are "
                       f"{sorted(SETTINGS)}, each also by its name before the parts "
                       "(widths for model.widths)")
    return path


def settings_of(data: Mapping[str, Any]) -> dict[str, Any]:
    """Each entry of a config's JSON, nested or flat, by dotted path; unchecked (unknown keys
    kept as they are), for readers of recorded configs that must not fail on one.
    """
    settings: dict[str, Any] = {}
    for key, value in data.items():
        if key in _parts(TrainerConfig) and isinstance(value, Mapping):
            settings.update({f"{key}.{name}": v for name, v in value.items()})
        else:
            settings[FLAT_NAMES.get(key, key)] = value
    return settings


def _changed(values: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """`values` (a config's fields) with each change applied at its dotted path."""
    values = dict(values)
    grouped: dict[str, dict[str, Any]] = {}
    for key, value in changes.items():
        path = setting_path(key)
        part, _, name = path.partition(".")
        if part not in values:
            raise BadInput(f"{path} is not a setting a recipe holds")
        if name:
            grouped.setdefault(part, {})[name] = value
        else:
            values[part] = value
    for part, fields in grouped.items():
        values[part] = dataclasses.replace(values[part], **fields)
    return values


def _dotted(data: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in data.items():
        if isinstance(value, Mapping):
            yield from _dotted(value, f"{prefix}{key}.")
        else:
            yield prefix + key, value


# model.members at most: each member is a whole fit, one after the other.
MAX_MEMBERS = 8


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise BadInput(message)


def _check(config: TrainerConfig) -> None:
    """The rules each setting, and settings together, must keep; messages name dotted paths."""
    shape, model, opt = config.image_shape, config.model, config.optimizer
    _need(len(shape) == 3 and min(shape) >= 1,
          f"image_shape must be (height, width, channels), got {shape}")
    _need(shape[2] in (1, 3, 4), f"channels must be 1, 3 or 4, got {shape[2]}")
    _need(len(config.class_names) >= 2, f"need at least 2 classes, got {list(config.class_names)}")
    _need(opt.epochs >= 0, f"optimizer.epochs must be >= 0, got {opt.epochs}")
    _need(opt.batch_size >= 1, f"optimizer.batch_size must be >= 1, got {opt.batch_size}")
    translate = config.augmentation.translate
    _need(0 <= translate < 0.5, f"augmentation.translate must be in [0, 0.5), got {translate}")
    erase = config.augmentation.erase
    _need(0 <= erase <= 1, f"augmentation.erase must be in [0, 1], got {erase}")
    _need(not (erase and model.kind == ModelKind.TRANSFER),
          "augmentation.erase: the transfer recipe trains on features computed once per image, "
          "so it cannot erase parts of them; leave it at 0 there")
    _need(0 <= opt.label_smoothing < 1,
          f"optimizer.label_smoothing must be in [0, 1), got {opt.label_smoothing}")
    _need(0 <= opt.ema_momentum < 1,
          f"optimizer.ema_momentum must be in [0, 1), got {opt.ema_momentum}")
    _need(0 <= opt.warmup_fraction < 1,
          f"optimizer.warmup_fraction must be in [0, 1), got {opt.warmup_fraction}")
    _need(0 <= opt.initial_lr_fraction <= 1 and 0 <= opt.final_lr_fraction <= 1,
          "optimizer.initial_lr_fraction and optimizer.final_lr_fraction must be in [0, 1]")
    _need(0 <= model.bn_momentum < 1,
          f"model.bn_momentum must be in [0, 1), got {model.bn_momentum}")
    _need(0 < opt.muon_learning_rate < 1 and 0 <= opt.muon_momentum < 1,
          "optimizer.muon_learning_rate must be in (0, 1), optimizer.muon_momentum in [0, 1)")
    _need(opt.bias_lr_multiplier > 0 and model.logit_scale > 0,
          "optimizer.bias_lr_multiplier and model.logit_scale must be > 0")
    tta = config.evaluation.tta_translate
    _need(0 <= tta < min(shape[:2]) // 2,
          f"evaluation.tta_translate must be in [0, side/2), got {tta}")
    _need(1 <= model.members <= MAX_MEMBERS,
          f"model.members must be in [1, {MAX_MEMBERS}], got {model.members}")
    _need(model.members == 1 or model.kind != ModelKind.TRANSFER,
          "model.members: the transfer recipe trains one head on one pretrained network; "
          "ensembles are for the scratch recipes (classic, fast, fast-wide, fast-muon, "
          "fast-gray), so leave it at 1 there")
    _need(model.whiten_stride in (1, 2),
          f"model.whiten_stride must be 1 or 2, got {model.whiten_stride}")
    check_budget(config.data.cache_budget)
    epochs = config.continuity.warm_start_epochs
    _need(0 < epochs <= 1, f"continuity.warm_start_epochs must be in (0, 1], got {epochs}")
    _need(bool(model.widths) and min(model.widths) >= 1,
          f"model.widths must be positive channel counts, got {model.widths}")
    _need((model.kind == ModelKind.TRANSFER) == bool(model.backbone),
          "model.kind 'transfer' takes a model.backbone, and only it does: got model.kind="
          f"{str(model.kind)!r}, model.backbone={model.backbone!r}")
    _need(not (model.backbone and config.runtime.distribution == Distribution.MULTI_WORKER),
          "the transfer recipe trains on features computed once per image in one process: "
          "runtime.distribution must be none or mirrored")
    if model.backbone:
        from trainer.backbones.registry import get

        get(model.backbone)  # BackboneError (a BadInput) listing the names
        _need(shape[2] == 3, f"a backbone takes RGB images; image_shape {shape}")
    refusal = refit_refusal(config) if config.data.refit else None
    _need(refusal is None, f"data.refit: {refusal}")
    tuning = config.tuning
    _need(tuning.trials >= 0 and tuning.budget_minutes >= 0,
          f"tuning.trials and tuning.budget_minutes must be >= 0, got {tuning.trials} and "
          f"{tuning.budget_minutes:g}")
    _need(config.export.calibration_images >= 1,
          f"export.calibration_images must be >= 1, got {config.export.calibration_images}")
    _need(model.fine_tune_blocks >= 0 and opt.head_epochs >= 0 and opt.head_learning_rate > 0,
          "model.fine_tune_blocks and optimizer.head_epochs must be >= 0, "
          "optimizer.head_learning_rate > 0")


# Settings the data decides (or the run records), not a --set.
_NOT_SETTABLE = frozenset({"image_shape", "class_names", "recipe", "recipe_reason",
                           "continuity.warm_start_from"})


def parse_settings(pairs: Sequence[str]) -> dict[str, Any]:
    """KEY=VALUE strings (`run --set`) as typed settings by dotted path.

    KEY is a dotted path (optimizer.learning_rate) or a flat name (learning_rate). The type is
    the setting's: numbers, true/false, text, comma-separated ints for tuples (widths=16,32,64).
    """
    settings: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep:
            raise BadInput(f"{pair!r}: expected KEY=VALUE, KEY a training setting")
        try:
            path = setting_path(key)
        except BadInput as e:
            raise BadInput(f"{pair!r}: {e}") from None
        if path in _NOT_SETTABLE:
            raise BadInput(f"{pair!r}: {path} is decided by the data or the run, not set")
        settings[path] = _parse(pair, _setting_type(path), text)
    return settings


def _setting_type(path: str) -> Any:
    part, _, name = path.partition(".")
    return _hints(_hints(TrainerConfig)[part])[name]


def _parse(pair: str, kind: Any, text: str) -> Any:
    try:
        if kind is bool:
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError("expected true or false")
            return text.lower() in ("true", "1")
        if typing.get_origin(kind) is tuple:
            return tuple(int(v) for v in text.split(","))
        if kind in (int, float):
            return kind(text)
        return text  # text, or a choice that the config checks, naming the allowed values
    except ValueError as e:
        raise BadInput(f"{pair!r}: {e}") from None


def image_shape_of(custom_config: Mapping[str, Any]) -> Sequence[int]:
    """The only key the preprocessing_fn needs, read without building the whole config."""
    return [int(v) for v in custom_config["image_shape"]]


def refit_refusal(config: TrainerConfig) -> str | None:
    """Why this config cannot train on train + eval (data.refit), or None when it can: the
    eval split must not be choosing anything.
    """
    if config.model.kind == ModelKind.TRANSFER:
        return ("the transfer recipe keeps the weights of its best epoch on the eval split, so "
                "eval cannot also train it; refit only fixed-schedule recipes (fast, fast-wide, "
                "fast-muon, fast-gray)")
    patience = config.optimizer.early_stopping_patience
    if patience > 0:
        return (f"early stopping watches the eval split (optimizer.early_stopping_patience="
                f"{patience}), so eval cannot also train the model; refit a fixed-schedule "
                "recipe, or set early_stopping_patience=0 with the epochs to train")
    return None
