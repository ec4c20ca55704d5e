"""The Trainer's record (history.json in its model_run): the one type its readers import.

trainer/train.py and trainer/transfer.py write it after fitting; components/trainer.py adds
the skip-if-unchanged decision (or writes it alone when it hands on the served model); the run
summary and the report read it with `TrainingRecord.read`.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

import pydantic

from schema.records import Record
from trainer.backbones.provenance import WeightsSource

# Next to the TensorBoard logs in the Trainer's model_run artifact.
HISTORY_FILE = "history.json"


@dataclasses.dataclass(frozen=True)
class SkipDecision:
    """components/trainer.py's --skip-if-unchanged decision: hand on the served model or train."""

    skip: bool
    why: str
    version: int | None = None  # the served version compared with (and handed on)
    origin: Annotated[str | None, pydantic.Field(alias="from")] = None  # its folder

    def artifact_properties(self) -> dict[str, int]:
        """What ML Metadata queries can filter on, set on the Trainer's model: whether the
        served model was handed on, and which version (when it was).
        """
        properties = {"skip_if_unchanged": int(self.skip)}
        if self.skip and self.version is not None:
            properties["handed_on_version"] = self.version
        return properties


@dataclasses.dataclass(frozen=True)
class WarmStart:
    """trainer/warm_start.py's record: whether the served model's weights were loaded."""

    used: bool
    why: str | None = None  # why not, when not
    version: int | None = None
    origin: Annotated[str | None, pydantic.Field(alias="from")] = None


@dataclasses.dataclass(frozen=True)
class TrainingInput:
    """How the examples were held (trainer/data.py InputPlan; transfer: extracted features)."""

    mode: str  # "memory", "stream" or "features"
    reason: str
    dtype: str | None = None
    needed_bytes: int | None = None
    budget_bytes: int | None = None
    shuffle_buffer: int | None = None


@dataclasses.dataclass(frozen=True)
class TransferRecord:
    """The transfer recipe's phases (trainer/transfer.py)."""

    # The network and its weights (the model's assets.extra/backbone.json holds the same).
    backbone: WeightsSource
    fine_tuned_blocks: int = 0
    feature_seconds: float | None = None
    feature_images_per_second: float | None = None
    head_epochs_run: int = 0
    head_seconds: float | None = None
    head_only_eval_accuracy: float | None = None
    fine_tune_epochs_run: int = 0
    fine_tune_seconds: float | None = None
    eval_views: int | None = None


@dataclasses.dataclass(frozen=True)
class MemberRecord:
    """One network of an ensemble (model.members > 1, trainer/ensemble.py)."""

    seed: int
    epochs_run: int
    fit_seconds: float
    final_eval_accuracy: float  # its own logits, without test-time augmentation


@dataclasses.dataclass(frozen=True)
class TrainingRecord(Record):
    FILE = HISTORY_FILE

    # TrainerConfig.to_dict() (nested; flat in records written before the config had parts):
    # readers take only the recipe from it (`recipe`), or parse it with TrainerConfig.from_dict.
    config: dict[str, Any]
    history: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    num_train: int | None = None
    num_eval: int | None = None
    steps_per_epoch: int | None = None
    replicas: int | None = None
    input: TrainingInput | None = None
    warm_start: WarmStart | None = None  # None: not asked to warm-start
    decode_seconds: float | None = None
    fit_seconds: float | None = None
    train_images_per_second: float | None = None
    # The last accuracy on the eval split (early stopping's), without test-time augmentation.
    final_eval_accuracy: float | None = None
    # Trained on train + eval (data.refit): num_train counts both, and final_eval_accuracy is
    # on images the model trained on.
    refit: bool = False
    # An ensemble's networks (empty for one network): `history` is the first one's, and
    # fit_seconds and train_images_per_second count them all.
    members: tuple[MemberRecord, ...] = ()
    transfer: TransferRecord | None = None  # None: a scratch recipe
    skip_if_unchanged: SkipDecision | None = None  # None: not asked

    @property
    def epochs_run(self) -> int:
        """Epochs per network (the first network's, in an ensemble)."""
        return len(self.history.get("loss", []))

    def recipe(self) -> tuple[str | None, str | None]:
        """The recipe and why it was chosen: the only config fields readers take."""
        return self.config.get("recipe"), self.config.get("recipe_reason")
