"""The report of real pipeline runs (tests/conftest.py `pipeline_runs`): misclassified images
traced to their files, and runs whose artifacts were deleted since.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from cli import EXIT_OK, main
from conftest import PIPELINE_NAME, PipelineRuns
from report import REPORT_HTML, REPORT_JSON


def test_misclassified_images_name_their_source_file_and_split(
    pipeline_runs: PipelineRuns,
) -> None:
    report_dir = pipeline_runs.report_dir("worse")  # untrained: it gets many images wrong
    report = json.loads((report_dir / REPORT_JSON).read_text())
    mistakes = report["misclassified"]
    assert mistakes["split"] == report["evaluation_split"] == "test"
    assert mistakes["shown"] and mistakes["source_paths"] is True
    test_files = {str(p.relative_to(pipeline_runs.images)): p for p in pipeline_runs.test_files}
    page = (report_dir / REPORT_HTML).read_text()
    for mistake in mistakes["shown"]:
        path = test_files[mistake["source_path"]]  # e.g. test/red/003.jpg, relative to --data
        assert path.parent.name == mistake["true"] != mistake["predicted"]
        assert mistake["split"] == "test"
        assert f"<td><code>{mistake['source_path']}</code></td><td>test</td>" in page
    assert f"Files are relative to the ingested folder <code>{pipeline_runs.images}" in page


def _report(runs: PipelineRuns, name: str, out: Path, capsys) -> tuple[str, dict]:
    """`python -m pipeline report` of the named run: its page and report.json."""
    code = main(["report", "--run", runs.run_ids[name], "--output", str(out),
                 "--root", str(runs.root), "--pipeline-name", PIPELINE_NAME])
    printed = capsys.readouterr()
    assert code == EXIT_OK, printed.err
    assert "Traceback" not in printed.out + printed.err
    return (out / REPORT_HTML).read_text(), json.loads((out / REPORT_JSON).read_text())



def _report_without(uri: Path, runs: PipelineRuns, tmp_path: Path, capsys) -> tuple[str, dict]:
    """The second run's report with the artifact at `uri` gone, as deleting it would leave it;
    put back after, for the other tests of the session.
    """
    hidden = uri.with_name(uri.name + ".deleted")
    uri.rename(hidden)
    try:
        return _report(runs, "second", tmp_path / "report", capsys)
    finally:
        hidden.rename(uri)

@pytest.mark.parametrize("deleted", ["statistics", "examples"])
def test_a_report_of_a_run_whose_data_artifacts_were_deleted_says_what_is_missing(
    pipeline_runs: PipelineRuns, tmp_path: Path, capsys, deleted: str
) -> None:
    """The second run has a drift baseline, so its report reads the statistics twice."""
    recorded = json.loads((pipeline_runs.report_dir("second") / REPORT_JSON).read_text())
    uri = Path(recorded["dataset"][deleted])
    page, report = _report_without(uri, pipeline_runs, tmp_path, capsys)
    dataset = report["dataset"]
    assert dataset["available"] and f"at {uri} no longer exist" in dataset["missing"][0]
    assert f"at {uri} no longer exist" in page
    assert report["evaluation"]["available"] and report["training"]["available"]
    assert "BLESSED" in page and "tensorflow_model_server" in page
    if deleted == "statistics":
        # The counts come from dataset.json; the drift is what the gate recorded in the run.
        assert dataset["splits_from"] == "dataset.json"
        assert dataset["splits"]["test"]["examples"] == len(pipeline_runs.test_files)
        assert report["validation"]["drift"] == recorded["validation"]["drift"] != []
        assert "Not measured" not in page
        assert report["misclassified"]["available"]
    else:
        assert not report["misclassified"]["available"]
        assert f"the examples (ImportExampleGen) at {uri} no longer exist" in (
            report["misclassified"]["why"])
        assert dataset["splits"]["test"]["examples"] == len(pipeline_runs.test_files)


def test_data_ingested_before_source_paths_says_so_instead_of_naming_files(
    pipeline_runs: PipelineRuns, tmp_path: Path
) -> None:
    """Examples as the ingest before source paths wrote them, through the worse run's model."""
    import numpy as np
    from markupsafe import escape

    import imagegen
    from ingest.tfrecord import GzipTFRecordWriter, encode_image_example
    from report import RunReport
    from report.html import NO_SOURCE_PATHS, render
    from report.misclassified import find_mistakes

    report = RunReport.read(pipeline_runs.report_dir("worse"))
    (tmp_path / "Split-test").mkdir()
    rng = np.random.default_rng(3)
    with GzipTFRecordWriter(str(tmp_path / "Split-test" / "data.gz")) as writer:
        for label, name in enumerate(imagegen.CLASS_NAMES):
            for _ in range(2):
                writer.write(encode_image_example("image", imagegen.image_bytes(name, rng),
                                                  "label", label))
    summary, mistakes = find_mistakes(report.training.model, str(tmp_path),
                                      list(report.class_names), "test")
    assert summary.scanned == 6 and mistakes and summary.source_paths is False
    assert all(m.source_path is None and m.split == "test" for m in summary.shown)
    page = render(dataclasses.replace(report, misclassified=summary))
    assert str(escape(NO_SOURCE_PATHS)) in page
    assert f"not recorded (record {summary.shown[0].index} of the split)" in page


def test_a_report_of_a_run_whose_evaluation_was_deleted_says_so_and_renders_the_rest(
    pipeline_runs: PipelineRuns, tmp_path: Path, capsys
) -> None:
    recorded = json.loads((pipeline_runs.report_dir("second") / REPORT_JSON).read_text())
    uri = Path(recorded["evaluation"]["evaluation_uri"])
    page, report = _report_without(uri, pipeline_runs, tmp_path, capsys)
    evaluation = report["evaluation"]
    assert not evaluation["available"]
    assert f"the evaluation (Evaluator) at {uri} no longer exists" in evaluation["why"]
    assert f"at {uri} no longer exists" in page
    assert report["dataset"]["available"] and report["training"]["available"]
    assert "tensorflow_model_server" in page
