"""The README's `make run` on the built-in digits (2 epochs instead of up to 30): the run ends by
printing the report path, and the report has every section, also in a browser.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_report_browser import CHROMIUM, SECTIONS, render

from report import REPORT_HTML, REPORT_JSON


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, list[str], list[str]]:
    import contextlib
    import io
    import sys

    from cli import main

    base = tmp_path_factory.mktemp("digits")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["run", "--root", str(base / "tfx_root"),
                     "--serving-dir", str(base / "serving_model"), "--epochs", "2"])
    sys.stderr.write(err.getvalue())
    return code, out.getvalue().splitlines(), err.getvalue().splitlines()


def test_run_ends_by_printing_the_report_path(digits_run) -> None:
    code, lines, _ = digits_run
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
    for section in ("dataset", "validation", "training", "evaluation", "misclassified", "push"):
        assert report[section]["available"], section
    assert report["push"]["pushed"] and report["evaluation"]["blessed"]


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
