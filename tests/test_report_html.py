"""The report page (report/html.py + its Jinja2 template) and its charts (report/plots.py) from
report facts, without a run: tests/reportfacts.py generates them at scale.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

import reportfacts
from report import REPORT_JSON, RunReport, plots, write_report
from report.facts import MOST_CONFUSED
from report.html import render
from report.records import (
    DatasetFacts,
    NotRun,
    PushFacts,
    SplitFacts,
    TfliteFacts,
    ValidationFacts,
)
from schema.records import RecordVersionError

SPLIT = SplitFacts(examples=3, per_class={"a": 3})


def _report(**sections: Any) -> RunReport:
    """A report whose sections did not run unless given, evaluated on no split."""
    return reportfacts.report_facts(evaluation_split=None, **sections)


def _dataset(**facts: Any) -> DatasetFacts:
    """Data with a dataset.json holding `facts`, and one train split unless given."""
    return DatasetFacts(dataset_json="/data/dataset.json",
                        **{"splits": {"train": SPLIT}} | facts)


def test_the_dataset_section_shows_duplicates_and_conversions() -> None:
    page = render(_report(dataset=_dataset(
        splits={"train": SPLIT, "test": SPLIT},
        converted={"count": 1, "from": {"JPEG CMYK": 1}, "to": "PNG L"},
        duplicates={"across_splits": 2, "within_split": {"train": 1, "test": 0},
                    "allowed": True})))
    assert "2 across splits (kept with --allow-duplicates" in page
    assert "within a split: train 1, test 0" in page
    assert "1 to PNG L (1 JPEG CMYK)" in page
    assert "<section id=" in page and page.count("<section id=") == 8
    assert "Not available: no push here." in page
    assert '<td class="num">12.3</td>' in page
    unknown = render(_report(dataset=_dataset()))
    assert "n/a (not counted" in unknown


def test_what_a_run_holds_is_escaped() -> None:
    hostile = '<script>alert("x")</script> & co'
    split = SplitFacts(examples=1, per_class={hostile: 1})
    page = render(_report(dataset=_dataset(splits={"train": split}, data_root=hostile),
                          push=PushFacts(pushed=False)))
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; co" in page
    assert "<code>&lt;script&gt;" in page  # a path shown as code is escaped too
    assert "not pushed: the model was not blessed" in page


def test_the_dataset_section_summarizes_image_sizes_instead_of_listing_each() -> None:
    seen = {f"{375 + i}x500x3": 100 - i for i in range(20)} | {"other": 2034}
    sizes = {"count": 6000, "distinct_sizes": 2054,
             "height": {"min": 100, "median": 375, "max": 3024},
             "width": {"min": 120, "median": 500, "max": 4032},
             "short_side": {"min": 100, "median": 375, "max": 3024}}
    page = render(_report(dataset=_dataset(image_shape=(375, 500, 3), sizes_vary=True,
                                           image_sizes=sizes, image_shapes_seen=seen)))
    assert "2,054 distinct sizes in 6,000 images: see Image sizes below" in page
    assert ('<td>height</td><td class="num">100</td><td class="num">375</td>'
            '<td class="num">3024</td>') in page
    assert ('<td>short side</td><td class="num">100</td><td class="num">375</td>'
            '<td class="num">3024</td>') in page
    assert '<td>375x500x3</td><td class="num">100</td>' in page
    assert "379x500x3" in page and "380x500x3" not in page  # 5 shapes at most
    assert "375x500x3 (the median size: sizes vary" in page

    old = render(_report(dataset=_dataset(  # a dataset.json from before sizes were summarized
        image_shape=(8, 8, 3), image_shapes_seen={f"{8 + i}x8x3": 1 for i in range(9)})))
    assert "8x8x3: 1, 9x8x3: 1, 10x8x3: 1, 11x8x3: 1, 12x8x3: 1 (and 4 more)" in old
    one = render(_report(dataset=_dataset(
        image_shape=(8, 8, 3), image_sizes=sizes | {"distinct_sizes": 1},
        image_shapes_seen={"8x8x3": 3})))
    assert "8x8x3: 3" in one and "sizes;" not in one


def _png(path: Path) -> tuple[tuple[int, int], str]:
    """(width, height) and the title a chart carries in its metadata."""
    from PIL import Image

    with Image.open(path) as image:
        return image.size, image.text.get("Title", "")


def test_a_thousand_classes_get_top_k_charts_and_a_compact_report_json(tmp_path: Path) -> None:
    names = reportfacts.class_names(1000)
    report = reportfacts.report_facts(
        class_names=names,
        dataset=reportfacts.sized_dataset(reportfacts.photo_shapes(50, 20_000), names),
        evaluation=reportfacts.evaluation(names))
    page = write_report(report, tmp_path).read_text()

    charts = {png.name: _png(png) for png in tmp_path.glob("*.png")}
    assert set(charts) == {"class_balance.png", "image_sizes.png", "per_class_accuracy.png",
                           "confused_pairs.png"}  # no 1,000 x 1,000 matrix
    for name, (size, _) in charts.items():
        assert max(size) <= 1600, (name, size)
    assert charts["per_class_accuracy.png"][1] == (
        "Accuracy per class on the test split: the 20 lowest and 20 highest of 1,000 classes")
    assert charts["confused_pairs.png"][1] == (
        "Most confused class pairs on the test split (20 largest, 1,000 classes)")
    assert charts["class_balance.png"][1] == "Examples per class, 1,000 classes sorted by count"
    saved = json.loads((tmp_path / REPORT_JSON).read_text())["evaluation"]
    assert saved["confusion_matrix"] is None and saved["confusion_classes"] == 1000
    assert len(saved["most_confused"]) == MOST_CONFUSED
    counts = [pair["count"] for pair in saved["most_confused"]]
    assert counts == sorted(counts, reverse=True)
    # Long tables are folded, the totals row first; the most confused pairs are a table too.
    assert page.count("<details><summary>All 1,0") == 2
    assert "<h3>Most confused classes on the test split</h3>" in page


def test_long_class_names_are_cut_short_in_charts_and_whole_in_tables(tmp_path: Path) -> None:
    names = reportfacts.class_names(6, length=200)
    evaluation = reportfacts.evaluation(names)
    dataset = reportfacts.sized_dataset(reportfacts.photo_shapes(20, 400), names)
    labels = []
    for fig, _ in (plots.per_class_accuracy_figure(evaluation.per_class_accuracy, "test"),
                   plots.confusion_matrix_figure(evaluation.confusion_matrix, names, "test"),
                   plots.class_balance_figure({s: v.per_class
                                               for s, v in dataset.splits.items()})):
        ax = fig.axes[0]
        labels += [t.get_text() for t in ax.get_xticklabels() + ax.get_yticklabels()
                   if not t.get_text().replace(".", "").replace("−", "").isdigit()]
        plots.pyplot().close(fig)
    assert len(labels) == 4 * len(names)  # bars; matrix rows and columns; bar groups
    assert all(len(label) <= plots.NAME_CHARS and label.endswith("…") for label in labels)

    report = reportfacts.report_facts(class_names=names, dataset=dataset,
                                      evaluation=evaluation)
    page = write_report(report, tmp_path).read_text()
    confused = [name for pair in evaluation.most_confused
                for name in (pair.actual, pair.predicted)]
    for name in names:  # whole, in the tables of examples, accuracy and most confused pairs
        assert page.count(f"<td>{name}</td>") == 2 + confused.count(name)


@pytest.mark.parametrize("split", ["test", "eval"])
def test_every_title_caption_and_heading_names_the_evaluated_split(tmp_path: Path,
                                                                   split: str) -> None:
    names = ["ants", "bees", "wasps"]
    dataset = reportfacts.sized_dataset(reportfacts.photo_shapes(20, 400), names)
    if split == "eval":  # data without a test split: the Evaluator scores eval
        dataset = dataclasses.replace(dataset, splits={
            name: counts for name, counts in dataset.splits.items() if name != "test"})
    report = reportfacts.report_facts(
        evaluation_split=split, class_names=names, dataset=dataset,
        evaluation=dataclasses.replace(reportfacts.evaluation(names), split=split))
    page = write_report(report, tmp_path).read_text()
    other = {"test": "eval", "eval": "test"}[split]
    assert f"<h2>Evaluation on the {split} split</h2>" in page
    assert f"<h2>Misclassified {split} images</h2>" in page
    assert f"<h3>Accuracy per class on the {split} split</h3>" in page
    for png in ("per_class_accuracy.png", "confusion_matrix.png"):
        title = _png(tmp_path / png)[1]
        assert f"on the {split} split" in title and other not in title, title
    assert f'alt="Accuracy per class on the {split} split"' in page
    assert f'alt="Confusion matrix on the {split} split' in page


def test_report_json_is_the_run_report_and_reads_back_as_it(tmp_path: Path) -> None:
    names = ["ants", "bees"]
    report = reportfacts.report_facts(
        class_names=names,
        dataset=reportfacts.sized_dataset(reportfacts.photo_shapes(20, 400), names),
        validation=ValidationFacts(anomalies_uri="/root/ExampleValidator/3"),
        evaluation=reportfacts.evaluation(names))
    write_report(report, tmp_path)
    data = json.loads((tmp_path / REPORT_JSON).read_text())
    back = RunReport.read(tmp_path)
    assert back.to_data() == data and data["schema_version"] == RunReport.SCHEMA_VERSION
    assert (back.dataset, back.validation, back.evaluation) == (
        report.dataset, report.validation, report.evaluation)
    assert isinstance(back.training, NotRun) and isinstance(back.misclassified, NotRun)
    assert data["training"] == {"available": False, "why": "no training here"}
    assert set(data["files"]) == {"class_balance", "image_sizes", "per_class_accuracy",
                                  "confusion_matrix", "html"}
    # A fact the run does not have is absent, as before report.json had a type: no spans,
    # nothing missing, no data gate; without a dataset.json, none of ingest's fields.
    assert not {"span", "window_spans", "missing", "splits_from"} & set(data["dataset"])
    assert not {"max_label_drift", "class_map", "drift_missing"} & set(data["validation"])
    bare = dataclasses.replace(report.dataset, dataset_json=None)
    assert "image_sizes" not in RunReport.from_data(
        {**data, "dataset": {"available": True}}).to_data()["dataset"]
    assert "source" not in dataclasses.replace(back, dataset=bare).to_data()["dataset"]
    # A newer pipeline's report is refused, naming the file, not read as something it is not.
    (tmp_path / REPORT_JSON).write_text(json.dumps({**data, "schema_version": 2}))
    with pytest.raises(RecordVersionError, match=REPORT_JSON):
        RunReport.read(tmp_path)


def _tflite_section(page: str) -> str:
    return page.split('<section id="tflite">', 1)[1].split("</section>", 1)[0]


def _tflite_report(names: list[str], drop: float = 0.0, pushed: bool | None = True
                   ) -> RunReport:
    saved = reportfacts.evaluation(names)
    tflite = reportfacts.tflite_evaluation(names, saved, drop=drop)
    return reportfacts.report_facts(
        class_names=names, evaluation=saved,
        push=PushFacts(pushed=pushed is not None, version="3", destination="/serving/m/3"),
        tflite=TfliteFacts(evaluation=tflite, pushed=pushed,
                           version=3 if pushed is not None else None,
                           note=tflite.why if pushed is not None else None))


def test_an_ensemble_s_networks_are_listed_and_the_curves_say_whose_they_are() -> None:
    from report.records import TrainingFacts
    from trainer.record import MemberRecord

    members = (MemberRecord(42, 8, 150.5, 0.9412), MemberRecord(1000045, 8, 151.25, 0.9398))
    page = render(reportfacts.report_facts(training=TrainingFacts(
        config={"model": {"members": 2}}, epochs_run=8, members=members,
        history={"loss": [1.0, 0.5]})))
    assert "networks averaged (model.members)" in page
    assert "seed 42: 0.9412 alone, 150.5 s; seed 1000045: 0.9398 alone, 151.2 s" in page
    assert "epochs run (network 1 of 2)" in page and "last epoch (network 1 of 2)" in page
    assert "model.members" in page
    single = render(reportfacts.report_facts(training=TrainingFacts(config={}, epochs_run=8)))
    assert "networks averaged" not in single and "network 1 of" not in single


def test_the_tflite_section_sets_it_beside_the_saved_model(tmp_path: Path) -> None:
    names = ["ants", "bees", "wasps"]
    report = _tflite_report(names)
    section = _tflite_section(write_report(report, tmp_path).read_text())
    assert section.startswith("<h2>TFLite model</h2>")
    assert "<th>mode</th><td>dynamic</td>" in section
    saved = report.evaluation
    assert f"<td>{saved.accuracy:.4f}</td>" in section  # the SavedModel's, and the TFLite's
    assert "the same as the SavedModel&#39;s" in section
    assert "(--max-tflite-drop allows 0.5 points)" in section
    assert "1.23 MB (1,234,567 bytes)" in section and "4.57 MB (4,567,890 bytes)" in section
    assert ("<th>batch-1 latency (this host&#39;s CPU, TFLite&#39;s interpreter)</th><td>0.41 "
            "ms median, 0.99 ms p99 over 200 runs") in section
    assert "<li>It has no test-time augmentation: serving_default averages" in section
    assert '<span class="ok">pushed with version 3</span>' in section
    # Per class, side by side: the SavedModel's accuracy (the evaluation's) and the TFLite's.
    ants = f"{saved.per_class_accuracy['ants']:.4f}"
    assert (f'<td>ants</td><td class="num">20</td><td class="num">{ants}</td>'
            f'<td class="num">{ants}</td><td class="num">+0.0000</td>') in section
    assert "<details>" not in section
    data = json.loads((tmp_path / REPORT_JSON).read_text())["tflite"]
    assert data["available"] and data["pushed"] and data["version"] == 3
    assert data["evaluation"]["size_bytes"] == 1_234_567
    assert data["evaluation"]["latency_runs"] == 200
    assert [c["name"] for c in data["evaluation"]["per_class"]] == names
    assert RunReport.read(tmp_path).tflite == report.tflite


def test_a_tflite_file_left_out_of_the_version_says_why(tmp_path: Path) -> None:
    report = _tflite_report(["ants", "bees"], drop=0.05, pushed=False)
    section = _tflite_section(render(report))
    assert "5.0 points below the SavedModel&#39;s" in section
    assert '<span class="bad">not blessed: more than the allowed drop</span>' in section
    assert ('<span class="bad">version 3 has no TFLite file: TFLite dynamic: ') in section
    assert "not pushed; the version goes out without a TFLite file</span>" in section
    assert '<td class="num">-0.0500</td>' in section
    # The candidate itself was not pushed: no version, so no TFLite file either.
    unpushed = _tflite_section(render(_tflite_report(["ants", "bees"], pushed=None)))
    assert '<span class="muted">not pushed: no version was pushed in this run</span>' in (
        unpushed)


def test_a_run_without_a_tflite_model_says_so_in_one_line() -> None:
    from report.summary import NO_TFLITE

    section = _tflite_section(render(_report(tflite=NotRun(state="executed", why=NO_TFLITE))))
    assert section == ("<h2>TFLite model</h2><p class=\"muted\">Not available: no TFLite model "
                       "in this run (the model holds none: made with --tflite none, or handed "
                       "on unchanged from a served version without one).</p>\n")
    # A report.json written before the section existed reads back with it not recorded.
    data = _report().to_data()
    del data["tflite"]
    assert "before it had a TFLite section" in RunReport.from_data(data).tflite.why


def test_the_tflite_per_class_table_of_many_classes_is_folded() -> None:
    section = _tflite_section(render(_tflite_report(reportfacts.class_names(40))))
    assert section.count("<details><summary>All 40 classes</summary>") == 1


def test_the_run_summary_and_runs_state_the_tflite_verdict() -> None:
    from report.summary import NO_TFLITE, ComponentRun, RunSummary, format_summary

    names = ["ants", "bees"]
    saved = reportfacts.evaluation(names)
    tflite = reportfacts.tflite_evaluation(names, saved)
    summary = RunSummary("p", "r", [ComponentRun("Evaluator", "executed", 1.0)],
                         evaluation_uri="/root/Evaluator/9", evaluation_split="test",
                         eval_examples=40, accuracy=saved.accuracy, blessed=True, pushed=True,
                         pushed_destination="/serving/m/3", pushed_version=3, tflite=tflite,
                         tflite_pushed=True, tflite_note=tflite.why)
    shown = f"{100 * tflite.accuracy:.1f} %"
    (line,) = [line for line in format_summary(summary) if line.startswith("TFLite")]
    assert line == (f"TFLite dynamic: {shown} on 40 test images, the same as the SavedModel's "
                    f"{shown} (--max-tflite-drop allows 0.5 points); 1.23 MB "
                    "(SavedModel 4.57 MB); batch-1 latency on this host's CPU in TFLite's "
                    "interpreter 0.41 ms median, 0.99 ms p99 over 200 runs; pushed with "
                    "version 3.")
    assert summary.tflite_outcome() == f"dynamic {shown} pushed"
    data = json.loads(summary.to_json())
    assert data["tflite_outcome"] == f"dynamic {shown} pushed" and data["tflite_pushed"]
    assert data["tflite"]["size_bytes"] == 1_234_567 and len(data["tflite"]["per_class"]) == 2

    left_out = dataclasses.replace(summary, tflite_pushed=False,
                                   tflite_note="the Evaluator's verdict")
    (line,) = [line for line in format_summary(left_out) if line.startswith("TFLite")]
    assert line.endswith("; version 3 has no TFLite file: the Evaluator's verdict.")
    assert left_out.tflite_outcome() == f"dynamic {shown} not pushed"
    none = dataclasses.replace(summary, tflite=None, tflite_pushed=False)
    assert f"TFLite: {NO_TFLITE}." in list(format_summary(none))
    assert none.tflite_outcome() == "none"
    assert not [line for line in format_summary(dataclasses.replace(none, evaluation_uri=None))
                if line.startswith("TFLite")]
