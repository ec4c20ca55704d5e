"""The BulkInferrer's executor on its own: which version scores, and a run with none served."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tfx.types import standard_artifacts

import imagegen
from components import bulk_inferrer
from schema.errors import BadInput


def _artifacts(tmp_path: Path, pushed: int):
    push = standard_artifacts.PushedModel()
    push.uri = str(tmp_path / "push")
    push.set_int_custom_property("pushed", pushed)
    result = standard_artifacts.InferenceResult()
    result.uri = str(tmp_path / "result")
    return push, result


def _destination(base: Path) -> str:
    return json.dumps({"filesystem": {"baseDirectory": str(base)}})


def _execute(push, result, data: str, base: Path) -> None:
    bulk_inferrer.Executor().Do(
        {bulk_inferrer.PUSHED_MODEL_KEY: [push]},
        {bulk_inferrer.INFERENCE_RESULT_KEY: [result]},
        {bulk_inferrer.DATA_KEY: data, bulk_inferrer.PUSH_DESTINATION_KEY: _destination(base)})


def test_nothing_served_and_nothing_pushed_scores_nothing_and_says_why(tmp_path: Path) -> None:
    images = tmp_path / "new"
    imagegen.write_folder(images, {"": 1})
    push, result = _artifacts(tmp_path, pushed=0)
    _execute(push, result, str(images), tmp_path / "serving" / "m")
    assert result.get_int_custom_property(bulk_inferrer.ROWS_PROPERTY) == 0
    assert "no version is served" in result.get_string_custom_property(
        bulk_inferrer.NOTE_PROPERTY)
    assert not result.has_custom_property(bulk_inferrer.VERSION_PROPERTY)
    assert not Path(bulk_inferrer.predictions_path(result.uri)).exists()


def test_a_folder_url_is_refused_naming_the_setting(tmp_path: Path) -> None:
    push, result = _artifacts(tmp_path, pushed=0)
    with pytest.raises(BadInput, match="local file system") as error:
        _execute(push, result, "gs://bucket/new", tmp_path / "serving" / "m")
    assert [s.name for s in error.value.settings] == ["infer_data"]


def test_the_pushed_version_scores_else_the_served_one(tmp_path: Path) -> None:
    push, _ = _artifacts(tmp_path, pushed=1)
    push.set_string_custom_property("pushed_version", "7")
    push.set_string_custom_property("pushed_destination", str(tmp_path / "m" / "7"))
    assert bulk_inferrer.scoring_model(push, str(tmp_path / "m")) == (7, str(tmp_path / "m" / "7"))
    not_pushed, _ = _artifacts(tmp_path, pushed=0)
    assert bulk_inferrer.scoring_model(not_pushed, str(tmp_path / "empty")) is None
