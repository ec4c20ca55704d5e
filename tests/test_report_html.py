"""The report page (report/html.py + its Jinja2 template) from report facts, without a run."""

from __future__ import annotations

from typing import Any

from report.html import render

SECTION_KEYS = ("dataset", "validation", "training", "evaluation", "misclassified", "push")


def _report(**sections: dict[str, Any]) -> dict[str, Any]:
    """A report whose sections are unavailable unless given."""
    report: dict[str, Any] = {"pipeline_name": "p", "run_id": "r1", "started": "2026-11-24",
                              "components": [{"name": "Trainer", "state": "executed",
                                              "seconds": 12.34}],
                              "failed_components": []}
    for key in SECTION_KEYS:
        report[key] = sections.get(key, {"available": False, "why": f"no {key} here"})
    return report


def test_the_dataset_section_shows_duplicates_and_conversions() -> None:
    split = {"examples": 3, "per_class": {"a": 3}, "image_formats": {}}
    page = render(_report(dataset={
        "available": True, "splits": {"train": split, "test": split},
        "converted": {"count": 1, "from": {"JPEG CMYK": 1}, "to": "PNG L"},
        "duplicates": {"across_splits": 2, "within_split": {"train": 1, "test": 0},
                       "allowed": True}}), {})
    assert "2 across splits (kept with --allow-duplicates" in page
    assert "within a split: train 1, test 0" in page
    assert "1 to PNG L (1 JPEG CMYK)" in page
    assert "<section id=" in page and page.count("<section id=") == 7
    assert "Not available: no push here." in page
    assert '<td class="num">12.3</td>' in page
    unknown = render(_report(dataset={"available": True, "splits": {"train": split}}), {})
    assert "n/a (not counted" in unknown


def test_what_a_run_holds_is_escaped() -> None:
    hostile = '<script>alert("x")</script> & co'
    split = {"examples": 1, "per_class": {hostile: 1}, "image_formats": {}}
    page = render(_report(
        dataset={"available": True, "splits": {"train": split}, "data_root": hostile},
        push={"available": True, "pushed": False},
    ), {})
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; co" in page
    assert "<code>&lt;script&gt;" in page  # a path shown as code is escaped too
    assert "not pushed: the model was not blessed" in page
