"""`predict --tflite`: a pushed version's TFLite model in TFLite's interpreter, its input made
as an app makes it, against the SavedModel through serving_default; and its refusals.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli import EXIT_BAD_INPUT, EXIT_OK, main
from conftest import PIPELINE_NAME, PipelineRuns
from schema.errors import Setting
from serving import tflite
from serving.predict import ModelDirError, load_tflite
from serving.tflite import TfliteModelInfo

# The TFLite model (default mode `dynamic`: int8 weights, float activations) against
# serving_default, which here also averages each image with its mirror image (the fixture's
# --flip test-time augmentation; the TFLite model sees the image once). Measured on the
# fixture's test images: largest difference 0.011 (2026-12-06; training on CPU threads is not
# bit-reproducible between suite runs, so the bar leaves about 5x room), while a wrong
# normalization or decode moves probabilities by far more, and the top class with them.
PROBABILITY_TOLERANCE = 0.05


def _fake_version(base: Path, name: str = "5") -> Path:
    """A version folder as far as predict looks before loading anything: a saved_model.pb."""
    version = base / name
    version.mkdir(parents=True)
    (version / "saved_model.pb").write_bytes(b"")
    return version


def test_a_version_without_tflite_is_refused_naming_it_and_the_way_out(tmp_path, capsys):
    version = _fake_version(tmp_path / "m")
    image = tmp_path / "a.png"
    image.write_bytes(b"png")
    code = main(["predict", "--model-dir", str(tmp_path / "m"), "--tflite", str(image)])
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT and "Traceback" not in err, err
    assert f"{version}: this version holds no TFLite model" in err
    assert "the Evaluator blessed it" in err and "--max-tflite-drop" in err
    assert "lineage of version 5" in err
    assert "Without --tflite, predict classifies with the version's SavedModel" in err
    # Kubeflow's and the log's text names the settings neutrally.
    with pytest.raises(ModelDirError) as raised:
        load_tflite(version)
    assert Setting("predict.tflite") in raised.value.settings
    assert "the predict option tflite" in str(raised.value)


def test_a_tflite_model_without_its_record_is_refused(tmp_path):
    version = _fake_version(tmp_path)
    folder = Path(tflite.folder(str(version)))
    folder.mkdir(parents=True)
    (folder / tflite.MODEL_FILE).write_bytes(b"tflite")
    with pytest.raises(ModelDirError, match=f"lacks its {TfliteModelInfo.FILE}"):
        load_tflite(version)


def test_tflite_with_a_server_is_refused(tmp_path, capsys):
    image = tmp_path / "a.png"
    image.write_bytes(b"png")
    code = main(["predict", "--server", "localhost:8501", "--model-name", "colors",
                 "--tflite", str(image)])
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT and "Traceback" not in err, err
    assert "TF Serving serves the SavedModel, not TFLite" in err
    assert "--model-dir" in err


def _pushed_versions_with_tflite(runs: PipelineRuns) -> list[Path]:
    versions = sorted((p for p in runs.model_base.iterdir() if p.name.isdigit()),
                      key=lambda p: int(p.name))
    return [v for v in versions if Path(tflite.model_path(str(v))).is_file()]


def _json_out(capsys, args: list[str]) -> dict:
    assert main([*args, "--json"]) == EXIT_OK
    return json.loads(capsys.readouterr().out)


def test_tflite_agrees_with_the_saved_model_on_the_test_images(
    pipeline_runs: PipelineRuns, capsys
) -> None:
    versions = _pushed_versions_with_tflite(pipeline_runs)
    assert versions, "the fixture's pushed versions hold TFLite models"
    version = versions[-1]
    files = [str(f) for f in pipeline_runs.test_files]
    args = ["predict", "--model-dir", str(version), "--top-k", "3", *files]
    saved = _json_out(capsys, args)
    lite = _json_out(capsys, [*args, "--tflite"])
    assert lite["model_version"] == saved["model_version"] == str(version)
    assert saved.get("tflite") is None
    assert lite["tflite"] == {"mode": "dynamic", "file": tflite.model_path(str(version))}
    largest = 0.0
    for ours, theirs in zip(lite["predictions"], saved["predictions"], strict=True):
        assert ours["path"] == theirs["path"] and ours["error"] is None
        assert (ours["class_name"], ours["class_id"]) == (theirs["class_name"],
                                                          theirs["class_id"]), (ours, theirs)
        assert ours["class_name"] == Path(ours["path"]).parent.name
        ours_p, theirs_p = dict(ours["top"]), dict(theirs["top"])
        assert set(ours_p) == set(theirs_p)
        largest = max(largest, *(abs(ours_p[c] - theirs_p[c]) for c in ours_p))
    assert largest <= PROBABILITY_TOLERANCE, largest
    # The human lines: the same format, and the model line says which model answered.
    assert main(["predict", "--model-dir", str(pipeline_runs.model_base), "--tflite",
                 files[0]]) == EXIT_OK
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("model: ") and "(TFLite dynamic: " in out[0]
    assert out[1].startswith(f"{files[0]}: {Path(files[0]).parent.name}  (")


def test_tflite_answers_the_good_images_and_names_each_bad_one(
    pipeline_runs: PipelineRuns, tmp_path: Path, capsys
) -> None:
    version = _pushed_versions_with_tflite(pipeline_runs)[-1]
    good = pipeline_runs.test_files[0]
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.jpg").write_text("not an image")
    images = [good, tmp_path / "empty.png", tmp_path / "notes.jpg", tmp_path / "missing.png"]
    code = main(["predict", "--model-dir", str(version), "--tflite", *map(str, images)])
    out = capsys.readouterr().out
    assert code == EXIT_BAD_INPUT
    lines = {line.split(": ", 1)[0]: line.split(": ", 1)[1] for line in out.splitlines()[1:]}
    assert lines[str(good)].startswith(good.parent.name)
    assert lines[str(tmp_path / "empty.png")] == "error: an empty file"
    assert lines[str(tmp_path / "notes.jpg")].startswith("error: the model cannot decode it")
    assert lines[str(tmp_path / "missing.png")] == "error: no such file"


def test_lineage_says_whether_the_version_holds_a_tflite_model(
    pipeline_runs: PipelineRuns, capsys
) -> None:
    version = _pushed_versions_with_tflite(pipeline_runs)[0]
    args = ["lineage", "--model", version.name, "--root", str(pipeline_runs.root),
            "--pipeline-name", PIPELINE_NAME]
    lineage = _json_out(capsys, args)["tflite"]
    info = TfliteModelInfo.read(tflite.folder(str(version)))
    assert lineage["pushed"] and lineage["mode"] == info.mode == "dynamic"
    assert lineage["size_bytes"] == info.size_bytes > 0
    assert lineage["why"].endswith("pushed with the version")
    assert 0 <= lineage["accuracy"] <= 1
    assert main(args) == EXIT_OK
    line = next(line for line in capsys.readouterr().out.splitlines()
                if line.startswith("tflite "))
    assert f"dynamic, {info.size_bytes:,} bytes" in line and "pushed with the version" in line
