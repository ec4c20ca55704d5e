"""The TFLite model through LocalDagRunner: written by the Trainer, scored on `test` by the
Evaluator, pushed with the version when it is within thresholds.max_tflite_drop of the
SavedModel, and left out of the version (which is pushed as today) when it is not.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import imagegen
from cli import main
from conftest import PipelineRuns, int_properties, run_artifact
from pipeline.workspace import Workspace
from report import REPORT_HTML, RunReport
from report.lineage import model_lineage
from report.summary import summarize_run
from schema.curated import write_schema
from serving import tflite
from serving.model_dir import EvaluationRecord, served_versions
from serving.tflite import TfliteClassifier, TfliteEvaluation, TfliteModelInfo
from trainer.tflite import app_pixels

pytestmark = pytest.mark.pipeline


def _evaluation_uri(metadata_path: str, run_id: str) -> str:
    return run_artifact(metadata_path, run_id, "ModelEvaluation").uri


def test_the_tflite_model_is_written_scored_on_test_and_pushed(
        pipeline_runs: PipelineRuns) -> None:
    run_id = pipeline_runs.run_ids["first"]
    evaluation = TfliteEvaluation.read(_evaluation_uri(pipeline_runs.metadata_path, run_id))
    assert evaluation is not None and evaluation.blessed, evaluation
    assert (evaluation.mode, evaluation.split) == ("dynamic", "test")
    assert evaluation.examples == len(pipeline_runs.test_files)
    assert [c.name for c in evaluation.per_class] == list(imagegen.CLASS_NAMES)
    assert sum(c.examples for c in evaluation.per_class) == evaluation.examples
    assert evaluation.latency_runs >= 200 and evaluation.latency_ms_median > 0
    assert evaluation.latency_ms_median <= evaluation.latency_ms_p99
    assert 0 < evaluation.size_bytes < evaluation.saved_model_bytes
    assert "pushed with the version" in evaluation.why
    assert any("test-time augmentation" in d for d in evaluation.differs_from_serving)

    pushed = run_artifact(pipeline_runs.metadata_path, run_id, "PushedModel")
    assert int_properties(pushed)["tflite_pushed"] == 1
    version = Path(pushed.custom_properties["pushed_destination"].string_value)
    info = TfliteModelInfo.read(version / tflite.TFLITE_DIR)
    assert info.size_bytes == (version / tflite.TFLITE_DIR / tflite.MODEL_FILE).stat().st_size
    assert (version / tflite.TFLITE_DIR / tflite.LABELS_FILE).read_text().splitlines() == list(
        imagegen.CLASS_NAMES)

    # The pushed file, fed as an app feeds it, scores what the Evaluator recorded.
    classifier = TfliteClassifier((version / tflite.TFLITE_DIR / tflite.MODEL_FILE).read_bytes())
    assert classifier.input_shape == (1, info.height, info.width, info.channels)
    pixels = app_pixels([p.read_bytes() for p in pipeline_runs.test_files], info.height,
                        info.width, info.channels, info.resize_mode)
    labels = [imagegen.CLASS_NAMES.index(p.parent.name) for p in pipeline_runs.test_files]
    predicted = classifier.batch_probabilities(pixels).argmax(axis=-1)
    assert float(np.mean(predicted == labels)) == pytest.approx(evaluation.accuracy)


def _zeroing_convert(convert):
    """trainer.tflite.convert after zeroing the trained weights: the SavedModel is exported
    already, so only the TFLite model is made worse.
    """

    def worse(model, *args, **kwargs):
        model.set_weights([np.zeros_like(w) for w in model.get_weights()])
        return convert(model, *args, **kwargs)

    return worse


def test_a_worse_tflite_model_is_not_pushed_while_the_saved_model_is(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import trainer.tflite

    imagegen.write_folder(tmp_path / "images", {"train": 16, "validation": 7, "test": 6})
    write_schema(len(imagegen.CLASS_NAMES), tmp_path / "schema.pbtxt")
    root, serving = tmp_path / "root", tmp_path / "serving"
    args = ["run", "--recipe", "classic", "--data", str(tmp_path / "images"), "--root",
            str(root), "--pipeline-name", "worse-tflite", "--serving-dir", str(serving),
            "--model-name", "m", "--schema", str(tmp_path / "schema.pbtxt"), "--batch-size",
            "16", "--epochs", "8"]
    monkeypatch.setattr(trainer.tflite, "convert", _zeroing_convert(trainer.tflite.convert))
    assert main(args) == 0

    store = str(Workspace(root, "worse-tflite").metadata_path)
    summary = summarize_run(store, "worse-tflite")
    assert summary.blessed and summary.pushed  # the SavedModel's push, decided as today
    (version,) = served_versions(str(serving / "m"))
    assert not (serving / "m" / str(version) / tflite.TFLITE_DIR).exists()
    evaluation_uri = _evaluation_uri(store, summary.run_id)
    evaluation = TfliteEvaluation.read(evaluation_uri)
    assert not evaluation.blessed
    # Zero weights answer one class for every image: a third of 3 balanced classes.
    assert evaluation.accuracy == pytest.approx(1 / 3)
    assert evaluation.saved_model_accuracy - evaluation.accuracy > evaluation.max_drop
    assert "not pushed" in evaluation.why
    assert EvaluationRecord.read(evaluation_uri) is not None
    pushed = run_artifact(store, summary.run_id, "PushedModel")
    assert int_properties(pushed)["tflite_pushed"] == 0
    assert pushed.custom_properties["tflite_note"].string_value == evaluation.why
    found = model_lineage(store, str(version))["tflite"]
    assert found["pushed"] is False and "mode" not in found and found["why"] == evaluation.why
    # The run's report says the version has no TFLite file, and why.
    report_dir = Workspace(root, "worse-tflite").report_dir(summary.run_id)
    report = RunReport.read(report_dir)
    assert report.tflite.pushed is False and report.tflite.note == evaluation.why
    html = (report_dir / REPORT_HTML).read_text()
    assert f"version {version} has no TFLite file: TFLite dynamic: 33.3 % on 18 test" in html
    assert "more than the 0.5 points below it allowed" in html

    # Again, cached: the version without its TFLite file is the model served already, to the
    # Evaluator (which evaluates it once, reusing the first evaluation) and to the Pusher.
    assert main(args) == 0
    assert served_versions(str(serving / "m")) == [version]
    rerun = summarize_run(store, "worse-tflite").run_id
    assert EvaluationRecord.read(_evaluation_uri(store, rerun)).baseline_is_candidate
    assert not TfliteEvaluation.read(_evaluation_uri(store, rerun)).blessed
    again = run_artifact(store, rerun, "PushedModel")
    assert int_properties(again)["already_served"] == 1

    # An evaluation reused without its TFLite score (its scoring failed, or it was made before
    # the score was kept) gets one: the TFLite model is scored again, not left without verdict.
    for run_id in (summary.run_id, rerun):
        Path(_evaluation_uri(store, run_id), TfliteEvaluation.FILE).unlink()
    assert main(args) == 0
    third = summarize_run(store, "worse-tflite").run_id
    assert EvaluationRecord.read(_evaluation_uri(store, third)).baseline_is_candidate
    scored = TfliteEvaluation.read(_evaluation_uri(store, third))
    assert scored is not None and not scored.blessed
    assert scored.accuracy == pytest.approx(1 / 3)
