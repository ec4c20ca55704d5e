"""The README's `make run` on the built-in digits (2 epochs instead of up to 30): the run ends by
printing the report path, and the report has every section, also in a browser. Then a folder of
the same 10 classes under another name: a new model, which the run says, naming `digits`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_report_browser import CHROMIUM, SECTIONS, render

import imagegen
from conftest import run_cli
from report import REPORT_HTML, REPORT_JSON

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, list[str], list[str], Path]:
    """(exit code, stdout lines, stderr lines, the serving dir) of the demo run."""
    base = tmp_path_factory.mktemp("digits")
    serving = base / "serving_model"
    return (*run_cli(["run", "--root", str(base / "tfx_root"), "--serving-dir", str(serving),
                   "--epochs", "2"]), serving.resolve())


def test_run_ends_by_printing_the_report_path(digits_run) -> None:
    code, lines, *_ = digits_run
    assert code == 0
    assert lines[-1].startswith("Report: ") and lines[-1].endswith(f"/{REPORT_HTML}")
    assert Path(lines[-1].removeprefix("Report: ")).is_file()


def test_each_component_gets_a_progress_line_from_ml_metadata(digits_run) -> None:
    progress = [line for line in digits_run[2] if line.startswith("[pipeline] ")
                and (": running" in line or ": done in " in line)]
    done = [line.split(":")[0].removeprefix("[pipeline] ") for line in progress
            if ": done in " in line]
    assert done == ["ImportExampleGen", "ImportSchemaGen", "StatisticsGen", "ExampleValidator",
                    "DataGate", "Transform", "Trainer", "Evaluator", "Pusher"]
    assert "[pipeline] Trainer: running" in progress
    assert progress.index("[pipeline] Trainer: running") < next(
        i for i, line in enumerate(progress) if line.startswith("[pipeline] Trainer: done in "))
    assert all(line.endswith("s (executed)") for line in progress if ": done in " in line)


def test_digits_report_has_every_section(digits_run) -> None:
    html = Path(digits_run[1][-1].removeprefix("Report: "))
    report = json.loads((html.parent / REPORT_JSON).read_text())
    assert report["class_names"] == [str(d) for d in range(10)]
    assert sum(s["examples"] for s in report["dataset"]["splits"].values()) == 1797
    for section in ("dataset", "validation", "training", "evaluation", "misclassified", "push",
                    "tflite"):
        assert report[section]["available"], section
    assert report["push"]["pushed"] and report["evaluation"]["blessed"]


def test_the_first_run_starts_the_model_and_says_so(digits_run) -> None:
    from ingest.builtin import DIGITS_TEST_PER_CLASS

    code, out, err, serving = digits_run
    assert (f"[pipeline] new model `digits`: {serving}/digits holds no version yet, so there is "
            "no baseline and no class-map check (the model name defaults to the data's name; "
            "--model-name sets it)") in err
    assert not [line for line in err + out if "pass --model-name" in line]
    report = json.loads((Path(out[-1].removeprefix("Report: ")).parent / REPORT_JSON)
                        .read_text())
    # compile-kfp's default bar, without --dataset-info, is computed from this constant.
    assert report["dataset"]["splits"]["test"]["per_class"] == DIGITS_TEST_PER_CLASS
    rule = report["evaluation"]["blessing_rule"]
    assert rule["source"] == "default rule" and rule["min_accuracy"] == 0.136
    assert rule["text"] == ("13.6 %: chance 10.3 % (always answering `3`) plus 2 standard "
                            "errors on 359 test images")
    outcome = report["outcome"]
    assert outcome in out and outcome.startswith("Trained ") and " epochs) on digits: " in outcome
    assert ("; blessed (at least 13.6 %, the bar for 10 classes on 359 images); pushed as "
            "version ") in outcome
    assert outcome.endswith(", the first of `digits`.")


def test_a_new_folder_of_the_same_classes_is_a_new_model_that_names_the_old_one(
    digits_run, tmp_path: Path
) -> None:
    """pets-v2/ after pets/: the model name follows the folder, so the run starts a new model
    without a baseline, says so before training and at the end, and names `digits`, served
    with the same 10 classes. Its images carry no class: it scores at most chance (10 %) and is
    not blessed under the default bar.
    """
    *_, serving = digits_run
    before = sorted(p.relative_to(serving) for p in serving.rglob("*"))
    data = tmp_path / "digits-v2"
    classes = [str(d) for d in range(10)]
    imagegen.write_uninformative_folder(data, {"train": dict.fromkeys(classes, 2),
                                               "eval": dict.fromkeys(classes, 1),
                                               "test": dict.fromkeys(classes, 3)})
    code, out, err = run_cli(["run", "--recipe", "classic", "--data", str(data),
                           "--root", str(tmp_path / "root"), "--serving-dir", str(serving),
                           "--epochs", "0", "--batch-size", "4"])
    assert code == 0
    new = (f"new model `digits-v2`: {serving}/digits-v2 holds no version yet, so there is no "
           "baseline and no class-map check")
    old = (f"`digits` in {serving} has the same 10 classes: pass --model-name digits to make "
           "this run a new version of it")
    said = err.index(f"[pipeline] {new} (the model name defaults to the data's name; "
                     "--model-name sets it)")
    assert err[said + 1] == f"[pipeline] {old}"
    assert said < err.index("[pipeline] Trainer: running")
    assert f"  {new}" in out and f"  {old}" in out
    last = next(line for line in out if line.startswith("Trained classic (0 epochs) on "
                                                         "digits-v2: "))
    assert "; not blessed: " in last and "is not above chance (10.0 %)" in last
    assert last.endswith("; nothing is served as `digits-v2` yet.")
    report = json.loads((Path(out[-1].removeprefix("Report: ")).parent / REPORT_JSON)
                        .read_text())
    evaluation = report["evaluation"]
    assert evaluation["accuracy"] <= 0.1 + 1e-6 and evaluation["blessed"] is False
    assert evaluation["blessing_rule"]["min_accuracy"] == 0.21  # 10 % + 2 SE on 30 images
    assert evaluation["new_model"]["same_classes"] == ["digits"]
    assert sorted(p.relative_to(serving) for p in serving.rglob("*")) == before


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed "
                                             "(Debian: apt-get install chromium)")
def test_digits_report_renders_in_a_browser(digits_run, tmp_path: Path) -> None:
    html = Path(digits_run[1][-1].removeprefix("Report: "))
    probe = render(html, tmp_path)
    assert [s["id"] for s in probe["sections"]] == SECTIONS
    assert not [s["id"] for s in probe["sections"] if "Not available" in s["text"]]
    images = {i["file"]: i for i in probe["images"]}
    assert {"class_balance.png", "training_curves.png", "per_class_accuracy.png",
            "confusion_matrix.png"} <= set(images)
    assert all(i["complete"] and min(i["natural"]) > 50 for i in images.values())
