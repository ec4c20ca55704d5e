"""What `--skip-if-unchanged` compares: statistics (components/data_gate.py records the
differences) and training configs, and what the Trainer decides from them
(components/trainer.py). The pipeline runs that skip, and that train because the statistics
differ, are in tests/test_spans.py.
"""

from __future__ import annotations

from tensorflow_metadata.proto.v0 import statistics_pb2
from test_trainer_config import FLAT, built_the_new_way

from components.data_gate import statistics_differences, statistics_summary
from components.gate_report import DataComparison, GateReport, StatisticsDifference
from components.trainer import config_change, data_unchanged
from trainer.config import TrainerConfig
from trainer.recipes import from_recipe


def _differences(new, old, split: str) -> list[str]:
    return [d.text() for d in statistics_differences(new, old, split)]


def _dataset(examples: int, mean_bytes: float, counts: dict[str, int]):
    dataset = statistics_pb2.DatasetFeatureStatistics(num_examples=examples)
    image = dataset.features.add()
    image.path.step.append("image")
    image.bytes_stats.avg_num_bytes = mean_bytes
    image.bytes_stats.common_stats.num_non_missing = examples
    label = dataset.features.add()
    label.path.step.append("label")
    for name, count in counts.items():
        label.string_stats.rank_histogram.buckets.add(label=name, sample_count=count)
    return dataset


def test_statistics_are_the_same_only_when_every_summary_value_is() -> None:
    same = statistics_summary(_dataset(30, 466.85, {"0": 15, "1": 15}))
    assert _differences(same, statistics_summary(_dataset(30, 466.85, {"0": 15, "1": 15})),
                        "train") == []
    # New images of the same classes and count: their mean encoded size moves.
    assert _differences(same, statistics_summary(_dataset(30, 470.5, {"0": 15, "1": 15})),
                        "train") == ["train: image mean bytes 466.85 (was 470.5)"]
    moved = _differences(same, statistics_summary(_dataset(30, 466.85, {"0": 16, "1": 14})),
                         "eval")
    assert moved == ["eval: label counts 0 15 (was 16)", "eval: label counts 1 15 (was 14)"]


def test_a_config_change_names_the_settings_and_ignores_how_training_started() -> None:
    served = from_recipe("classic", (8, 8, 1), ["a", "b"], epochs=5, recipe_reason="a")
    started = served.override({"continuity.warm_start_from": "/models/m",
                               "continuity.warm_start_epochs": 0.2,
                               "continuity.skip_if_unchanged": True, "recipe_reason": "b"})
    assert config_change(served.to_dict(), started.to_dict()) is None
    changed = served.override({"epochs": 7, "optimizer.batch_size": 32})
    assert config_change(served.to_dict(), changed.to_dict()) == (
        "optimizer.batch_size 64 -> 32, optimizer.epochs 5 -> 7")
    assert config_change(None, served.to_dict()) == (
        "the served version records no training config")
    unreadable = config_change({**served.to_dict(), "retired_setting": 1}, served.to_dict())
    assert unreadable.startswith("the served version's training config does not read")


def test_a_served_model_s_flat_config_equals_thebuilt_the_new_way() -> None:
    """Models trained before the config had parts hold it flat: the same values, no change."""
    current = built_the_new_way().to_dict()
    assert config_change(FLAT, current) is None
    # ... but a different setting is one, named by its dotted path; continuity is not.
    other = TrainerConfig.from_dict(current).override(
        {"model.widths": (32, 64, 64), "continuity.warm_start_from": ""}).to_dict()
    assert config_change(FLAT, other) == "model.widths [64, 256, 256] -> [32, 64, 64]"


def test_source_paths_do_not_count_as_a_change_of_the_data() -> None:
    """The same images ingested before source paths were kept, or under other file names."""
    old = statistics_summary(_dataset(30, 466.85, {"0": 15, "1": 15}))
    new = _dataset(30, 466.85, {"0": 15, "1": 15})
    paths = new.features.add()
    paths.path.step.append("source_path")
    paths.string_stats.rank_histogram.buckets.add(label="bees/IMG_0042.jpg", sample_count=1)
    assert _differences(statistics_summary(new), old, "train") == []


def _gate(differences: int, splits=("eval", "train"), baseline_splits=("eval", "train")):
    found = tuple(StatisticsDifference("train", f"image mean bytes {n}", n, n + 1)
                  for n in range(differences))
    return GateReport(statistics="/stats", comparison=DataComparison(
        "span 2 with span 1", splits, baseline_splits, found))


def test_the_trainer_decides_unchanged_from_the_differences_the_gate_recorded() -> None:
    assert data_unchanged(None) == (False, "the data gate compared no statistics")
    assert data_unchanged(GateReport(statistics="/stats")) == (
        False, "the data gate compared no statistics")
    assert data_unchanged(_gate(0)) == (True, (
        "span 2 with span 1: the statistics are equal in every split (example counts, image "
        "byte sizes, class counts)"))
    unchanged, why = data_unchanged(_gate(5))
    assert not unchanged and why == (
        "span 2 with span 1: the statistics differ: train: image mean bytes 0 0 (was 1); "
        "train: image mean bytes 1 1 (was 2); train: image mean bytes 2 2 (was 3); "
        "train: image mean bytes 3 3 (was 4); ...")
    unchanged, why = data_unchanged(_gate(0, splits=("train",)))
    assert not unchanged and why == (
        "span 2 with span 1: the statistics differ: splits ['train'] (was ['eval', 'train'])")
