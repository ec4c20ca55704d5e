"""Training/preprocessing settings passed to Transform and Trainer as `custom_config`.

They travel as a JSON dict (custom_config must be JSON for Kubeflow), so this dataclass is the
schema of that dict on both sides.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
    image_shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 2e-3
    base_filters: int = 32
    dense_units: int = 128
    dropout: float = 0.25
    augment_flip: bool = False
    augment_translate: float = 0.1
    early_stopping_patience: int = 8
    seed: int = 42

    def __post_init__(self) -> None:
        if len(self.image_shape) != 3 or min(self.image_shape) < 1:
            raise ValueError(
                f"image_shape must be (height, width, channels), got {self.image_shape}"
            )
        if self.image_shape[2] not in (1, 3, 4):
            raise ValueError(f"channels must be 1, 3 or 4, got {self.image_shape[2]}")
        if len(self.class_names) < 2:
            raise ValueError(f"need at least 2 classes, got {list(self.class_names)}")
        if self.epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0 <= self.augment_translate < 0.5:
            raise ValueError(f"augment_translate must be in [0, 0.5), got {self.augment_translate}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["image_shape"] = list(self.image_shape)
        data["class_names"] = list(self.class_names)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainerConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown trainer config keys: {unknown}; known: {sorted(known)}")
        values = dict(data)
        values["image_shape"] = tuple(int(v) for v in values["image_shape"])
        values["class_names"] = tuple(str(v) for v in values["class_names"])
        return cls(**values)

    def preprocessing_config(self) -> dict[str, Any]:
        """The subset Transform's preprocessing_fn reads."""
        return {"image_shape": list(self.image_shape)}

    def replace(self, **changes: Any) -> TrainerConfig:
        return dataclasses.replace(self, **changes)


def image_shape_of(custom_config: Mapping[str, Any]) -> Sequence[int]:
    """The only key the preprocessing_fn needs, read without building the whole config."""
    return [int(v) for v in custom_config["image_shape"]]
