"""Hostile and unlucky inputs to `run` and `predict`: folders that overlap, a damaged served
version, files that are no images, a damaged TFRecord. Each ends in one line on the console and
exit 1, 2 or 3, never a Python traceback, and nothing of the user's is touched.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest

import imagegen
from cli import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, main
from conftest import MODEL_NAME, PipelineRuns, snapshot


@pytest.fixture(autouse=True)
def root_handlers():
    """Puts the root logger's handlers back: each command's console handler writes to capsys."""
    root = logging.getLogger()
    saved = list(root.handlers)
    yield
    root.handlers[:] = saved


def _one_line_failure(capsys, code: int, expected: tuple[int, ...] = (1, 2, 3)) -> str:
    err = capsys.readouterr().err
    assert code in expected, err
    assert "Traceback" not in err, err
    return err


@pytest.mark.parametrize("layout", ["model dir is the data", "serving dir inside the data",
                                    "root is the data", "root inside the data",
                                    "model name climbs out"])
def test_overlapping_data_serving_dir_and_root_are_refused_before_anything_is_written(
    tmp_path: Path, capsys, layout: str
) -> None:
    """`run --data X/digs --serving-dir X` once pushed into, and cleaned up, the images' folder."""
    data = tmp_path / "X" / "digs"
    imagegen.write_folder(data, {"train": 4, "test": 2})
    before = snapshot(tmp_path / "X")
    serving, root, extra = tmp_path / "serving", tmp_path / "root", []
    if layout == "model dir is the data":
        serving = tmp_path / "X"
    elif layout == "serving dir inside the data":
        serving = data / "models"
    elif layout == "root is the data":
        root = data
    elif layout == "root inside the data":
        root = data / "tfx_root"
    else:
        extra = ["--model-name", "../X/digs"]
    code = main(["run", "--recipe", "classic",
                 "--data", str(data), "--serving-dir", str(serving), "--root", str(root),
                 *extra])
    err = _one_line_failure(capsys, code, (EXIT_BAD_INPUT,))
    assert "overlap" in err or "one folder name" in err
    assert snapshot(tmp_path / "X") == before
    assert not (root / "pipelines").exists() and not (tmp_path / "serving").exists()


@pytest.mark.parametrize("layout", ["root inside the infer data", "infer data is the model dir",
                                    "no such infer data"])
def test_an_infer_data_folder_that_overlaps_or_is_missing_is_refused_first(
    tmp_path: Path, capsys, layout: str
) -> None:
    """--infer-data: the BulkInferrer's predictions go into the root, and a served version's
    files are not images to score; a missing folder is named before ingest starts.
    """
    data, infer = tmp_path / "digs", tmp_path / "new"
    imagegen.write_folder(data, {"train": 4, "test": 2})
    imagegen.write_folder(infer, {"": 1})
    serving, root = tmp_path / "serving", tmp_path / "root"
    if layout == "root inside the infer data":
        root = infer / "tfx_root"
    elif layout == "infer data is the model dir":
        infer = serving / "digs"
        imagegen.write_folder(infer, {"": 1})
    else:
        infer = tmp_path / "nope"
    code = main(["run", "--recipe", "classic", "--data", str(data), "--serving-dir",
                 str(serving), "--root", str(root), "--infer-data", str(infer)])
    err = _one_line_failure(capsys, code, (EXIT_BAD_INPUT,))
    assert ("overlap" in err) if layout != "no such infer data" else (
        "no such folder, given as --infer-data" in err)
    assert not (root / "pipelines").exists()
    assert not serving.exists() or layout == "infer data is the model dir"


def test_a_link_to_the_data_is_the_data(tmp_path: Path, capsys) -> None:
    data = tmp_path / "photos"
    imagegen.write_folder(data, {"train": 4, "test": 2})
    (tmp_path / "serving").mkdir()
    (tmp_path / "serving" / "photos").symlink_to(data)
    code = main(["run", "--recipe", "classic",
                 "--data", str(data), "--serving-dir", str(tmp_path / "serving"),
                 "--root", str(tmp_path / "root")])
    assert "overlap" in _one_line_failure(capsys, code, (EXIT_BAD_INPUT,))


def _serving_copy(pipeline_runs: PipelineRuns, target: Path) -> Path:
    """A version of the session's model, copied to target."""
    versions = sorted(int(p.name) for p in pipeline_runs.model_base.iterdir() if p.name.isdigit())
    shutil.copytree(pipeline_runs.model_base / str(versions[0]), target)
    return target


def test_predict_answers_the_good_images_and_names_each_bad_one(
    pipeline_runs: PipelineRuns, tmp_path: Path, capsys
) -> None:
    good = pipeline_runs.test_files[0]
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.jpg").write_text("not an image")
    os.mkfifo(tmp_path / "pipe.png")
    images = [good, tmp_path / "empty.png", tmp_path / "notes.jpg", tmp_path / "pipe.png",
              tmp_path / "missing.png", tmp_path]
    code = main(["predict", "--model-dir", str(pipeline_runs.model_base), *map(str, images)])
    out = capsys.readouterr().out
    assert code == EXIT_BAD_INPUT
    lines = {line.split(": ", 1)[0]: line.split(": ", 1)[1] for line in out.splitlines()[1:]}
    assert lines[str(good)].startswith(good.parent.name)
    assert lines[str(tmp_path / "empty.png")] == "error: an empty file"
    assert lines[str(tmp_path / "notes.jpg")].startswith("error: the model cannot decode it")
    assert lines[str(tmp_path / "pipe.png")] == "error: not a regular file"
    assert lines[str(tmp_path / "missing.png")] == "error: no such file"
    assert lines[str(tmp_path)] == "error: not a regular file"


def test_predict_on_a_damaged_model_names_the_version(
    pipeline_runs: PipelineRuns, tmp_path: Path, capsys
) -> None:
    version = _serving_copy(pipeline_runs, tmp_path / "m" / "7")
    proto = version / "saved_model.pb"
    proto.write_bytes(proto.read_bytes()[:300])
    code = main(["predict", "--model-dir", str(tmp_path / "m"), str(pipeline_runs.test_files[0])])
    err = _one_line_failure(capsys, code, (EXIT_BAD_INPUT,))
    assert f"{version}: the SavedModel does not load" in err


def test_a_damaged_newest_version_is_skipped_as_the_baseline_and_replaced(
    pipeline_runs: PipelineRuns, tmp_path: Path, capsys
) -> None:
    """A truncated saved_model.pb (assets intact) in the newest version once blocked every later
    run inside TFMA, naming the Evaluator's snapshot. The run names the version, compares with
    the newest version that loads, and pushes above the damaged one, which it leaves in place.
    """
    base = tmp_path / "serving" / MODEL_NAME
    _serving_copy(pipeline_runs, base / "1000")
    damaged = _serving_copy(pipeline_runs, base / "2000") / "saved_model.pb"
    damaged.write_bytes(damaged.read_bytes()[:300])
    code = main([
        "run", "--recipe", "classic",
        "--data", str(pipeline_runs.images), "--root", str(tmp_path / "root"),
        "--serving-dir", str(tmp_path / "serving"), "--model-name", MODEL_NAME,
        "--schema", str(pipeline_runs.schema), "--batch-size", "16", "--epochs", "2",
        "--min-accuracy", "0", "--max-regression", "1",
    ])
    err = capsys.readouterr().err
    assert code == EXIT_OK, err
    assert "Traceback" not in err
    assert f"served version 2000 ({base}/2000) cannot be loaded" in err
    from report.summary import summarize_run

    summary = summarize_run(str(tmp_path / "root" / "metadata" / "image-classifier.sqlite"),
                            "image-classifier")
    assert summary.pushed
    versions = sorted(int(p.name) for p in base.iterdir() if p.name.isdigit())
    assert versions[:2] == [1000, 2000] and len(versions) == 3 and versions[2] > 2000
    assert damaged.is_file()


@pytest.mark.pipeline
def test_a_component_failure_is_one_line_and_the_log_keeps_the_traceback(
    tmp_path: Path, capsys
) -> None:
    """A damaged TFRecord fails StatisticsGen; TFX logs the traceback at ERROR."""
    imagegen.write_folder(tmp_path / "images", {"train": 6, "test": 2})
    assert main(["ingest", str(tmp_path / "images"), str(tmp_path / "data")]) == EXIT_OK
    shard = next((tmp_path / "data" / "train").glob("*.tfrecord.gz"))
    shard.write_bytes(shard.read_bytes()[:40])
    capsys.readouterr()
    code = main(["run", "--recipe", "classic",
                 "--data", str(tmp_path / "data"), "--root", str(tmp_path / "root"),
                 "--serving-dir", str(tmp_path / "serving")])
    err = _one_line_failure(capsys, code, (EXIT_FAILED,))
    assert "pipeline failed" in err
    log_file = next((tmp_path / "root" / "logs").glob("*.log"))
    assert "Traceback" in log_file.read_text()
